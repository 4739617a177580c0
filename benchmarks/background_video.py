"""A video background's work per background frame, besides decoding: the decoded frame made the
output's RGB picture (``vbg.compositing.backgrounds.fitted_frame``: FFmpeg converts and scales
straight to the covering size, then a centre crop), with the way it was done before as the
baseline in the same run (converted to RGB at the clip's own size, then ``cover_fit``: crop and
resize with OpenCV).

    python -m benchmarks.background_video [--repeat 100] [--out benchmarks/out]

Clips are made here (H.264, 30 frames each): 1920x1080, 1280x720 and a phone's portrait
1080x1920 stored on its side (a display rotation of 90 degrees), each behind 720p and 1080p
outputs. The live filter does this on its background thread for every frame the clip has (a 60
fps clip: 60 times a second), ``vbg process`` for each output frame whose background frame is
new; both on the cores the model needs.
"""

from __future__ import annotations

import argparse
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, time_call, write_results
from benchmarks.compositing import synthetic_frame

CLIPS = {"1080p": ((1080, 1920), 0), "720p": ((720, 1280), 0), "phone portrait 1080x1920": ((1080, 1920), 90)}
OUTPUTS = {"720p": (720, 1280), "1080p": (1080, 1920)}


def make_clip(path: Path, hw: tuple[int, int], rotation: int, frames: int = 30) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.height, stream.width = hw
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        stream.options = {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(hw, i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def decoded(path: Path) -> tuple[list, int]:
    """The clip's frames as decoded (kept, so only the conversion is timed) and their rotation."""
    import av

    from vbg.media.info import frame_rotation

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return frames, frame_rotation(frames[0], stream)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)

    import av
    import cv2

    from vbg.compositing.backgrounds import cover_fit, fitted_frame
    from vbg.media.info import upright
    from vbg.media.tonemap import SdrFrames

    rows: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip_name, (hw, rotation) in CLIPS.items():
            frames, turn = decoded(make_clip(Path(tmp) / f"{len(rows)}.mp4", hw, rotation))
            for out_name, out_hw in OUTPUTS.items():
                dst = np.empty((*out_hw, 3), np.uint8)
                to_rgb = SdrFrames()
                index = [0]

                def now() -> None:
                    frame = frames[index[0] % len(frames)]
                    index[0] += 1
                    fitted_frame(to_rgb, frame, None, turn, out_hw, dst)

                def before() -> None:  # the baseline: RGB at the clip's size, then cover_fit
                    frame = frames[index[0] % len(frames)]
                    index[0] += 1
                    cover_fit(upright(to_rgb(frame), turn), out_hw, dst=dst)

                key = f"{clip_name} behind {out_name}"
                for label, fn in (("before: RGB at the clip's size, then cover_fit", before),
                                  ("now: fitted_frame", now)):
                    r = time_call(fn, warmup=10, repeat=args.repeat)
                    rows.setdefault(key, {})[label] = r
                    print(f"{key:42s} {label:50s} {r['median_ms']:7.2f} ms (p95 {r['p95_ms']:.2f})", flush=True)

    info = machine_info()
    info["opencv"], info["av"] = cv2.__version__, av.__version__
    labels = ["before: RGB at the clip's size, then cover_fit", "now: fitted_frame"]
    md = ["# Video background: one background frame made the output's picture\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, OpenCV {info['opencv']}, "
          f"PyAV {info['av']}. Median (p95) of {args.repeat} frames after 10 warm-up frames, ms; decoding not "
          "included (the same either way).\n",
          "| background clip behind output | " + " | ".join(labels) + " | speed-up |",
          "|---|---|---|---|"]
    for key, by in rows.items():
        a, b = by[labels[0]]["median_ms"], by[labels[1]]["median_ms"]
        md.append(f"| {key} | {a:.2f} ({by[labels[0]]['p95_ms']:.2f}) | {b:.2f} ({by[labels[1]]['p95_ms']:.2f}) "
                  f"| {a / b:.1f}x |")
    text = "\n".join(md) + "\n"
    print("\n" + text)
    js, mdp = write_results(args.out, "background_video", {"machine": info, "rows": rows}, text)
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
