"""Interlaced video: the matte with and without deinterlacing, on real footage.

    python -m benchmarks.interlaced --real ../shared/data/davis-people

Each sequence (``SEQ/images/*.jpg`` with hand-drawn ``SEQ/masks/*.png``) is made into
an interlaced H.264 clip as a camcorder stores it: frame i holds picture 2i's odd lines
(the bottom field, first in time) and picture 2i+1's even lines. ``vbg process --matte``
runs on it as vbg reads it (deinterlaced, ``vbg.media.deinterlace``) and, as the
baseline in the same run, with the fields shown as stored (the reader's deinterlacer
replaced by a pass-through: what vbg did before). A third row is the progressive clip
of the even pictures, the same scene without fields. Each output matte, thresholded at
128, is scored (IoU) against the hand-drawn mask of the picture its bottom field came
from. Real footage made interlaced, not a camcorder's file: the fields are 1/24 s apart
(DAVIS's rate) instead of 1/50, so the motion between them is about twice a camera's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, write_results

ROWS = ("deinterlaced (vbg now)", "fields as stored (before)", "progressive, the even pictures")


@contextlib.contextmanager
def _fields_as_stored():
    """The reader's deinterlacer as a pass-through: the baseline."""
    from vbg.media import reader

    class PassThrough:
        def __init__(self, _time_base) -> None:
            pass

        def push(self, frame):
            return [frame]

        def flush(self):
            return []

    real, reader.Deinterlacer = reader.Deinterlacer, PassThrough
    try:
        yield
    finally:
        reader.Deinterlacer = real


def _mattes(clip: Path, out: Path, model: str) -> list[np.ndarray]:
    import av

    from vbg.cli import main

    rc = main(["process", str(clip), "-o", str(out), "--matte", "--model", model, "--workers", "1", "--quiet"])
    if rc != 0:
        raise SystemExit(f"vbg process {clip} failed ({rc})")
    with av.open(str(out)) as c:
        return [f.to_ndarray(format="gray") >= 128 for f in c.decode(video=0)]


def measure(real: Path, model: str, tmp: Path) -> dict:
    import cv2

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import interlace, write_clip

    results = {}
    for seq in sorted(p for p in real.iterdir() if (p / "images").is_dir()):
        names = sorted(p.stem for p in (seq / "images").glob("*.jpg"))
        pictures = [cv2.cvtColor(cv2.imread(str(seq / "images" / f"{n}.jpg")), cv2.COLOR_BGR2RGB) for n in names]
        masks = [cv2.imread(str(seq / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE) > 0 for n in names]
        h, w = (s - s % 2 for s in pictures[0].shape[:2])
        pictures, masks = [p[:h, :w] for p in pictures], [m[:h, :w] for m in masks]
        n = len(pictures) // 2 * 2
        fielded = write_clip(tmp / f"{seq.name}_i.mp4", interlace(pictures[:n]), fps=12, interlaced=True, crf=16)
        progressive = write_clip(tmp / f"{seq.name}_p.mp4", pictures[0:n:2], fps=12, crf=16)
        truth = masks[0:n:2]
        rows = {}
        for row in ROWS:
            clip = progressive if row == ROWS[2] else fielded
            with _fields_as_stored() if row == ROWS[1] else contextlib.nullcontext():
                got = _mattes(clip, tmp / f"{seq.name}_{ROWS.index(row)}.mp4", model)
            ious = [float((g & t).sum() / max(1, (g | t).sum())) for g, t in zip(got, truth)]
            rows[row] = {"mean": float(np.mean(ious)), "min": float(np.min(ious)), "frames": len(ious)}
        results[seq.name] = rows
    return results


def markdown(results: dict, model: str, machine: dict) -> str:
    lines = [f"Model {model}; IoU of the matte (>= 128) against the hand-drawn masks; mean (worst frame).",
             f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores.", "",
             "| sequence (frames) | " + " | ".join(ROWS) + " |", "|---|" + "---|" * len(ROWS)]
    for seq, rows in results.items():
        frames = next(iter(rows.values()))["frames"]
        lines.append(f"| {seq} ({frames}) | " + " | ".join(f"{rows[r]['mean']:.3f} ({rows[r]['min']:.3f})"
                                                          for r in ROWS) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, required=True, metavar="DIR",
                    help="a folder of sequences, each SEQ/images/*.jpg with SEQ/masks/*.png")
    ap.add_argument("--model", default="selfie")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.real, args.model, Path(tmp))
    md = markdown(results, args.model, machine)
    write_results(args.out, "interlaced", {"machine": machine, "model": args.model, "results": results}, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
