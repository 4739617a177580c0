"""Idle when unwatched: CPU while nobody reads the virtual camera, against the same run live, and
the time from a reader appearing to the first live frame.

    python -m benchmarks.idle [--seconds 10] [--size 1280x720] [--wakes 5] [--model selfie] [--out benchmarks/out]

One live filter run (real clock, real threads): a 30 fps clip of a moving person, paced in real
time and looped, stands in for the webcam (released and reopened through the same path as a
camera: ``open_source``); the virtual camera is pyvirtualcam with a discarding backend; who reads
it is a watcher the benchmark sets (no kernel module here), polled as often as the v4l2loopback
usage event is. Phases: live with a reader (warm-up, then CPU over ``--seconds``: the baseline);
no reader until the gate idles, then CPU over ``--seconds``; the same with the /proc scan (the
fallback for older modules) as the watcher, on a temporary file; then ``--wakes`` times: a reader
appears -> the first live frame reaches the sinks (median), and back to idle.
CPU = process CPU time (user + system, every thread) / wall time, in % of one core.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import DROP_BACKEND, drop_backend, machine_info, write_results
from benchmarks.live import _clip


class Readers:
    """The watcher the benchmark sets; ``inner`` (a real ProcWatcher) is consulted too when set."""

    kind = "benchmark"

    def __init__(self) -> None:
        from vbg.sinks.watchers import EVENT_INTERVAL_S

        self.n, self.inner, self.interval = 1, None, EVENT_INTERVAL_S

    def readers(self) -> int:
        return self.n + (self.inner.readers() if self.inner is not None else 0)

    def close(self) -> None:
        pass


class Stamps:
    """A sink that notes when each live composite (a new frame number) arrives."""

    def __init__(self) -> None:
        self.last_seq, self.t_new, self.new = -1, 0.0, threading.Event()

    def send(self, c) -> None:
        if c.seq > self.last_seq:  # the idle card repeats the last frame number
            self.last_seq, self.t_new = c.seq, time.monotonic()
            self.new.set()

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _busy(seconds: float) -> float:
    c0, t0 = _cpu(), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (_cpu() - c0) / (time.monotonic() - t0)


def _wait(cond, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


OPENER = "import sys; f = open(sys.argv[1], 'rb'); sys.stdin.read()"  # a reader: holds the node open


def _wakes(pipe, stamps, readers, n: int, appear, leave) -> list[float]:
    """``n`` times from idle: a reader appears -> ms to the first live frame; the reader leaves,
    back to idle."""
    lat = []
    for _ in range(n):
        stamps.new.clear()
        t0 = time.monotonic()
        appear()
        if not stamps.new.wait(30.0):
            raise RuntimeError("no live frame after a reader appeared")
        lat.append((stamps.t_new - t0) * 1000.0)
        time.sleep(0.5)
        leave()
        _wait(lambda: pipe.idle.idle and pipe.capture.released.is_set(), "idle again")
        time.sleep(0.5)
    return lat


def run(clip: Path, model: str, seconds: float, wakes: int) -> dict:
    from vbg.config import LiveConfig, apply
    from vbg.pipeline import LivePipeline
    from vbg.sinks.watchers import ProcWatcher

    cfg = apply(LiveConfig(), {"source": {"source": str(clip), "loop": True}, "model": {"model": model},
                               "background": {"blur": 1.0},
                               "output": {"vcam_backend": DROP_BACKEND, "idle_after": 1.0}})
    readers, stamps = Readers(), Stamps()
    pipe = LivePipeline(cfg, watcher=readers, sinks=[stamps])
    out: dict = {}
    errors: list[BaseException] = []

    def target():
        try:
            pipe.run()
        except BaseException as e:  # reported below
            errors.append(e)

    with drop_backend(), tempfile.NamedTemporaryFile() as node:
        th = threading.Thread(target=target, daemon=True)
        th.start()
        try:
            _wait(lambda: pipe.started.is_set() or errors, "the pipeline to start")
            time.sleep(3.0)  # warm-up: the model's first runs, the skip governor settled
            out["live_cpu_pct"] = _busy(seconds)
            out["live_fps"] = pipe.stats.snapshot()["out_fps"]

            readers.n = 0
            _wait(lambda: pipe.idle.idle and pipe.capture.released.is_set(), "idle")
            time.sleep(1.0)
            out["idle_cpu_pct"] = _busy(seconds)

            out["resume_ms"] = _wakes(pipe, stamps, readers, wakes, lambda: setattr(readers, "n", 1),
                                      lambda: setattr(readers, "n", 0))

            # The fallback for older modules: the /proc scan (inotify-triggered) on a file that a
            # real child process opens as the reader.
            readers.inner = ProcWatcher(node.name)
            readers.interval = readers.inner.interval
            time.sleep(1.0)
            out["idle_proc_cpu_pct"] = _busy(seconds)
            out["proc_inotify"] = readers.inner.interval < 0.5
            child: list = []

            def appear():
                child.append(subprocess.Popen([sys.executable, "-c", OPENER, node.name], stdin=subprocess.PIPE))

            def leave():
                p = child.pop()
                p.stdin.close()
                p.wait(30)

            out["resume_proc_ms"] = _wakes(pipe, stamps, readers, wakes, appear, leave)
            readers.inner.close()
        finally:
            pipe.stop()
            th.join(30)
    if errors:
        raise errors[0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="each CPU measurement (default 10)")
    ap.add_argument("--size", default="1280x720", help="source WxH (default 1280x720)")
    ap.add_argument("--wakes", type=int, default=5, help="reader-appears measurements (default 5)")
    ap.add_argument("--model", default="selfie")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = _clip(Path(tmp) / "person.mp4", (h, w))
        r = run(clip, args.model, args.seconds, args.wakes)
    info = machine_info()
    med, med_proc = statistics.median(r["resume_ms"]), statistics.median(r["resume_proc_ms"])
    ms = lambda v: ", ".join(f"{x:.0f}" for x in v)  # noqa: E731
    proc = "inotify-triggered" if r["proc_inotify"] else "timed"
    print(f"live {r['live_cpu_pct']:.1f}% of a core ({r['live_fps']:.1f} fps out); idle {r['idle_cpu_pct']:.2f}%; "
          f"idle with the {proc} /proc scan {r['idle_proc_cpu_pct']:.2f}%; reader -> first live frame "
          f"{med:.0f} ms median ({ms(r['resume_ms'])}); through /proc {med_proc:.0f} ms ({ms(r['resume_proc_ms'])})",
          flush=True)
    md = ["# Idle when unwatched\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; onnxruntime {info.get('onnxruntime')}. "
          f"`python -m benchmarks.idle --seconds {args.seconds:g} --size {args.size} --wakes {args.wakes} "
          f"--model {args.model}`: a {w}x{h} clip at 30 fps paced in real time as the camera, blur "
          "background, virtual camera = pyvirtualcam with a discarding backend, --idle-after 1. CPU = process "
          f"CPU time / wall time over {args.seconds:g} s, % of one core.\n",
          "| state | CPU (% of a core) | reader -> first live frame, median (each) |", "|---|---|---|",
          f"| live, a reader ({r['live_fps']:.1f} fps out) | {r['live_cpu_pct']:.1f} | |",
          f"| idle, usage event (looked at every 0.1 s) | {r['idle_cpu_pct']:.2f} | {med:.0f} ms ({ms(r['resume_ms'])}) |",
          f"| idle, {proc} /proc scan (older modules; a child process opens the node) | "
          f"{r['idle_proc_cpu_pct']:.2f} | {med_proc:.0f} ms ({ms(r['resume_proc_ms'])}) |"]
    js, mdp = write_results(args.out, "idle", {"machine": info, **r}, "\n".join(md) + "\n")
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
