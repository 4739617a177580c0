"""What the person crop costs: the model's time a frame and ``vbg process``'s frame rate, with and without.

``python -m benchmarks.crop_cost [--frames 96] [--rounds 3] [--model selfie]``

A clip of the synthetic person (``tests/data/people``) standing at the back of a
room, a third of the frame's height (640x360, 30 fps), where ``--crop auto``
crops every frame but the first; and the same person close up (90% of the
height), where it must cost nothing. Two measurements, each with its baseline
(``--crop off``) in the same run, the order of the modes rotated every round:

- the model's time a frame: ``CroppedSegmenter.segment`` against the bare
  segmenter's ``segment`` on the clip's frames (3 warm-up frames, median over
  the rest and over the rounds);
- ``vbg process`` end to end (``--alpha``, a .mov), frames per second from its
  ``--json`` summary, median over the rounds.

Writes ``crop_cost.json`` and ``crop_cost.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, write_results

PEOPLE = Path(__file__).resolve().parent.parent / "tests" / "data" / "people"
SIZE = (360, 640)
FPS = 30
SCENES = {"small": 0.35, "close-up": 1.0}  # the person's scale (1 = 90% of the frame's height)


def render(scale: float, n: int):
    from vbg.evaluation import load_person, load_room
    from vbg.evaluation.clips import Pose, iter_frames

    person, room = load_person(PEOPLE / "example03_rgba.png"), load_room(PEOPLE / "background01.jpg")
    poses = (Pose(0.25 * math.sin(2 * math.pi * t / 60), 0.3 * (1 - scale), scale) for t in range(n))
    return [f for f, _ in iter_frames(person, room, poses, size=SIZE)]


def write_clip(path: Path, frames) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = SIZE[1], SIZE[0], "yuv420p"
        s.options = {"crf": "12"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


def model_ms(seg, frames, crop: bool) -> tuple[list[float], int]:
    """Per-frame times (ms) after 3 warm-up frames, and how many frames were cropped."""
    from vbg.inference.crop import CroppedSegmenter

    run = CroppedSegmenter(seg) if crop else seg
    out = []
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        run.segment(f)
        if i >= 3:
            out.append((time.perf_counter() - t0) * 1000.0)
    return out, (run.crops if crop else 0)


def process_fps(clip: Path, out_dir: Path, crop: str, model: str) -> float:
    out = out_dir / f"out-{crop}-{time.monotonic_ns()}.mov"
    proc = subprocess.run([sys.executable, "-m", "vbg", "process", str(clip), "-o", str(out), "--alpha",
                           "--model", model, "--crop", crop, "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"vbg process --crop {crop} failed: {proc.stderr[-500:]}")
    done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    out.unlink(missing_ok=True)
    return float([d for d in done if d.get("event") == "done"][-1]["fps"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="selfie")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    from vbg.inference import SegmenterConfig, create_segmenter

    res: dict = {"machine": machine_info(), "model": args.model, "frames": args.frames, "rounds": args.rounds,
                 "loadavg_before": list(os.getloadavg()), "scenes": {}}
    seg = create_segmenter(SegmenterConfig(model=args.model, device="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        for name, scale in SCENES.items():
            frames = render(scale, args.frames)
            clip = write_clip(tmp_dir / f"{name}.mp4", frames)
            times = {"off": [], "auto": []}
            fps = {"off": [], "auto": []}
            crops = 0
            for r in range(args.rounds):
                order = ("off", "auto") if r % 2 == 0 else ("auto", "off")
                for mode in order:
                    t, c = model_ms(seg, frames, mode == "auto")
                    times[mode] += t
                    crops = max(crops, c)
                for mode in order:
                    fps[mode].append(process_fps(clip, tmp_dir, mode, args.model))
            res["scenes"][name] = {
                "scale": scale, "frames_cropped": crops,
                "model_ms_median": {m: statistics.median(v) for m, v in times.items()},
                "process_fps_median": {m: statistics.median(v) for m, v in fps.items()},
                "process_fps_rounds": fps,
            }
            print(name, res["scenes"][name], flush=True)
    seg.close()
    res["loadavg_after"] = list(os.getloadavg())
    m = res["machine"]
    lines = [
        "# The person crop's cost (`python -m benchmarks.crop_cost`)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, onnxruntime {m.get('onnxruntime', '-')}. "
        f"Model `{args.model}`, {SIZE[1]}x{SIZE[0]} at {FPS} fps, {args.frames} frames, {args.rounds} rounds "
        f"(modes rotated); load average {res['loadavg_before'][0]:.2f} before, {res['loadavg_after'][0]:.2f} after.", "",
        "| scene | frames cropped | model ms/frame, off | with crop | vbg process fps, off | with crop |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in res["scenes"].items():
        lines.append(f"| {name} (scale {s['scale']}) | {s['frames_cropped']} of {args.frames} | "
                     f"{s['model_ms_median']['off']:.2f} | {s['model_ms_median']['auto']:.2f} | "
                     f"{s['process_fps_median']['off']:.1f} | {s['process_fps_median']['auto']:.1f} |")
    js, md = write_results(args.out, "crop_cost", res, "\n".join(lines) + "\n")
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
