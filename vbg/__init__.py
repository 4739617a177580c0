"""vbg: real-time virtual background for video calls and recordings."""

import os as _os

__version__ = "0.1.0"

MAX_IMAGE_PIXELS = 100_000_000  # the largest image vbg decodes (vbg.images checks headers against it)

# OpenCV's decoders refuse images over this limit themselves, a second guard behind vbg's header
# checks. OpenCV reads the variable once, when cv2 is imported: so it is set here, before any vbg
# module imports cv2 (a value the user set wins).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
