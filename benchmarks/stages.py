"""Per-stage cost of one frame, p50 and p95, at 480p, 720p and 1080p.

    python -m benchmarks.stages [--repeat 100] [--out benchmarks/out]

Every stage of the live path except the model (see benchmarks.inference):
capture/decode (PyAV H.264 decode to RGB; and a phone's 10-bit HLG video decoded
and tone-mapped to SDR, vbg.media.tonemap), pre-processing (resize + normalise
into the model's input), post-processing and upsampling, smoothing and
mask propagation (grey, optical flow, warp, smoother), compositing per
background mode, and the sink conversion (RGB -> I420 for the virtual camera);
then the per-frame sum of everything but the model (decode is the camera's).
Frames cycle through 30 different images, so caches are as cold as live.
Inputs are a moving person with exact alpha; the mask is the truth reduced to
the inference size (long side 256), as a model would give.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import machine_info, time_call, write_results

SIZES = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
MASK_CARRY = "mask: flow carry (grey, DIS, person motion, warp) + smoothing + sharp upsampling"
MASK_FRESH = "mask: a fresh mask for this frame (grey for the history, smoothing, sharp upsampling)"
PRE = "pre-processing (resize, normalise)"
SINK = "sink: RGB -> I420 (virtual camera)"
HDR_DECODE = "capture: decode 10-bit HLG H.264 -> RGB, tone-mapped to SDR (a phone's HDR video)"
INTERLACED_DECODE = "capture: decode interlaced H.264 -> RGB, deinterlaced (bwdif: a camcorder's 1080i)"
WIDE_DECODE = "capture: decode 10-bit BT.2020 SDR H.264 -> RGB, converted to BT.709 (a UHD broadcast)"


def budget_rows(r: dict) -> list[tuple[str, float]]:
    """Everything but the model per frame (medians added): pre-processing, the mask path,
    compositing and the sink conversion, for the common backgrounds, with the mask carried
    by optical flow (a slow model, as RMBG-1.4 on a CPU) and fresh (a model on every frame)."""
    rows = []
    for bg in ("image", "blur (mask-weighted)"):
        for label, mask in (("carried", MASK_CARRY), ("fresh", MASK_FRESH)):
            total = sum(r[k]["median_ms"] for k in (PRE, mask, f"compositing: {bg}", SINK))
            rows.append((f"{bg.split()[0]} background, mask {label}", total))
    return rows


class LoopingDecoder:
    """``decoder()``: ``clip``'s next frame (from the start again at its end) as ``convert(frame)``."""

    def __init__(self, clip: Path, convert) -> None:
        self.clip, self.convert = clip, convert
        self._container = None
        self._frames = iter(())

    def __call__(self):
        import av

        f = next(self._frames, None)
        if f is None:
            self.close()
            self._container = av.open(str(self.clip))
            self._frames = self._container.decode(video=0)
            f = next(self._frames)
        return self.convert(f)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _deinterlaced(deinterlacer):
    """A LoopingDecoder conversion: the frame through a Deinterlacer, as RGB (the filter holds one
    frame back, so each call gives the frame before; the very first gives None, in the warm-up)."""
    fields = [None]

    def convert(frame):
        if fields[0] is None:
            fields[0] = deinterlacer(frame.time_base)
        ready = fields[0].push(frame)
        return ready[0].to_ndarray(format="rgb24") if ready else None

    return convert


def measure(hw: tuple[int, int], repeat: int, tmp: Path) -> dict[str, dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import interlace, person_clip_frames, write_clip, write_hdr_clip

    from vbg.compositing import BlurBackground, ColorBackground, Compositor, ImageBackground
    from vbg.inference.tracker import MaskTracker
    from vbg.models.preprocess import Preprocessor, inference_size, postprocess
    from vbg.models.spec import RMBG14
    from vbg.compositing import SyncVideoBackground
    from vbg.media.deinterlace import Deinterlacer
    from vbg.media.tonemap import SdrFrames
    from vbg.types import Mask

    h, w = hw
    frames, alphas = zip(*person_clip_frames(30, hw))
    mask_hw = inference_size(hw, 256)
    small = [cv2.resize(a, (mask_hw[1], mask_hw[0]), interpolation=cv2.INTER_AREA) for a in alphas]
    clip = write_clip(tmp / f"c{h}.mp4", frames, fps=30)
    out: dict[str, dict] = {}

    for name, decode in (("capture: decode H.264 -> RGB", LoopingDecoder(clip, lambda f: f.to_ndarray(format="rgb24"))),
                         (HDR_DECODE, LoopingDecoder(write_hdr_clip(tmp / f"hlg{h}.mp4", frames, 18),
                                                     SdrFrames())),
                         (WIDE_DECODE, LoopingDecoder(write_hdr_clip(tmp / f"wide{h}.mp4", frames, 14),
                                                      SdrFrames())),
                         (INTERLACED_DECODE, LoopingDecoder(
                             write_clip(tmp / f"i{h}.mp4", interlace(frames + frames[::-1]), fps=15, interlaced=True),
                             _deinterlaced(Deinterlacer)))):
        out[name] = time_call(decode, repeat=repeat)
        decode.close()
    pre = Preprocessor(mask_hw, RMBG14.mean, RMBG14.std)
    i = [0]

    def nxt():
        i[0] = (i[0] + 1) % len(frames)
        return i[0]

    out[PRE] = time_call(lambda: pre(frames[nxt()]), repeat=repeat)
    raw = [a[None, None].copy() for a in small]
    out["post-processing (clip)"] = time_call(lambda: postprocess(raw[nxt()].copy()), repeat=repeat)

    # The tracker is the whole live per-frame mask path; time it with a mask 2 frames old.
    tracker = MaskTracker(hw, mask_hw)
    for k in range(3):
        tracker.update(frames[k], k, Mask(k, 0.0, small[k], 0.0, 0.0))

    seq = [3]

    def track():
        s = seq[0]
        seq[0] += 1
        k = s % len(frames)
        m = Mask(s - 2, 0.0, small[(s - 2) % len(frames)], 0.0, 0.0) if s % 3 == 0 else None
        return tracker.update(frames[k], s, m)

    out[MASK_CARRY] = time_call(track, repeat=repeat)
    up = tracker.upsampler
    out["  of which sharp upsampling"] = time_call(lambda: up.upsample(small[nxt()], frames[i[0]]), repeat=repeat)
    fresh_tracker = MaskTracker(hw, mask_hw)

    def fresh():
        s = seq[0]
        seq[0] += 1
        return fresh_tracker.update(frames[s % len(frames)], s, Mask(s, 0.0, small[s % len(frames)], 0.0, 0.0))

    out[MASK_FRESH] = time_call(fresh, repeat=repeat)
    a8 = [np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8) for a in alphas]
    room = tmp / f"room{h}.png"
    cv2.imwrite(str(room), cv2.resize(cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR), (w, h)))
    bgclip = write_clip(tmp / f"bg{h}.mp4", [np.roll(frames[0], k * 8, axis=1) for k in range(30)], fps=30)
    for name, bg in (("image", ImageBackground(room)), ("colour", ColorBackground((0, 177, 64))),
                     ("blur (mask-weighted)", BlurBackground(1.0)), ("video", SyncVideoBackground(bgclip))):
        comp = Compositor(hw, bg)
        buf = np.empty((h, w, 3), np.uint8)

        def compose():
            k = nxt()
            return comp.compose(frames[k], a8[k], out=buf)

        out[f"compositing: {name}"] = time_call(compose, repeat=repeat)
        comp.close()
    i420 = np.empty((h * 3 // 2, w), np.uint8)
    out[SINK] = time_call(
        lambda: cv2.cvtColor(frames[nxt()], cv2.COLOR_RGB2YUV_I420, dst=i420), repeat=repeat)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--sizes", default="480p,720p,1080p")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes.split(","):
            results[name] = measure(SIZES[name], args.repeat, Path(tmp))
            print(f"{name} done", flush=True)
    info = machine_info()
    names = list(next(iter(results.values())))
    md = ["# Per-stage cost per frame\n",
          f"Machine: {info['cpu']}, {info['cores']} cores. Median (p95) ms over {args.repeat} frames after "
          "3 warm-up frames, one stage at a time on one thread. Mask at long side 256.\n",
          "| stage | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for n in names:
        md.append(f"| {n} | " + " | ".join(f"{r[n]['median_ms']:.2f} ({r[n]['p95_ms']:.2f})"
                                           for r in results.values()) + " |")
    md += ["", "Everything but the model, per frame (the medians above added: pre-processing + mask path + "
           "compositing + sink conversion; the pre-processing runs only on the frames the model sees, so "
           "this overstates it when the model skips frames):", "",
           "| case | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    sums = {name: dict(budget_rows(r)) for name, r in results.items()}
    for case in next(iter(sums.values())):
        md.append(f"| {case} | " + " | ".join(f"{sums[n][case]:.2f}" for n in results) + " |")
    js, mdp = write_results(args.out, "stages", {"machine": info, "results": results, "budget_ms": sums},
                            "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
