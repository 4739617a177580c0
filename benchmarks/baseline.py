"""The per-frame loop a typical script would write, as the baseline vbg is compared with.

Single-threaded: read a frame (PyAV), run the model on it (the same ONNX
Runtime session settings, the same size), resize the mask bilinearly, blend
in float numpy ``f*m + b*(1-m)``, write the frame (PyAV H.264). No skipping,
no overlap, fresh arrays every frame.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def naive_loop(clip: Path, model_path: Path, size_hw: tuple[int, int], mean, std, out: Path,
               background: np.ndarray, *, threads: int | None = None, device: str = "cpu") -> dict:
    from vbg.inference.onnx_backend import create_session

    sess, _ = create_session(model_path, device, threads=threads, strict=device != "cpu")
    in_name = sess.get_inputs()[0].name
    bg = background.astype(np.float32)
    n = 0
    t0 = time.monotonic()
    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        vs = src.streams.video[0]
        enc = dst.add_stream("libx264", rate=30)
        enc.width, enc.height, enc.pix_fmt = vs.codec_context.width, vs.codec_context.height, "yuv420p"
        enc.options = {"preset": "veryfast"}
        enc.time_base = Fraction(1, 30)
        for frame in src.decode(vs):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            x = cv2.resize(rgb, (size_hw[1], size_hw[0])).astype(np.float32) / 255.0
            x = ((x - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(2, 0, 1)[None]
            m = sess.run(None, {in_name: np.ascontiguousarray(x)})[0][0, 0]
            m = cv2.resize(m, (w, h))[:, :, None]
            comp = (rgb.astype(np.float32) * m + bg * (1.0 - m)).clip(0, 255).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(comp, format="rgb24")
            vf.pts = n
            dst.mux(enc.encode(vf))
            n += 1
        dst.mux(enc.encode(None))
    wall = time.monotonic() - t0
    return {"frames": n, "seconds": wall, "fps": n / wall}
