"""Compositor stage: the person over an image, colour, blurred-camera or video background.

    from vbg.compositing import Compositor, make_background

    with Compositor((720, 1280), make_background("blur", 1.0), mirror=True) as comp:
        out = comp.compose(frame_rgb, alpha_u8)   # reused buffer: copy or pass out=
"""

from ..config import NAMED_COLORS, parse_color
from .backgrounds import (
    BACKGROUNDS,
    Background,
    BlurBackground,
    ColorBackground,
    ImageBackground,
    PictureBackground,
    SyncVideoBackground,
    VideoBackground,
    background_from_options,
    cover_fit,
    make_background,
)
from .bundled import BundledBackground, bundled_backgrounds, describe_bundled, find_background
from .compose import Compositor, MaskShape, threshold_lut

__all__ = [
    "BACKGROUNDS",
    "Background",
    "BlurBackground",
    "BundledBackground",
    "ColorBackground",
    "Compositor",
    "MaskShape",
    "ImageBackground",
    "PictureBackground",
    "NAMED_COLORS",
    "SyncVideoBackground",
    "VideoBackground",
    "background_from_options",
    "bundled_backgrounds",
    "cover_fit",
    "describe_bundled",
    "find_background",
    "make_background",
    "parse_color",
    "threshold_lut",
]
