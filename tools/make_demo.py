#!/usr/bin/env python3
"""Render the demo clip that ``vbg --source demo`` plays (``vbg/assets/demo/demo.mp4``).

A synthetic person on a video call: she sways from the hips, breathes, drifts a
little sideways and leans in towards the camera once, over a room. Every motion
is periodic in the clip's length, so the last frame flows into the first and
the clip loops without a jump. A little sensor noise (different in every frame)
keeps it from looking like a still image pasted on a still image, and gives
the temporal smoothing something real to do.

The person and the room are the project's own synthetic test people
(``tests/data/people``: ``example03_rgba.png`` over ``background01.jpg``;
Apache-2.0, see that folder's ATTRIBUTION.md), rendered with
``vbg.evaluation.clips`` (the same sub-pixel renderer as the quality clips).
Those copies are small (a 384 px person, a 640 x 360 room), enough for a
640 x 360 clip. The shipped 960 x 540 clip was made from the same two images at
their upstream resolution (``humans/example03.png``, 1024 x 1024, and
``backgrounds/background01.png``, 1360 x 768, of canvascomputing/human-segmentation),
so nothing is upscaled::

    python tools/make_demo.py --person UPSTREAM/humans/example03.png \\
        --room UPSTREAM/backgrounds/background01.png --size 960x540

Without arguments it renders 640 x 360 from ``tests/data/people``. The output
is written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = ROOT / "tests" / "data" / "people"
OUT = ROOT / "vbg" / "assets" / "demo" / "demo.mp4"


def demo_poses(n_frames: int) -> Iterator:
    """The person's pose at each frame: sums of sines whose periods divide
    ``n_frames`` (frame ``n_frames`` would be frame 0 again: a seamless loop)."""
    from vbg.evaluation.clips import Pose

    for t in range(n_frames):
        # One turn per loop, started a tenth of a turn in: there the person is nearly
        # still, so the seam (and the clip's one keyframe) falls on its calmest moment.
        u = 2 * math.pi * (t / n_frames + 0.1)
        # Leaning in: a smooth bump around the middle of the loop, flat near its ends.
        lean = ((1 - math.cos(u)) / 2) ** 3
        yield Pose(
            dx=0.045 * math.sin(u + 0.6) + 0.012 * math.sin(3 * u),  # drifts sideways a little
            dy=0.006 * math.sin(4 * u) + 0.02 * lean,  # breathing; the shoulders drop as she leans in
            scale=1.0 + 0.11 * lean,
            bend=0.05 * math.sin(2 * u) + 0.015 * math.sin(5 * u + 1.0),  # sways from the hips
        )


def render(person: Path, room: Path, out: Path, *, size: tuple[int, int], seconds: float, fps: int,
           noise: float, crf: int, seed: int) -> int:
    import av
    import numpy as np

    from vbg.evaluation.clips import iter_frames, load_person, load_room
    from vbg.fsutil import NewFile

    h, w = size
    if w % 2 or h % 2:
        raise SystemExit(f"--size {w}x{h}: H.264 (yuv420p) needs an even width and height")
    person_rgba, room_rgb = load_person(person), load_room(room)
    if 0.9 * h > person_rgba.shape[0] or max(h / room_rgb.shape[0], w / room_rgb.shape[1]) > 1:
        print(f"note: {w}x{h} upscales the person ({person_rgba.shape[1]}x{person_rgba.shape[0]}) or the "
              f"room ({room_rgb.shape[1]}x{room_rgb.shape[0]}): the clip will look soft", file=sys.stderr)
    n = round(seconds * fps)
    frames = iter_frames(person_rgba, room_rgb, demo_poses(n), size=(h, w), noise=noise, seed=seed)
    with NewFile(out) as new:  # renamed into place once the file is whole
        # by name: +faststart reads the file back to move its index to the front
        with av.open(str(new.tmp), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            container.metadata["title"] = "vbg demo clip (synthetic person, Apache-2.0; see ATTRIBUTION.md)"
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.time_base = Fraction(1, fps)
            stream.options = {"crf": str(crf), "preset": "slower", "tune": "grain"}
            for i, (rgb, _alpha) in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                vf.pts = i
                for pkt in stream.encode(vf):
                    container.mux(pkt)
            for pkt in stream.encode(None):
                container.mux(pkt)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--person", type=Path, default=PEOPLE / "example03_rgba.png", help="RGBA person (straight alpha)")
    p.add_argument("--room", type=Path, default=PEOPLE / "background01.jpg", help="room image")
    p.add_argument("--size", default="640x360", help="WIDTHxHEIGHT (default 640x360)")
    p.add_argument("--seconds", type=float, default=8.0, help="length of one loop (default 8)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--noise", type=float, default=1.5, help="sensor noise sigma in grey levels (default 1.5)")
    p.add_argument("--crf", type=int, default=22, help="x264 quality, lower is better and larger (default 22)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        p.error(f"--size {a.size}: give WIDTHxHEIGHT, e.g. 960x540")
    sys.path.insert(0, str(ROOT))  # the vbg beside this script, even when another one is installed
    n = render(a.person, a.room, a.out, size=(h, w), seconds=a.seconds, fps=a.fps, noise=a.noise, crf=a.crf,
               seed=a.seed)
    print(f"{a.out}: {n} frames, {w}x{h} at {a.fps} fps, {a.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
