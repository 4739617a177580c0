"""Does an open control page slow the frame path? The live filter (selfie model, a 30 fps clip of
a moving person paced in real time, blur background, pyvirtualcam with a discarding backend)
with its control server, run alternately with no client, with a client polling like the page
(GET /api/preview.jpg every 250 ms, /api/status every second, from another process) and with
the real page open in headless Chromium (Debian's chromium + chromedriver, tests/browser.py).

    python -m benchmarks.control [--seconds 20] [--rounds 3] [--size 1280x720] [--cases none,poll,page]

One warm-up run first (not counted); then ``--rounds`` rounds, each running every case once,
in an order rotated from round to round (A B C, B C A, C A B), so that whatever else the machine
does falls on every case alike. Reported: medians over the rounds of render p50/p95 (all
per-frame work but the model), output fps, glass-to-glass latency p95, mask age p95, the filter
process's CPU (cores) and the requests the client made per second. The browser runs through all
cases (showing about:blank when its page is not the case), so its own start is not timed.
Writes benchmarks/out/control.json and .md.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.common import DROP_BACKEND, drop_backend, machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
PREVIEW_S, STATUS_S = 0.25, 1.0  # the page's own rates (vbg/control/page/app.js)
CASES = ("none", "poll", "page")
LABELS = {"none": "no page", "poll": "page's requests (a client process)", "page": "page open in headless Chromium"}


def poll(url: str, seconds: float) -> int:
    """The page's requests, one at a time as the page makes them, for ``seconds`` or until
    SIGTERM; prints how many were answered. ``url`` "-": read from stdin (the process is
    started, its imports done, before the filter it polls)."""
    if url == "-":
        url = sys.stdin.readline().strip()
    base, _, token = url.partition("/?token=")
    headers = {"X-Vbg-Token": token}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    end = time.monotonic() + seconds
    next_status = 0.0
    n = 0
    while not stop.is_set() and time.monotonic() < end:
        paths = ["/api/preview.jpg"]
        if time.monotonic() >= next_status:
            paths.append("/api/status")
            next_status = time.monotonic() + STATUS_S
        for path in paths:
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10) as r:
                    r.read()
                n += 1
            except OSError:
                pass  # the filter is stopping
        stop.wait(PREVIEW_S)
    print(n, flush=True)
    return 0


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and every process below it, by pid (Linux /proc;
    empty elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parent, cpu = {}, {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(d.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p in cpu and p not in tree:
            tree.add(p)
            todo += [c for c, pp in parent.items() if pp == p]
    return {p: cpu[p] for p in tree}


def _cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two :func:`tree_cpu` readings by the processes alive at the second."""
    return sum(t - before.get(p, 0.0) for p, t in after.items())


def run_case(case: str, clip: Path, seconds: float, browser) -> dict:
    from vbg.config import LiveConfig, apply
    from vbg.pipeline import LivePipeline

    cfg = apply(LiveConfig(), {"source": {"source": str(clip), "loop": True}, "model": {"model": "selfie"},
                               "background": {"blur": 1.0},
                               "output": {"vcam_backend": DROP_BACKEND, "duration": seconds}})
    started: dict = {}
    if case == "poll":  # started now, so that its own start-up does not fall into the run
        started["proc"] = subprocess.Popen([sys.executable, "-m", "benchmarks.control", "--poll", "-",
                                            "--seconds", str(seconds + 60)], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def on_control(server) -> None:  # the server listens: the client starts now
        url = server.url
        started["t"] = time.monotonic()
        client = started["proc"].pid if case == "poll" else browser.pid if case == "page" else None
        if client is not None:
            started["client"] = (client, tree_cpu(client))
        if case == "poll":
            started["proc"].stdin.write(url + "\n")
            started["proc"].stdin.flush()
        elif case == "page":
            def load() -> None:  # returns once loaded; the timing buffer then holds every request
                browser.get(url)
                browser.execute("performance.setResourceTimingBufferSize(1000000)")

            t = threading.Thread(target=load, daemon=True)
            t.start()
            started["thread"] = t

    with drop_backend():
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        stats = LivePipeline(cfg, on_control=on_control).run()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    ended = time.monotonic()
    client_cpu = None
    if "client" in started:
        pid, before = started["client"]
        client_cpu = _cpu_since(before, tree_cpu(pid)) / max(1e-6, ended - started["t"])
    requests = None
    if case == "poll":
        proc = started["proc"]
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        requests = int(out.strip()) if out.strip().isdigit() else None
    elif case == "page":
        started["thread"].join(60)
        requests = browser.execute(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/')).length")
        browser.get("about:blank")
    snap = stats.snapshot()
    snap["cpu_cores_busy"] = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0)
    if requests is not None and "t" in started:
        snap["requests_per_s"] = requests / max(1e-6, ended - started["t"])
    if client_cpu is not None:
        snap["client_cpu_cores"] = client_cpu
    snap["case"] = case
    return snap


METRICS = [("out_fps", "out fps", "{:.1f}"), ("render_ms_p50", "render p50 ms", "{:.2f}"),
           ("render_ms_p95", "render p95 ms", "{:.2f}"), ("latency_ms_p95", "latency p95 ms", "{:.0f}"),
           ("mask_age_ms_p95", "mask age p95 ms", "{:.0f}"), ("cpu_cores_busy", "filter CPU (cores)", "{:.2f}"),
           ("requests_per_s", "requests/s", "{:.1f}"), ("client_cpu_cores", "client CPU (cores)", "{:.2f}")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="each run (default 20)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=6.0, help="the uncounted first run (default 6 s)")
    ap.add_argument("--size", default="1280x720", help="source WxH")
    ap.add_argument("--cases", default=",".join(CASES), help="some of " + ",".join(CASES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--poll", metavar="URL", help=argparse.SUPPRESS)  # the client process
    args = ap.parse_args(argv)
    if args.poll:
        return poll(args.poll, args.seconds)
    cases = args.cases.split(",")
    if not cases or any(c not in CASES for c in cases):
        ap.error(f"--cases {args.cases}: use some of {','.join(CASES)}")
    w, h = (int(v) for v in args.size.split("x"))

    from benchmarks.live import _clip

    sys.path.insert(0, str(ROOT / "tests"))
    from browser import Browser, find_chromium

    browser = None
    if "page" in cases:
        found = find_chromium()
        if isinstance(found, str):
            print(f"benchmarks.control: the page case is not run: {found}", file=sys.stderr)
            cases.remove("page")
        else:
            browser = Browser(*found, width=1280, height=800)
    runs: list[dict] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            clip = _clip(Path(tmp) / "person.mp4", (h, w))
            run_case("none", clip, args.warmup, browser)  # warm-up: caches, the model file, the CPU clock
            for r in range(args.rounds):
                order = cases[r % len(cases):] + cases[:r % len(cases)]
                for case in order:
                    snap = run_case(case, clip, args.seconds, browser)
                    snap["round"] = r
                    runs.append(snap)
                    print(f"round {r + 1} {case}: " + ", ".join(
                        f"{label} {fmt.format(snap[k])}" for k, label, fmt in METRICS if snap.get(k) is not None),
                        flush=True)
    finally:
        if browser is not None:
            browser.close()

    info = machine_info()
    medians = {}
    for case in cases:
        mine = [s for s in runs if s["case"] == case]
        medians[case] = {k: statistics.median(s[k] for s in mine) for k, _, _ in METRICS
                         if all(s.get(k) is not None for s in mine)}
    md = ["# Control page open vs closed\n",
          f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info.get('gpu') or 'none'}; onnxruntime "
          f"{info.get('onnxruntime')}. `python -m benchmarks.control --seconds {args.seconds:g} --rounds "
          f"{args.rounds} --size {args.size}`: selfie model, {w}x{h} clip at 30 fps paced in real time, blur "
          f"background, virtual camera = pyvirtualcam with a discarding backend; one warm-up run, then "
          f"{args.rounds} rounds of every case in rotated order; medians over the rounds.\n",
          "| case | " + " | ".join(label for _, label, _ in METRICS) + " |",
          "|---|" + "---|" * len(METRICS)]
    for case in cases:
        m = medians[case]
        md.append(f"| {LABELS[case]} | " + " | ".join(fmt.format(m[k]) if k in m else "-" for k, _, fmt in METRICS)
                  + " |")
    md.append("\nrender = all per-frame work on the render thread except the model; filter CPU = the filter's "
              "process (its control server included); client CPU = the polling process, or all of Chromium's "
              "processes while the page is open.")
    js, mdp = write_results(args.out, "control", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                                  "medians": medians}, "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
