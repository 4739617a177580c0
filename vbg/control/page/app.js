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
  const ERROR_KEEP_MS = 10000;  // a short action's error stays this long (or until the next action)
  const LONG_ERROR = 100;       // characters: a longer error (it names a fix to read) stays until dismissed
  const STATUS_TIMEOUT_MS = 5000;  // a status answer later than this: a time-out
  // Time-outs in a row, with no answer to any of the page's requests meanwhile, before the filter
  // is said to have stopped (a refused connection says so at once). A status request may wait
  // behind the browser's 6 connections to a host (a big folder's thumbnails): those are answered
  // meanwhile, so the filter is busy, not stopped.
  const STOPPED_AFTER_TIMEOUTS = 3;

  const $ = (id) => document.getElementById(id);
  let ui = null;
  let locked = false;      // wrong or missing token: nothing more is asked
  let started = false;
  let stopped = false;     // the filter does not answer: shown as stopped until it does again
  const pending = { effect: 0, mirror: 0, model: 0, blur: 0, color: 0 };
  let shownModelError = null;
  let actions = 0;  // changes asked for so far: a status asked for before the latest one is stale
  let lastAnswer = -1;  // performance.now() of the latest answer to any of the page's requests
  let timeouts = 0;     // status time-outs in a row during which nothing of the page's was answered

  function answered() {
    lastAnswer = performance.now();
  }

  // ---- one error line ------------------------------------------------------------------------
  // Each error has a source; a later success from the same source clears it, so a status poll
  // that works again does not wipe out what a click just reported. It is shown whole (wrapped);
  // a short action's error goes after a while, a long one stays until the next action succeeds
  // or it is dismissed.
  let errorFrom = null;
  let errorTimer = null;

  function showError(text, from) {
    ui.errorText.textContent = text;
    ui.error.hidden = false;
    ui.errorClose.hidden = from === "auth";
    errorFrom = from;
    clearTimeout(errorTimer);
    if (from === "action" && text.length <= LONG_ERROR) {
      errorTimer = setTimeout(() => clearError("action"), ERROR_KEEP_MS);
    }
  }

  function hideError() {
    clearTimeout(errorTimer);
    ui.error.hidden = true;
    ui.errorText.textContent = "";
    errorFrom = null;
  }

  function clearError(from) {
    if (errorFrom !== from || from === "auth") return;
    hideError();
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
    const abort = opts.timeout ? new AbortController() : null;
    const timer = abort ? setTimeout(() => abort.abort(), opts.timeout) : null;
    try {
      r = await fetch(path, { method, headers, body, cache: "no-store", signal: abort ? abort.signal : undefined });
    } catch (e) {
      const err = new ApiError("vbg does not answer: the filter has stopped? Start it again and open the address it prints.", 0);
      err.timedOut = Boolean(abort && abort.signal.aborted);  // else refused: nothing listens there
      throw err;
    } finally {
      clearTimeout(timer);
    }
    answered();
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
    if (locked || stopped || document.hidden || previewBusy) return;
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
      // 404: no frame yet, not an error; no answer at all: the status poll says it (stopped)
      else if (e.status !== 404 && e.status !== 0) showError(e.message, "preview");
    } finally {
      previewBusy = false;
    }
    schedulePreview();
  }

  function schedulePreview() {
    if (!locked && !stopped && !document.hidden && previewTimer === null && !previewBusy) {
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

  function showCurrent(bg) {
    ui.current.textContent = bg.label ? `\u2013 ${bg.label}` : "";
    markCurrent(bg.id);
    // The colour behind the person, shown in the colour well (unless it is being picked).
    if (!pending.color && typeof bg.color === "string" && /^#[0-9a-f]{6}$/i.test(bg.color) &&
        document.activeElement !== ui.color) {
      ui.color.value = bg.color.toLowerCase();
    }
  }

  // The filter does not answer (on), or answers again (off): the header says so, the last frame
  // is dimmed, the plots' figures go blank, and every control is disabled (the fieldset).
  function setStopped(on, message) {
    if (on === stopped) return;
    stopped = on;
    ui.live.disabled = on;
    ui.controls.classList.toggle("stopped", on);
    ui.summary.classList.toggle("stopped", on);
    ui.stopped.hidden = !on;
    if (on) {
      ui.summary.textContent = "stopped \u00b7 vbg does not answer";
      ui.lost.hidden = true;
      clearTimeout(previewTimer);
      previewTimer = null;
      showError(message, "status");
    } else {
      clearError("status");
      schedulePreview();
      loadBackgrounds();  // the folder may have changed meanwhile
    }
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
      ui.blur.value = String(s.blur);  // the slider spans the API's strengths (0.1-5)
      ui.blurValue.textContent = Number(s.blur).toFixed(2);
    }
    showCurrent(s.background || {});
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
    const since = performance.now();
    try {
      const s = await (await api("/api/status", { timeout: STATUS_TIMEOUT_MS })).json();
      timeouts = 0;
      clearError("status");
      setStopped(false);
      if (!started) {
        started = true;
        ui.controls.hidden = false;
        loadBackgrounds();
        schedulePreview();
      }
      showStatus(s, asked !== actions);
      record(s);
      // The folder, the uploads or the recent ones changed since the list was made: list again.
      if (typeof s.backgrounds_version === "string" && s.backgrounds_version !== listVersion &&
          !listBusy && !document.hidden) {
        loadBackgrounds();
      }
    } catch (e) {
      if (e.status === 403) {
        lock(e.message);
        return;
      }
      // A time-out while other requests of the page were answered: busy (or queued behind them), not stopped.
      if (e.timedOut) timeouts = lastAnswer < since ? timeouts + 1 : 0;
      if (e.status === 0 && started && e.timedOut && timeouts < STOPPED_AFTER_TIMEOUTS) {
        record({});  // a gap in the plots; not said to have stopped yet
      } else if (e.status === 0 && started) {
        setStopped(true, e.message);
        record({});  // a gap in the plots, their figures blank
      } else {
        showError(e.message, "status");
      }
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

  // The list is updated in place: a thumbnail's element (its button, its picture) is kept while
  // its item is listed, so a picture that did not change is not fetched or decoded again, and
  // the keyboard's focus stays where it was. Each group is a heading and a list of buttons.
  const thumbNodes = new Map();  // "group\nid" -> its <li>
  const groupNodes = new Map();  // group -> {heading, list}
  let listVersion = null;  // the listing's fingerprint the list was made from (status says the newest)
  let listBusy = false;
  let listAgain = false;

  function groupBlock(key, title) {
    let g = groupNodes.get(key);
    if (!g) {
      const heading = document.createElement("h3");
      heading.className = "group";
      heading.id = `thumbs-${key}`;
      const list = document.createElement("ul");
      list.className = "thumb-list";
      g = { heading, list };
      groupNodes.set(key, g);
    }
    g.heading.textContent = title || "";
    if (title) {
      g.list.setAttribute("aria-labelledby", g.heading.id);
      g.list.removeAttribute("aria-label");
    } else {
      g.list.removeAttribute("aria-labelledby");
      g.list.setAttribute("aria-label", "Backgrounds");
    }
    return g;
  }

  function thumbItem(key, item) {
    let li = thumbNodes.get(key);
    if (!li) {
      li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "thumb";
      b.dataset.key = key;
      b.setAttribute("aria-pressed", "false");
      const img = document.createElement("img");
      img.alt = "";
      img.loading = "lazy";  // before its address: a folder of hundreds is fetched as it is scrolled to
      img.decoding = "async";
      img.addEventListener("load", answered);  // the filter answers: a status time-out is queueing, not a stop
      b.append(img, document.createElement("span"));
      b.addEventListener("click", () => chooseBackground({ id: b.dataset.id }, b));
      li.append(b);
      thumbNodes.set(key, li);
    }
    const b = li.firstChild;
    b.dataset.id = item.id;
    b.dataset.kind = item.kind || "";
    b.title = `${item.label} (${item.kind}${item.video ? ", a video: it plays in a loop" : ""})`;
    b.classList.toggle("video", Boolean(item.video));
    const img = b.querySelector("img");
    const src = withToken(item.thumb);  // names the file's version: a changed file, a new picture
    if (img.getAttribute("src") !== src) img.src = src;
    const label = b.querySelector("span");
    if (label.textContent !== item.label) label.textContent = item.label;
    return li;
  }

  function sameChildren(parent, nodes) {
    const have = parent.children;
    return have.length === nodes.length && nodes.every((n, i) => have[i] === n);
  }

  function showBackgrounds(data) {
    const items = Array.isArray(data.items) ? data.items : [];
    // "recent" entries stand for backgrounds listed again below (the same id): a group of their own, first.
    const recent = items.filter((item) => item.kind === "recent");
    const rest = items.filter((item) => item.kind !== "recent");
    const groups = recent.length ? [["recent", "Recently used", recent], ["all", "All", rest]] : [["all", "", rest]];
    const focused = document.activeElement;
    const focusKey = focused && ui.thumbs.contains(focused) ? focused.dataset.key : null;
    const listed = new Set();
    const blocks = [];
    for (const [key, title, members] of groups) {
      const g = groupBlock(key, title);
      const lis = members.map((item) => {
        const k = `${key}\n${item.id}`;
        listed.add(k);
        return thumbItem(k, item);
      });
      if (!sameChildren(g.list, lis)) g.list.replaceChildren(...lis);
      if (title) blocks.push(g.heading);
      blocks.push(g.list);
    }
    if (!sameChildren(ui.thumbs, blocks)) ui.thumbs.replaceChildren(...blocks);
    for (const k of [...thumbNodes.keys()]) if (!listed.has(k)) thumbNodes.delete(k);
    // A button moved in the list loses the focus: it is given back (the same item, same group).
    if (focusKey && document.activeElement !== focused && thumbNodes.has(focusKey)) {
      thumbNodes.get(focusKey).firstChild.focus({ preventScroll: true });
    }
    markCurrent(currentId);
    listVersion = typeof data.version === "string" ? data.version : null;
    ui.thumbs.dataset.version = listVersion || "";  // which listing is shown (the tests wait on it)
    ui.folder.textContent = data.folder ? `Put pictures and videos in ${data.folder} to list them here.` : "";
    if (data.upload_max) uploadMax = data.upload_max;
    if (data.upload_kinds) uploadKinds = data.upload_kinds;
  }

  async function loadBackgrounds() {
    if (listBusy) {
      listAgain = true;  // once this one is in: what changed meanwhile
      return;
    }
    listBusy = true;
    try {
      let data;
      try {
        data = await (await api("/api/backgrounds")).json();
      } catch (e) {
        if (e.status === 403) lock(e.message);
        else if (e.status !== 0) showError(e.message, "list");  // no answer: the status poll says so
        return;
      }
      clearError("list");
      showBackgrounds(data);
    } finally {
      listBusy = false;
      if (listAgain) {
        listAgain = false;
        loadBackgrounds();
      }
    }
  }

  async function chooseBackground(json, button) {
    if (button) button.classList.add("busy");
    const r = await act("/api/background", json);
    if (button) button.classList.remove("busy");
    if (r && r.background) showCurrent(r.background);
    // Picked: it is a recent one now. Refused: the list may be out of date (a file removed).
    if (json.id !== undefined) loadBackgrounds();
    return r;
  }

  async function pickColour() {
    pending.color++;
    await chooseBackground({ color: ui.color.value });
    pending.color--;
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
      error: $("error"), errorText: $("error-text"), errorClose: $("error-close"), live: $("live"),
      stopped: $("stopped"), colorApply: $("color-apply"),
      summary: $("summary"), controls: $("controls"), preview: $("preview"),
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
    ui.errorClose.addEventListener("click", hideError);
    ui.color.addEventListener("change", pickColour);
    ui.colorApply.addEventListener("click", pickColour);  // the colour shown (picking it again sends nothing)
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
