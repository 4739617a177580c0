"""Soak: the live filter for minutes on end, and vbg process over long batches, watching for leaks.

    python -m benchmarks.soak [--minutes 10] [--size 640x360] [--out benchmarks/out]
    python -m benchmarks.soak --batch [--files 60] [--runs 3] [--size 640x360] [--out benchmarks/out]

The live pipeline runs in this process on a 30 fps clip of a moving person,
paced in real time and looped, with the selfie model, an image background,
recording on, and pyvirtualcam's own Camera with a backend that discards what
it is sent (no kernel module needed). Resident memory (VmRSS), threads (OS
threads, ONNX Runtime's pool included) and open file descriptors are sampled
after a warm-up (start), every minute, at the end of the run, and after the
pipeline is closed (threads get 2 s to end). A short run before the soak
initialises what libraries set up once per process, so "after close" can be
compared with "before".
Passes when RSS grows less than 20 MB from start to end and threads and open
files are back to their "before" values once the pipeline is closed.

``--batch``: vbg process over many short files (15 frames each). In this process,
one FileProcessor (two selfie workers) takes the files one after another, after a
warm-up file: OS threads must be back to their start value after every file, and
RSS must not grow with the number of files. Then the peak RSS of ``python -m vbg
process`` over 10 and over ``--files`` files is measured (``--runs`` runs each
after one warm-up run, medians): the long batch must stay within 100 MB of the
short one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


from benchmarks.common import DROP_BACKEND, drop_backend, machine_info, write_results

ROOT = Path(__file__).resolve().parents[1]
BACKGROUND = ROOT / "tests/data/people/background01.jpg"
RSS_LIMIT_MB = 20.0
SETTLE_S = 2.0  # after close, how long threads and files get to go away


@dataclass(frozen=True, slots=True)
class Sample:
    label: str
    t_s: float  # seconds since the soak started
    rss_mb: float
    threads: int  # OS threads of this process
    py_threads: int  # Python threads
    fds: int  # open file descriptors
    out_frames: int = 0


def _thread_names(exclude: set[str]) -> list[str]:
    out = []
    for tid in sorted(set(os.listdir("/proc/self/task")) - exclude):
        try:
            out.append(f"{tid} {Path(f'/proc/self/task/{tid}/comm').read_text().strip()}")
        except OSError:  # ended meanwhile
            continue
    return out


def sample(label: str, t_s: float = 0.0, out_frames: int = 0) -> Sample:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(fields["VmRSS"].split()[0])
    return Sample(label, round(t_s, 1), round(rss_kb / 1024, 1), int(fields["Threads"]),
                  threading.active_count(), len(os.listdir("/proc/self/fd")), out_frames)


@dataclass
class SoakResult:
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    out_frames: int = 0
    out_fps: float = 0.0
    recording_mb: float = 0.0
    leftover_threads: list[str] = field(default_factory=list)  # "tid name" of threads not there before

    def get(self, label: str) -> Sample:
        return next(s for s in self.samples if s.label == label)

    @property
    def rss_growth_mb(self) -> float:
        return self.get("end").rss_mb - self.get("start").rss_mb

    @property
    def leaked_threads(self) -> int:
        return self.get("closed").threads - self.get("before").threads

    @property
    def leaked_fds(self) -> int:
        return self.get("closed").fds - self.get("before").fds

    @property
    def passed(self) -> bool:
        return self.rss_growth_mb < RSS_LIMIT_MB and self.leaked_threads <= 0 and self.leaked_fds <= 0


def make_clip(path: Path, hw: tuple[int, int], frames: int = 150) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from media import person_clip_frames, write_clip

    return write_clip(path, [f for f, _ in person_clip_frames(frames, hw)], fps=30)


def _config(clip: Path, record: Path, seconds: float):
    from vbg.config import LiveConfig, apply

    return apply(LiveConfig(), {"source": {"source": str(clip), "loop": True},
                                "model": {"model": "selfie"},
                                "background": {"background": str(BACKGROUND)},
                                "output": {"vcam_backend": DROP_BACKEND, "record": str(record),
                                           "overwrite": True, "duration": seconds}})


def soak(clip: Path, seconds: float, workdir: Path, *, warmup_s: float = 10.0, interval_s: float = 60.0,
         prime_s: float = 3.0, on_sample=None) -> SoakResult:
    """Run the live filter for ``seconds`` (after ``warmup_s``), sampling as described above."""
    with drop_backend():
        return _soak(clip, seconds, workdir, warmup_s=warmup_s, interval_s=interval_s, prime_s=prime_s,
                     on_sample=on_sample)


def _soak(clip: Path, seconds: float, workdir: Path, *, warmup_s: float, interval_s: float, prime_s: float,
          on_sample) -> SoakResult:
    from vbg.pipeline import LivePipeline

    if prime_s > 0:  # what libraries set up once per process (thread pools, codec tables)
        LivePipeline(_config(clip, workdir / "prime.mp4", prime_s)).run()
    result = SoakResult(seconds)

    def keep(s: Sample) -> None:
        result.samples.append(s)
        if on_sample is not None:
            on_sample(s)

    keep(sample("before"))
    before_tids = set(os.listdir("/proc/self/task"))
    record = workdir / "soak.mp4"
    pipeline = LivePipeline(_config(clip, record, warmup_s + seconds))
    t0 = time.monotonic()
    state = {"next": warmup_s, "minute": 0, "ended": False}

    def on_tick(p) -> None:
        t = time.monotonic() - t0
        frames = p.stats.out_frames
        if state["minute"] == 0 and t >= warmup_s:
            keep(sample("start", t, frames))
            state["minute"], state["next"] = 1, warmup_s + interval_s
        elif state["minute"] and t >= state["next"] and t < warmup_s + seconds - 1.0:
            keep(sample(f"{state['minute'] * interval_s / 60:g} min", t, frames))
            state["minute"] += 1
            state["next"] += interval_s
        elif state["minute"] and not state["ended"] and t >= warmup_s + seconds - 0.5:
            keep(sample("end", t, frames))
            state["ended"] = True

    stats = pipeline.run(on_tick=on_tick)
    if not state["ended"]:
        keep(sample("end", time.monotonic() - t0, stats.out_frames))
    del pipeline
    # Native threads that libraries end on their own (joined elsewhere) get a moment to
    # go; one still there after SETTLE_S is a leak.
    before = result.get("before")
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        now = sample("closed")
        if now.threads <= before.threads and now.fds <= before.fds:
            break
        time.sleep(0.05)
    keep(sample("closed", time.monotonic() - t0, stats.out_frames))
    result.leftover_threads = _thread_names(exclude=before_tids)
    snap = stats.snapshot()
    result.out_frames, result.out_fps = snap["out_frames"], snap["out_fps"]
    result.recording_mb = record.stat().st_size / 2**20 if record.exists() else 0.0
    return result


def table(result: SoakResult) -> str:
    rows = ["| when | t (s) | RSS (MB) | OS threads | Python threads | open fds | frames out |",
            "|---|---|---|---|---|---|---|"]
    for s in result.samples:
        rows.append(f"| {s.label} | {s.t_s:.0f} | {s.rss_mb:.1f} | {s.threads} | {s.py_threads} | {s.fds} "
                    f"| {s.out_frames} |")
    return "\n".join(rows)


BATCH_FRAMES = 15
BATCH_PEAK_LIMIT_MB = 100.0


def batch_in_process(clip: Path, files: int, workdir: Path) -> list[Sample]:
    """One processor over ``files`` files; a sample after a warm-up file and after each file."""
    from vbg.inference import SegmenterConfig, create_segmenter
    from vbg.offline.process import FileProcessor, ProcessConfig
    from vbg.progress import Progress

    scfg = SegmenterConfig(model="selfie", device="cpu", threads=1)
    samples = []
    with create_segmenter(scfg) as a, create_segmenter(scfg) as b:
        proc = FileProcessor(ProcessConfig(model=scfg), a, b)
        proc.process(clip, workdir / "warmup.mp4", Progress("warmup", None, mode="quiet"))
        samples.append(sample("start"))
        for i in range(1, files + 1):
            out = workdir / f"batch{i % 2}.mp4"
            out.unlink(missing_ok=True)
            proc.process(clip, out, Progress(str(i), None, mode="quiet"))
            samples.append(sample(f"file {i}", out_frames=i * BATCH_FRAMES))
    return samples


def batch_peak_mb(clip: Path, files: int, workdir: Path) -> float:
    """Peak RSS of one ``python -m vbg process`` over ``files`` copies of ``clip``."""
    import shutil
    import subprocess

    src = workdir / f"in{files}"
    if not src.exists():
        src.mkdir()
        for i in range(files):
            os.link(clip, src / f"clip{i:03d}.mp4")
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "vbg", "process", "--no-default-config", str(src / "*.mp4"),
                             "-o", str(out), "--model", "selfie", "-q"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"vbg process failed ({proc.returncode}): {err[-500:]}")
    return usage.ru_maxrss / 1024  # kB on Linux


def batch_main(args, w: int, h: int) -> int:
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work / "person.mp4", (h, w), frames=BATCH_FRAMES)
        samples = batch_in_process(clip, args.files, work)
        threads0 = samples[0].threads
        wrong_threads = [s.label for s in samples if s.threads != threads0]
        rss = {s.label: s.rss_mb for s in samples}
        growth = rss[f"file {args.files}"] - rss["file 5"]
        print(f"in process: threads {threads0} at start, after every file: "
              f"{'the same' if not wrong_threads else 'different after ' + ', '.join(wrong_threads)}; "
              f"RSS {rss['file 5']:.1f} MB after file 5, {rss[f'file {args.files}']:.1f} MB after file {args.files}",
              flush=True)
        peaks: dict[int, list[float]] = {}
        for n in (10, args.files):
            batch_peak_mb(clip, n, work)  # warm-up: page cache, first-run costs
            peaks[n] = [batch_peak_mb(clip, n, work) for _ in range(args.runs)]
            print(f"vbg process over {n} files: peak RSS {', '.join(f'{p:.0f}' for p in peaks[n])} MB", flush=True)
    med = {n: statistics.median(v) for n, v in peaks.items()}
    delta = med[args.files] - med[10]
    passed = not wrong_threads and growth < 20.0 and delta < BATCH_PEAK_LIMIT_MB
    verdict = (f"threads back to {threads0} after every file: {'yes' if not wrong_threads else 'no'}; RSS "
               f"{growth:+.1f} MB from file 5 to file {args.files}; peak RSS of {args.files} files "
               f"{delta:+.0f} MB against 10 files (limit {BATCH_PEAK_LIMIT_MB:g}): " + ("PASS" if passed else "FAIL"))
    print(verdict)
    info = machine_info()
    keep = [s for s in samples if s.label in ("start", "file 1", "file 5", "file 10", "file 20", "file 40",
                                                f"file {args.files}")]
    rows = ["| when | RSS (MB) | OS threads | Python threads | open fds |", "|---|---|---|---|---|"]
    rows += [f"| {s.label} | {s.rss_mb:.1f} | {s.threads} | {s.py_threads} | {s.fds} |" for s in keep]
    peak_rows = ["| files | peak RSS per run (MB) | median (MB) |", "|---|---|---|"]
    peak_rows += [f"| {n} | {', '.join(f'{p:.0f}' for p in peaks[n])} | {med[n]:.0f} |" for n in peaks]
    md = (f"# Soak: vbg process over a batch of {args.files} files\n\n"
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}. Files of {BATCH_FRAMES} frames "
          f"at {w}x{h}, selfie model, two workers, H.264 out.\n\n"
          f"In one process, after a warm-up file:\n\n" + "\n".join(rows) +
          f"\n\n`python -m vbg process DIR/*.mp4 -o OUT --model selfie -q`, {args.runs} runs after one warm-up "
          "run each:\n\n" + "\n".join(peak_rows) + f"\n\n{verdict}\n")
    payload = {"machine": info, "files": args.files, "size": [w, h], "frames_per_file": BATCH_FRAMES,
               "samples": [asdict(s) for s in samples], "peaks_mb": {str(k): v for k, v in peaks.items()},
               "median_peak_mb": {str(k): v for k, v in med.items()}, "rss_growth_mb": growth,
               "threads_differ_after": wrong_threads, "passed": passed}
    js, mdp = write_results(args.out, "soak_batch", payload, md)
    print(f"wrote {js} and {mdp}")
    return 0 if passed else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", default="640x360", help="source WxH (default 640x360)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--batch", action="store_true", help="vbg process over a batch of short files instead")
    ap.add_argument("--files", type=int, default=60, help="files in the long batch (default 60)")
    ap.add_argument("--runs", type=int, default=3, help="measured runs per batch length (default 3)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    if args.batch:
        return batch_main(args, w, h)
    seconds = args.minutes * 60.0
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "person.mp4", (h, w))

        def show(s: Sample) -> None:
            print(f"{s.label:>7}  t={s.t_s:6.0f} s  RSS {s.rss_mb:7.1f} MB  threads {s.threads:3d} "
                  f"(python {s.py_threads})  fds {s.fds:3d}  frames {s.out_frames}", flush=True)

        result = soak(clip, seconds, Path(tmp), on_sample=show)
    verdict = (f"RSS {result.rss_growth_mb:+.1f} MB from start to end (limit {RSS_LIMIT_MB:g}), "
               f"{result.leaked_threads:+d} threads and {result.leaked_fds:+d} open files after close: "
               + ("PASS" if result.passed else f"FAIL (new threads: {', '.join(result.leftover_threads)})"))
    print(table(result))
    print(f"{result.out_frames} frames out at {result.out_fps:.1f} fps, recording {result.recording_mb:.0f} MB; "
          + verdict)
    info = machine_info()
    md = (f"# Soak: the live filter for {args.minutes:g} minutes\n\n"
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}. Source {w}x{h} at 30 fps "
          "(a looped clip, paced in real time), selfie model, image background, recording on, virtual camera "
          "through a discarding pyvirtualcam backend, in one process. 'before' is sampled after a short "
          "priming run, 'start' after 10 s of warm-up, 'closed' after the pipeline has shut down.\n\n"
          f"{table(result)}\n\n{verdict}\n")
    payload = {"machine": info, "minutes": args.minutes, "size": [w, h], "samples": [asdict(s) for s in
                                                                                    result.samples],
               "out_frames": result.out_frames, "out_fps": result.out_fps, "recording_mb": result.recording_mb,
               "rss_growth_mb": result.rss_growth_mb, "leaked_threads": result.leaked_threads,
               "leaked_fds": result.leaked_fds, "passed": result.passed}
    js, mdp = write_results(args.out, "soak", payload, md)
    print(f"wrote {js} and {mdp}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
