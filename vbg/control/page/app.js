// The control page of a running vbg: plain JavaScript, no build step, nothing fetched from
// elsewhere. Every request carries the token from this page's own URL (X-Vbg-Token); the API
// is docs/control-api.md (GET /api/status, /api/backgrounds, /api/preview.jpg; POST
// /api/background, /api/effect, /api/mirror, /api/model, /api/upload).
"use strict";

(function () {
  const TOKEN = new URLSearchParams(location.search).get("token") || "";
  const PREVIEW_MS = 250;   // a few frames a second is enough to see what the camera sends
  const STATUS_MS = 1000;
  const HISTORY_S = 60;
  const ERROR_KEEP_MS = 10000;  // an action's error stays this long (or until the next action)

  const $ = (id) => document.getElementById(id);
  let ui = null;
  let locked = false;      // wrong or missing token: nothing more is asked
  let started = false;
  const pending = { effect: 0, mirror: 0, model: 0, blur: 0 };
  let shownModelError = null;
  let actions = 0;  // changes asked for so far: a status asked for before the latest one is stale

  // ---- one error line ------------------------------------------------------------------------
  // Each error has a source; a later success from the same source clears it, so a status poll
  // that works again does not wipe out what a click just reported.
  let errorFrom = null;
  let errorTimer = null;

  function showError(text, from) {
    ui.error.textContent = text;
    ui.error.hidden = false;
    errorFrom = from;
    clearTimeout(errorTimer);
    if (from === "action") {
      errorTimer = setTimeout(() => clearError("action"), ERROR_KEEP_MS);
    }
  }

  function clearError(from) {
    if (errorFrom !== from || from === "auth") return;
    ui.error.hidden = true;
    ui.error.textContent = "";
    errorFrom = null;
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, opts = {}) {
    const method = opts.method || "GET";
    const headers = { "X-Vbg-Token": TOKEN };
    let body = opts.body;
    Object.assign(headers, opts.headers || {});
    if (opts.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.type) {
      headers["Content-Type"] = opts.type;
    }
    let r;
    try {
      r = await fetch(path, { method, headers, body, cache: "no-store" });
    } catch (e) {
      throw new ApiError("vbg does not answer: the filter has stopped? Start it again and open the address it prints.", 0);
    }
    if (!r.ok) {
      let message = `${method} ${path} failed: HTTP ${r.status}`;
      try {
        const j = await r.json();
        if (j && j.error) message = j.error;
      } catch (e) { /* not JSON: the status line says enough */ }
      throw new ApiError(message, r.status);
    }
    return r;
  }

  function lock(message) {
    locked = true;
    ui.controls.hidden = true;
    ui.summary.textContent = "not connected";
    showError(message, "auth");
  }

  // A user's action: its error goes to the error line, its success clears an earlier one.
  async function act(path, json) {
    actions++;
    try {
      const r = await api(path, { method: "POST", json });
      clearError("action");
      return await r.json();
    } catch (e) {
      if (e.status === 403) lock(e.message);
      else showError(e.message, "action");
      return null;
    }
  }

  // ---- live preview ------------------------------------------------------------------------
  let previewTimer = null;
  let previewBusy = false;
  let previewUrl = null;

  async function previewTick() {
    previewTimer = null;
    if (locked || document.hidden || previewBusy) return;
    previewBusy = true;
    try {
      const blob = await (await api("/api/preview.jpg")).blob();
      const url = URL.createObjectURL(blob);
      const old = previewUrl;
      previewUrl = url;
      ui.preview.src = url;
      if (old) URL.revokeObjectURL(old);
      clearError("preview");
    } catch (e) {
      if (e.status === 403) lock(e.message);
      else if (e.status !== 404) showError(e.message, "preview");  // 404: no frame yet, not an error
    } finally {
      previewBusy = false;
    }
    schedulePreview();
  }

  function schedulePreview() {
    if (!locked && !document.hidden && previewTimer === null && !previewBusy) {
      previewTimer = setTimeout(previewTick, PREVIEW_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(previewTimer);
      previewTimer = null;
    } else if (started) {
      schedulePreview();
    }
  });

  // ---- status and plots --------------------------------------------------------------------
  const series = { fps: [], latency: [], mask_age: [], cpu: [] };
  const plotUnits = { fps: "", latency: " ms", mask_age: " ms", cpu: " %" };
  const plotFloor = { fps: 30, latency: 100, mask_age: 100, cpu: 100 };  // y axis at least 0..this

  function p95(o) {
    return o && typeof o.p95 === "number" ? o.p95 : null;
  }

  function num(v) {
    return typeof v === "number" && isFinite(v) ? v : null;
  }

  function record(s) {
    const t = performance.now() / 1000;
    const values = {
      fps: num(s.fps), latency: p95(s.latency_ms), mask_age: p95(s.mask_age_ms), cpu: num(s.cpu_percent),
    };
    for (const key of Object.keys(series)) {
      const list = series[key];
      list.push({ t, v: values[key] });
      while (list.length && list[0].t < t - HISTORY_S) list.shift();
    }
    drawPlots(t);
  }

  function fmt(key, v) {
    if (v === null) return "\u2013";
    const digits = key === "fps" ? 1 : 0;
    return v.toFixed(digits) + plotUnits[key];
  }

  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawPlots(now) {
    const css = getComputedStyle(document.body);
    const line = css.getPropertyValue("--accent").trim() || "#5aa9ff";
    const grid = css.getPropertyValue("--grid").trim() || "#33363c";
    const text = css.getPropertyValue("--muted").trim() || "#9aa0a8";
    for (const fig of document.querySelectorAll(".plot")) {
      const key = fig.dataset.key;
      const points = series[key];
      const last = points.length ? points[points.length - 1].v : null;
      fig.querySelector("b").textContent = fmt(key, last);
      fig.dataset.points = String(points.filter((p) => p.v !== null).length);
      drawPlot(fig.querySelector("canvas"), points, key, now, { line, grid, text });
    }
  }

  function drawPlot(canvas, points, key, now, colors) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, w, h);
    let top = plotFloor[key];
    for (const p of points) if (p.v !== null && p.v > top) top = p.v;
    top = niceMax(top);
    const pad = 4 * dpr;
    const y = (v) => h - pad - (v / top) * (h - 2 * pad);
    const x = (t) => ((t - (now - HISTORY_S)) / HISTORY_S) * w;

    g.lineWidth = 1;
    g.strokeStyle = colors.grid;
    g.beginPath();
    for (const f of [0, 0.5, 1]) {
      const yy = Math.round(y(top * f)) + 0.5;
      g.moveTo(0, yy);
      g.lineTo(w, yy);
    }
    g.stroke();
    g.fillStyle = colors.text;
    g.font = `${10 * dpr}px system-ui, sans-serif`;
    g.textBaseline = "top";
    g.fillText(String(top) + plotUnits[key], 3 * dpr, 2 * dpr);

    g.strokeStyle = colors.line;
    g.lineWidth = 1.5 * dpr;
    g.lineJoin = "round";
    g.beginPath();
    let drawing = false;
    for (const p of points) {
      if (p.v === null) {
        drawing = false;
        continue;
      }
      const px = x(p.t);
      const py = y(Math.max(0, p.v));
      if (drawing) g.lineTo(px, py);
      else g.moveTo(px, py);
      drawing = true;
    }
    g.stroke();
    const lastGood = [...points].reverse().find((p) => p.v !== null);
    if (lastGood) {
      g.fillStyle = colors.line;
      g.beginPath();
      g.arc(x(lastGood.t), y(Math.max(0, lastGood.v)), 2.5 * dpr, 0, 2 * Math.PI);
      g.fill();
    }
  }

  function duration(s) {
    s = Math.floor(s);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
  }

  function showStatus(s, stale) {
    const parts = [];
    if (num(s.fps) !== null) parts.push(`${s.fps.toFixed(1)} fps`);
    if (s.model) parts.push(s.providers && s.providers.length ? `${s.model} on ${s.providers[0].replace("ExecutionProvider", "")}` : s.model);
    if (num(s.uptime_s) !== null) parts.push(`up ${duration(s.uptime_s)}`);
    ui.summary.textContent = parts.join(" \u00b7 ") || "running";
    ui.lost.hidden = !s.camera_lost;
    if (stale) return;  // the settings it reports may predate a change made since
    if (!pending.effect && typeof s.effect === "boolean") ui.effect.checked = s.effect;
    if (!pending.mirror && typeof s.mirror === "boolean") ui.mirror.checked = s.mirror;
    if (!pending.blur && num(s.blur) !== null && document.activeElement !== ui.blur) {
      ui.blur.value = String(s.blur);
      ui.blurValue.textContent = Number(s.blur).toFixed(2);
    }
    const bg = s.background || {};
    ui.current.textContent = bg.label ? `\u2013 ${bg.label}` : "";
    markCurrent(bg.id);
    const models = Array.isArray(s.models) ? s.models : [];
    ui.modelBox.hidden = models.length < 2;
    if (models.length >= 2) {
      // A model not on this machine yet says so: a switch to it downloads it first.
      const notes = s.model_notes && typeof s.model_notes === "object" ? s.model_notes : {};
      const labels = models.map((m) => (typeof notes[m] === "string" ? `${m} (${notes[m]})` : m));
      const have = [...ui.model.options].map((o) => `${o.value}\t${o.text}`).join("\n");
      if (have !== models.map((m, i) => `${m}\t${labels[i]}`).join("\n")) {
        ui.model.replaceChildren(...models.map((m, i) => new Option(labels[i], m)));
      }
      if (!pending.model && !s.model_loading && s.model) ui.model.value = s.model;
      ui.model.disabled = Boolean(s.model_loading) || pending.model > 0;
    }
    // A failed switch is said once (as a click's error is); the old model runs on.
    if (s.model_error && s.model_error !== shownModelError) showError(s.model_error, "action");
    shownModelError = s.model_error || null;
  }

  async function statusTick() {
    if (locked) return;
    const asked = actions;
    try {
      const s = await (await api("/api/status")).json();
      clearError("status");
      if (!started) {
        started = true;
        ui.controls.hidden = false;
        loadBackgrounds();
        schedulePreview();
      }
      showStatus(s, asked !== actions);
      record(s);
    } catch (e) {
      if (e.status === 403) {
        lock(e.message);
        return;
      }
      showError(e.message, "status");
    }
    setTimeout(statusTick, STATUS_MS);
  }

  // ---- backgrounds -------------------------------------------------------------------------
  let currentId = null;
  let uploadMax = null;  // {picture, video}: the largest upload the filter takes (bytes)
  let uploadKinds = null;  // {video, moving}: the name suffixes sent as videos, and as moving pictures

  function withToken(url) {
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
  }

  function markCurrent(id) {
    currentId = id || null;
    for (const b of ui.thumbs.querySelectorAll(".thumb")) {
      b.classList.toggle("selected", b.dataset.id === currentId);
      b.setAttribute("aria-pressed", String(b.dataset.id === currentId));
    }
  }

  function groupTitle(text) {
    const t = document.createElement("div");
    t.className = "group";
    t.textContent = text;
    return t;
  }

  function thumbButton(item) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "thumb";
    b.dataset.id = item.id;
    b.dataset.kind = item.kind || "";
    b.title = `${item.label} (${item.kind}${item.video ? ", a video: it plays in a loop" : ""})`;
    if (item.video) b.classList.add("video");
    b.setAttribute("role", "listitem");
    const img = document.createElement("img");
    img.alt = "";
    img.src = withToken(item.thumb);
    const label = document.createElement("span");
    label.textContent = item.label;
    b.append(img, label);
    b.addEventListener("click", () => chooseBackground({ id: item.id }, b));
    return b;
  }

  async function loadBackgrounds() {
    let data;
    try {
      data = await (await api("/api/backgrounds")).json();
    } catch (e) {
      if (e.status === 403) lock(e.message);
      else showError(e.message, "action");
      return;
    }
    const items = Array.isArray(data.items) ? data.items : [];
    // "recent" entries stand for backgrounds listed again below: a row of their own, first.
    const recent = items.filter((item) => item.kind === "recent");
    const rest = items.filter((item) => item.kind !== "recent");
    const nodes = [];
    if (recent.length) nodes.push(groupTitle("Recently used"), ...recent.map(thumbButton), groupTitle("All"));
    nodes.push(...rest.map(thumbButton));
    ui.thumbs.replaceChildren(...nodes);
    markCurrent(currentId);
    ui.folder.textContent = data.folder ? `Put pictures and videos in ${data.folder} to list them here.` : "";
    if (data.upload_max) uploadMax = data.upload_max;
    if (data.upload_kinds) uploadKinds = data.upload_kinds;
  }

  async function chooseBackground(json, button) {
    if (button) button.classList.add("busy");
    const r = await act("/api/background", json);
    if (button) button.classList.remove("busy");
    if (r && r.background) {
      ui.current.textContent = r.background.label ? `\u2013 ${r.background.label}` : "";
      markCurrent(r.background.id);
      if (json.id !== undefined) loadBackgrounds();  // it is a recent one now
    }
    return r;
  }

  async function upload(file) {
    // A file the filter would refuse unread is not sent (a browser may not show that answer).
    const suffix = (/\.[^.]*$/.exec(file.name) || [""])[0].toLowerCase();
    const video = (file.type || "").startsWith("video/") || Boolean(uploadKinds && uploadKinds.video.includes(suffix));
    // A GIF or an animated PNG is kept as a video: one too large for a picture is streamed as one.
    const moving = Boolean(uploadKinds && uploadKinds.moving.includes(suffix));
    const most = uploadMax && (video || moving ? uploadMax.video : uploadMax.picture);
    if (most && file.size > most) {
      const what = video ? "video" : moving ? "moving picture" : "picture";
      showError(`${file.name} is over the ${Math.round(most / 2 ** 20)} MB a ${what} upload may be: ` +
                (video || moving ? "put it in the backgrounds folder instead" : "scale it down"), "action");
      ui.file.value = "";
      return;
    }
    ui.fileLabel.classList.add("busy");
    try {
      const r = await api("/api/upload", {
        method: "POST", body: file, type: file.type || "application/octet-stream",
        headers: { "X-Vbg-Name": encodeURIComponent(file.name) },
      });
      const { id } = await r.json();
      clearError("action");
      await chooseBackground({ id });
    } catch (e) {
      if (e.status === 403) lock(e.message);
      else showError(`${file.name}: ${e.message}`, "action");
    } finally {
      ui.fileLabel.classList.remove("busy");
      ui.file.value = "";
    }
  }

  // ---- wiring ------------------------------------------------------------------------------
  async function toggle(name, input) {
    pending[name]++;
    const r = await act(`/api/${name}`, { on: input.checked });
    pending[name]--;
    if (!r) input.checked = !input.checked;
  }

  function init() {
    ui = {
      error: $("error"), summary: $("summary"), controls: $("controls"), preview: $("preview"),
      lost: $("lost"), effect: $("effect"), mirror: $("mirror"), modelBox: $("model-box"),
      model: $("model"), thumbs: $("thumbs"), current: $("current"), file: $("file"),
      fileLabel: $("file").parentElement, color: $("color"), blur: $("blur"),
      blurValue: $("blur-value"), folder: $("folder"),
    };
    if (!TOKEN) {
      lock("This page needs the token: open the address vbg printed at start (it ends in ?token=...).");
      return;
    }
    ui.effect.addEventListener("change", () => toggle("effect", ui.effect));
    ui.mirror.addEventListener("change", () => toggle("mirror", ui.mirror));
    ui.color.addEventListener("change", () => chooseBackground({ color: ui.color.value }));
    ui.blur.addEventListener("input", () => {
      ui.blurValue.textContent = Number(ui.blur.value).toFixed(2);
    });
    ui.blur.addEventListener("change", async () => {
      pending.blur++;
      await chooseBackground({ blur: Number(ui.blur.value) });
      pending.blur--;
    });
    ui.model.addEventListener("change", async () => {
      pending.model++;
      ui.model.disabled = true;
      await act("/api/model", { name: ui.model.value });
      pending.model--;
    });
    ui.file.addEventListener("change", () => {
      if (ui.file.files.length) upload(ui.file.files[0]);
    });
    window.addEventListener("resize", () => drawPlots(performance.now() / 1000));
    statusTick();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
