"""The README's before/after strip: one frame of the demo clip as the camera sees it,
with the room blurred, and with the bundled beach behind the person.

Made with vbg's own pieces (the bundled selfie model, the compositor), so the
picture shows what vbg does, not a retouched mock-up::

    python tools/make_readme_strip.py            # writes docs/before-after.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from vbg.capture.demo import DEMO_CLIP
from vbg.compositing import Compositor, background_from_options
from vbg.fsutil import write_new
from vbg.inference import SegmenterConfig, create_segmenter
from vbg.models.preprocess import alpha_to_u8

OUT = Path(__file__).resolve().parents[1] / "docs" / "before-after.jpg"


def demo_frame(index: int) -> np.ndarray:
    with av.open(str(DEMO_CLIP)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise SystemExit(f"the demo clip has fewer than {index + 1} frames")


def label(img: np.ndarray, text: str) -> None:
    h = img.shape[0]
    cv2.rectangle(img, (0, h - 44), (img.shape[1], h), (0, 0, 0), -1)
    cv2.putText(img, text, (14, h - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=int, default=100, help="which frame of the demo clip (default 100)")
    ap.add_argument("--width", type=int, default=480, help="width of each panel (default 480)")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()

    rgb = demo_frame(args.frame)
    h, w = rgb.shape[:2]
    with create_segmenter(SegmenterConfig(model="selfie")) as seg:
        alpha = alpha_to_u8(seg.segment_full(rgb))
    panels = [rgb.copy()]
    for bg_args, text in (({"blur": 1.0}, "vbg --blur"), ({"background": "beach.jpg"}, "vbg --background beach.jpg")):
        with background_from_options(**bg_args) as bg:
            comp = Compositor((h, w), bg)
            panels.append(comp.compose(rgb, alpha, out=np.empty_like(rgb)).copy())
    size = (args.width, round(args.width * h / w))
    panels = [cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels]
    for p, text in zip(panels, ("camera", "vbg --blur", "vbg --background beach.jpg")):
        label(p, text)
    strip = cv2.cvtColor(np.hstack(panels), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", strip, [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise SystemExit("JPEG encoding failed")
    write_new(args.output, data.tobytes())
    print(f"wrote {args.output} ({strip.shape[1]}x{strip.shape[0]})")


if __name__ == "__main__":
    main()
