"""The compositor stage alone: ``Compositor.compose()`` per background at 480p, 720p and 1080p,
with the naive float numpy blend as the baseline in the same run.

    python -m benchmarks.compositing [--repeat 200] [--out benchmarks/out]

Inputs are made here: a smooth, noisy synthetic camera frame, a soft-edged
person mask (head and shoulders: 24% of the frame, its bounding box 39%), a 1600x1000
background image (cover-fitted) and a 640x360 30 fps H.264 clip. The video
row includes the cost of its decoder thread running on the same 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import machine_info, time_call, write_results

SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}


def synthetic_frame(hw: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = hw
    coarse = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def person_alpha(hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    a = np.zeros(hw, np.uint8)
    cv2.ellipse(a, (w // 2, h), (w // 4, int(h * 0.45)), 0, 0, 360, 255, -1)  # shoulders
    cv2.circle(a, (w // 2, int(h * 0.42)), int(h * 0.17), 255, -1)  # head
    return cv2.GaussianBlur(a, (0, 0), max(1.0, h / 240))  # soft edge, a few pixels wide


def make_clip(path: Path, frames: int = 60) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame((360, 640), i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)

    from vbg.compositing import (BlurBackground, ColorBackground, Compositor, ImageBackground,
                                 VideoBackground)

    rows: dict[str, dict[str, dict]] = {}

    def record(mode: str, size: str, fn) -> None:
        r = time_call(fn, warmup=10, repeat=args.repeat)
        rows.setdefault(mode, {})[size] = r
        print(f"{mode:42s} {size:6s} {r['median_ms']:6.2f} ms (p95 {r['p95_ms']:.2f})", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        img_path = Path(tmp) / "bg.png"
        cv2.imwrite(str(img_path), synthetic_frame((1000, 1600), 99))
        clip = make_clip(Path(tmp) / "bg.mp4")
        for size, hw in SIZES.items():
            frame = synthetic_frame(hw, 1)
            alpha = person_alpha(hw)
            full_alpha = np.maximum(alpha, 1)  # non-zero everywhere: no box to skip
            backgrounds = {
                "image": lambda: ImageBackground(img_path),
                "colour": lambda: ColorBackground("chroma"),
                "blur (strength 1)": lambda: BlurBackground(1.0),
                "video (decoder thread running)": lambda: VideoBackground(clip),
            }
            for mode, make in backgrounds.items():
                with Compositor(hw, make()) as comp:
                    record(mode, size, lambda: comp.compose(frame, alpha))
            with Compositor(hw, ImageBackground(img_path)) as comp:
                record("image, alpha > 0 everywhere (worst case)", size, lambda: comp.compose(frame, full_alpha))
            with Compositor(hw, ImageBackground(img_path), mirror=True, threshold=0.5, feather=3) as comp:
                record("image + mirror + threshold + feather 3", size, lambda: comp.compose(frame, alpha))

            bg = ImageBackground(img_path)
            bg.prepare(hw)
            bg_img = bg.render(frame, alpha)

            def naive() -> np.ndarray:
                m = alpha[..., None].astype(np.float32) / 255.0
                return (frame * m + bg_img * (1.0 - m)).astype(np.uint8)

            record("naive float numpy `f*m + b*(1-m)` (baseline)", size, naive)

    info = machine_info()
    info["opencv"] = cv2.__version__
    info["numpy"] = np.__version__
    sizes = list(SIZES)
    md = ["# Compositing (`Compositor.compose()`, one frame)\n",
          f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, OpenCV {info['opencv']}, "
          f"numpy {info['numpy']}. Median (p95) of {args.repeat} calls after 10 warm-up calls, ms. "
          "Mask: soft-edged head and shoulders, 24% of the frame (bounding box 39%).\n",
          "| mode | " + " | ".join(f"{s} ({w}x{h})" for s, (h, w) in SIZES.items()) + " |",
          "|---|" + "---|" * len(sizes)]
    for mode, by_size in rows.items():
        md.append(f"| {mode} | " + " | ".join(
            f"{by_size[s]['median_ms']:.2f} ({by_size[s]['p95_ms']:.2f})" for s in sizes) + " |")
    base = rows["naive float numpy `f*m + b*(1-m)` (baseline)"]
    md.append("\nSpeed-up of `compose()` with an image background over the naive blend: " + ", ".join(
        f"{s} {base[s]['median_ms'] / rows['image'][s]['median_ms']:.1f}x" for s in sizes) + ".")
    text = "\n".join(md) + "\n"
    print("\n" + text)
    js, mdp = write_results(args.out, "compositing", {"machine": info, "rows": rows}, text)
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
