"""The README's picture of the control page: a real screenshot of the page in headless
Chromium, against the live filter running on the demo clip with the selfie model.

The filter runs in this process with pyvirtualcam's own Camera and a backend that discards
what it is sent (tests/fakecam.py: no v4l2loopback needed); the page is driven through
chromedriver (tests/browser.py), as in tests/integration/test_control_page.py. A background is
picked by clicking its thumbnail, then the plots fill for ``--seconds``::

    python tools/make_control_screenshot.py      # writes docs/control-page.png

Needs Debian's ``chromium`` and ``chromium-driver`` packages.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, find_chromium  # noqa: E402
from fakecam import fake_camera  # noqa: E402
from vbg.config import LiveConfig, apply  # noqa: E402
from vbg.fsutil import write_new  # noqa: E402
from vbg.pipeline import LivePipeline  # noqa: E402

OUT = ROOT / "docs" / "control-page.png"


def encode(png: bytes, path: Path, colours: int) -> bytes:
    """The screenshot re-encoded small: PNG with its colours reduced to ``colours`` (k-means on
    the pixels; the page is mostly flat), or JPEG when ``path`` ends in .jpg."""
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    else:
        if colours:
            px = img.reshape(-1, 3).astype(np.float32)
            rng = np.random.default_rng(0)
            sample = px[rng.choice(len(px), min(len(px), 60000), replace=False)]
            crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
            cv2.setRNGSeed(0)
            _, _, centres = cv2.kmeans(sample, colours, None, crit, 2, cv2.KMEANS_PP_CENTERS)
            # nearest centre for every pixel, in chunks (memory)
            idx = np.empty(len(px), np.int32)
            for i in range(0, len(px), 200000):
                d = ((px[i:i + 200000, None, :] - centres[None]) ** 2).sum(-1)
                idx[i:i + 200000] = d.argmin(1)
            img = centres.round().astype(np.uint8)[idx].reshape(img.shape)
        ok, data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise SystemExit("encoding the screenshot failed")
    return data.tobytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=25.0, help="how long the plots fill (default 25)")
    ap.add_argument("--background", default="office", help="the thumbnail clicked (default office)")
    ap.add_argument("--size", default="1280x800", help="the page's viewport WxH (default 1280x800)")
    ap.add_argument("--colours", type=int, default=128, help="PNG palette size; 0: all colours (default 128)")
    ap.add_argument("-o", "--output", type=Path, default=OUT, help="a .png or .jpg (default docs/control-page.png)")
    args = ap.parse_args()
    found = find_chromium()
    if isinstance(found, str):
        print(f"make_control_screenshot: {found}", file=sys.stderr)
        return 1
    w, h = (int(v) for v in args.size.split("x"))

    announced = threading.Event()
    urls: list[str] = []

    def on_control(server) -> None:
        urls.append(server.url)
        announced.set()

    with fake_camera("vbg-screenshot", keep=False) as cam:
        cfg = apply(LiveConfig(), {"source": {"source": "demo"}, "model": {"model": "selfie"},
                                   "background": {"blur": 1.0},
                                   "output": {"vcam_backend": cam.name}})
        pipeline = LivePipeline(cfg, on_control=on_control)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                pipeline.run()
            except BaseException as e:
                errors.append(e)
                announced.set()

        t = threading.Thread(target=run, name="screenshot-live", daemon=True)
        t.start()
        try:
            if not announced.wait(120) or errors:
                raise SystemExit(f"the live filter did not start: {errors[0] if errors else 'no control URL'}")
            with Browser(*found, width=w, height=h) as b:
                b.get(urls[0])
                # Headless Chromium's window counts some chrome: make the viewport exactly WxH.
                iw, ih = b.execute("return [innerWidth, innerHeight]")
                b.set_window(w + (w - iw), h + (h - ih))
                b.wait_for("return !document.getElementById('controls').hidden", timeout=60)
                b.wait_for("return document.querySelectorAll('#thumbs .thumb img').length", timeout=60)
                b.click(f"#thumbs .thumb[data-id^='bundled:{args.background}']")
                time.sleep(args.seconds)
                b.wait_for("const i = document.getElementById('preview'); return i.complete && i.naturalWidth",
                           timeout=30)
                png = b.screenshot()
        finally:
            pipeline.stop()
            t.join(60)
    data = encode(png, args.output, args.colours)
    write_new(args.output, data)
    print(f"wrote {args.output} ({len(data) // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
