"""HDR video to SDR: a phone's HLG recording or an HDR10 (PQ) file as the SDR picture it shows.

In: a decoded PyAV frame whose transfer is HLG or PQ (BT.2020 colours, 10 bits or more), or
an SDR frame in BT.2020 colours (``WIDE_SDR``: a UHD broadcast's, some cameras' 10-bit SDR).
Out: RGB uint8 (H x W x 3) in BT.709 primaries with the BT.1886 (gamma 2.4) encoding, as an
SDR frame's ``to_ndarray("rgb24")`` would be, a new array each call (the caller keeps it).
Thread: one ``ToneMapper`` per reading thread: its working buffers are its own.

The steps, after ITU-R BT.2100, BT.2390 and BT.2408:

1. FFmpeg converts the frame to 16-bit RGB with its own YUV matrix (BT.2020).
2. A table takes each channel to linear light: PQ's EOTF gives display light in cd/m2; HLG's
   inverse OETF gives scene light, and its OOTF (system gamma 1.2 for a 1000 cd/m2 display)
   becomes display light from the luminance ``Ys``: ``Fd = Lw * Ys**(gamma - 1) * E``.
3. The luminance (BT.2020 weights) is tone-mapped with BT.2390's EETF, in the PQ domain, from the
   source's peak (1000 cd/m2, HLG's nominal display; an HDR10 file's MaxCLL or mastering peak
   where it states one) to 203 cd/m2, BT.2408's HDR reference white, which SDR shows at 100 %: shadows and
   mid-tones up to about 90 cd/m2 keep their level, highlights roll off instead of clipping. The
   colour is scaled with its luminance, so hues hold. Steps 2 (its OOTF) and 3 are one function of
   the luminance, kept as a table.
4. A 3x3 matrix takes BT.2020 to BT.709; what falls outside BT.709 is clipped.
5. BT.1886's inverse (gamma 1/2.4) encodes it in 8 bits.

An SDR frame in BT.2020 colours needs no tone mapping: its channels go to display light by
BT.1886 (gamma 2.4, white at 1.0) in step 2, step 3 is left out, and steps 4 and 5 give the
same colours in BT.709, where FFmpeg's plain conversion shows them paler than they are.
"""

from __future__ import annotations

import struct
from typing import Any

import av
import cv2
import numpy as np

PQ, HLG = 16, 18  # AVColorTransferCharacteristic: SMPTE ST 2084, ARIB STD-B67
HDR_TRANSFERS = {PQ: "PQ (HDR10)", HLG: "HLG"}
BT2020_PRIMARIES = 9  # AVColorPrimaries
WIDE_SDR = -1  # ToneMapper's "transfer" for an SDR frame in BT.2020 colours (BT.1886, no tone mapping)

SDR_WHITE_NITS = 203.0  # BT.2408: HDR reference white, shown by SDR at 100 %
HLG_DISPLAY_NITS = 1000.0  # BT.2100's nominal HLG display peak, for which the system gamma is 1.2
HLG_GAMMA = 1.2
LUMA_2020 = np.array([0.2627, 0.6780, 0.0593])  # BT.2020 luminance weights of R, G, B

# BT.2020 to BT.709 primaries (both D65), as BT.2087 gives it.
BT2020_TO_BT709 = np.array([[1.6605, -0.5876, -0.0728],
                            [-0.1246, 1.1329, -0.0083],
                            [-0.0182, -0.1006, 1.1187]])

GAIN_STEPS = 8192  # the luminance table, over the square root of the luminance


def pq_eotf(signal: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084: signal 0..1 -> display light in cd/m2 (0..10000)."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.power(np.clip(signal, 0, 1), 1 / m2)
    return 10000 * np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1)


def pq_inverse_eotf(nits: np.ndarray | float) -> np.ndarray:
    """SMPTE ST 2084's inverse: display light in cd/m2 -> signal 0..1."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    y = np.power(np.clip(np.asarray(nits, np.float64) / 10000, 0, 1), m1)
    return np.power((c1 + c2 * y) / (1 + c3 * y), m2)


def hlg_inverse_oetf(signal: np.ndarray) -> np.ndarray:
    """BT.2100 HLG: signal 0..1 -> scene light 0..1."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * np.log(4 * a)
    e = np.clip(np.asarray(signal, np.float64), 0, 1)
    return np.where(e <= 0.5, e * e / 3, (np.exp((np.maximum(e, 0.5) - c) / a) + b) / 12)


def bt2390_eetf(nits: np.ndarray, source_peak: float, target_peak: float) -> np.ndarray:
    """BT.2390's EETF (black level 0): display light from a ``source_peak`` master to a
    ``target_peak`` display, in cd/m2; identity below the knee, a Hermite roll-off above it,
    and identity (up to the peak) when the target is as bright as the source."""
    if source_peak <= target_peak:
        return np.minimum(nits, source_peak)
    top = pq_inverse_eotf(source_peak)
    e1 = np.minimum(pq_inverse_eotf(nits) / top, 1)
    max_lum = pq_inverse_eotf(target_peak) / top
    ks = 1.5 * max_lum - 0.5
    t = np.clip((e1 - ks) / (1 - ks), 0, 1)
    t2, t3 = t * t, t * t * t
    rolled = (2 * t3 - 3 * t2 + 1) * ks + (t3 - 2 * t2 + t) * (1 - ks) + (-2 * t3 + 3 * t2) * max_lum
    return pq_eotf(np.where(e1 < ks, e1, rolled) * top)


def hdr_transfer(frame: av.VideoFrame) -> int | None:
    """``PQ`` or ``HLG`` when ``frame`` is tagged with that transfer, else None (SDR)."""
    trc = int(getattr(frame, "color_trc", 0) or 0)
    return trc if trc in HDR_TRANSFERS else None


def wide_gamut_sdr(frame) -> bool:
    """Whether ``frame`` (or a codec context) is SDR in BT.2020 colours: tagged with BT.2020
    primaries and no HDR transfer."""
    primaries = int(getattr(frame, "color_primaries", 0) or 0)
    trc = int(getattr(frame, "color_trc", 0) or 0)
    return primaries == BT2020_PRIMARIES and trc not in HDR_TRANSFERS


def side_data(frame: av.VideoFrame) -> list[Any]:
    """A frame's side data as a list of PyAV ``SideData`` objects (each with ``.type``, readable as
    bytes). Iterating ``frame.side_data`` gives its types in PyAV 18.1 (a mapping from type to side
    data), the side data themselves before it (a mapping in name only: its ``values()`` fails)."""
    container: Any = frame.side_data
    return [entry if hasattr(entry, "type") else container[entry] for entry in container]


def stated_peak(frame: av.VideoFrame) -> float | None:
    """The brightest light an HDR10 frame says it holds, in cd/m2: its content light level
    (MaxCLL) where it states one, else its mastering display's peak; None where it states
    neither (or this PyAV does not show them)."""
    found: dict[str, bytes] = {}
    try:
        for sd in side_data(frame):
            found[str(getattr(sd.type, "name", sd.type))] = bytes(sd)
    except (AttributeError, TypeError, ValueError):
        return None
    cll = found.get("CONTENT_LIGHT_LEVEL", b"")
    if len(cll) >= 4 and 0 < (max_cll := struct.unpack_from("<I", cll)[0]) <= 10000:
        return float(max_cll)
    md = found.get("MASTERING_DISPLAY_METADATA", b"")
    # AVMasteringDisplayMetadata: primaries and white point (8 AVRationals), min and max
    # luminance (AVRationals), has_primaries, has_luminance (ints).
    if len(md) >= 88 and struct.unpack_from("<i", md, 84)[0]:
        num, den = struct.unpack_from("<ii", md, 72)
        if den > 0 and 0 < num / den <= 10000:
            return num / den
    return None


class ToneMapper:
    """``mapper(frame)``: an HLG or PQ frame as SDR RGB uint8; ``WIDE_SDR``: an SDR frame in BT.2020
    colours as BT.709 (module docstring)."""

    def __init__(self, transfer: int, source_peak: float | None = None) -> None:
        """``source_peak``: a PQ source's brightest light in cd/m2 (``stated_peak``; None: 1000,
        as BT.2390 assumes); HLG is always mastered for its nominal 1000 cd/m2 display."""
        if transfer not in HDR_TRANSFERS and transfer != WIDE_SDR:
            raise ValueError(f"not an HDR transfer: {transfer}")
        self.transfer = transfer
        # A stated peak under SDR white is treated as SDR white: such a file needs no roll-off,
        # and a wrong one (metadata does lie) then cannot clip what is brighter than it says.
        self.source_peak = (HLG_DISPLAY_NITS if transfer == HLG or not source_peak
                            else max(float(source_peak), SDR_WHITE_NITS))
        # 2: each channel's 16-bit code -> linear light, linear between 257 knots (one per high
        # byte, as cv2.LUT indexes): within 0.3 % of the curve above 0.06 cd/m2. The luminance
        # table's input is 0..1.
        knots = np.minimum(np.arange(257) * 256.0, 65535)
        if transfer == PQ:
            light = pq_eotf(knots / 65535) / 10000  # display light / 10000 cd/m2
        elif transfer == HLG:
            light = hlg_inverse_oetf(knots / 65535)  # scene light, 0..1
        else:
            light = (knots / 65535) ** 2.4  # BT.1886: SDR display light, white 1.0
        self._base = light[:256].astype(np.float32)[None, :]
        self._slope = ((light[1:] - light[:256]) / np.diff(knots)).astype(np.float32)[None, :]
        self._luma = LUMA_2020.astype(np.float32)[None, :]
        self._to709 = BT2020_TO_BT709.astype(np.float32)
        self._shape: tuple[int, int] | None = None
        self._gain: np.ndarray | None = None
        if transfer == WIDE_SDR:  # already SDR light: no step 3
            return
        # 3: sqrt(luminance) -> the factor that takes that pixel's linear light to SDR display
        # light (1.0 = SDR white); HLG's OOTF is in it.
        y = (np.arange(GAIN_STEPS) / (GAIN_STEPS - 1)) ** 2
        display = 10000 * y if transfer == PQ else HLG_DISPLAY_NITS * y ** HLG_GAMMA
        sdr = bt2390_eetf(display, self.source_peak, SDR_WHITE_NITS) / SDR_WHITE_NITS
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(y > 0, sdr / y, 0)
        if transfer == HLG:  # at y -> 0 the factor tends to Lw * y**(gamma - 1) / 203 -> 0
            gain[0] = 0
        else:
            gain[0] = gain[1]
        self._gain = gain.astype(np.float32)

    def _buffers(self, h: int, w: int) -> None:
        if self._shape == (h, w):
            return
        self._shape = (h, w)
        self._lin = np.empty((h, w, 3), np.float32)
        self._out = np.empty((h, w, 3), np.float32)
        self._gain3 = np.empty((h, w, 3), np.float32)
        self._high = np.empty((h, w * 3), np.uint8)
        self._low = np.empty((h, w * 3), np.float32)
        self._part = np.empty((h, w * 3), np.uint16)
        self._y = np.empty((h, w), np.float32)
        self._yi = np.empty((h, w), np.uint16)
        self._g = np.empty((h, w), np.float32)

    def __call__(self, frame: av.VideoFrame, width: int | None = None, height: int | None = None,
                 interpolation: str | None = None) -> np.ndarray:
        """``frame`` (scaled to ``width`` x ``height`` when given) as SDR RGB uint8."""
        rgb16 = frame.to_ndarray(format="rgb48le", width=width, height=height, interpolation=interpolation,
                                 threads=1)
        h, w = rgb16.shape[:2]
        self._buffers(h, w)
        lin, out, y = self._lin, self._out, self._y
        codes, flat_lin = rgb16.reshape(h, w * 3), lin.reshape(h, w * 3)  # 2: base[high] + slope[high] * low
        np.right_shift(codes, 8, out=self._part)
        np.copyto(self._high, self._part, casting="unsafe")
        np.bitwise_and(codes, 255, out=self._part)
        np.copyto(self._low, self._part, casting="unsafe")
        cv2.LUT(self._high, self._slope, dst=out.reshape(h, w * 3))
        cv2.multiply(out.reshape(h, w * 3), self._low, dst=out.reshape(h, w * 3))
        cv2.LUT(self._high, self._base, dst=flat_lin)
        cv2.add(flat_lin, out.reshape(h, w * 3), dst=flat_lin)
        cv2.transform(lin, self._to709, dst=out)  # 4 (its order with 3 does not matter: 3 is a scale)
        if self._gain is not None:
            cv2.transform(lin, self._luma, dst=y)  # 3: the luminance, as the gain table's index
            cv2.max(y, 0.0, dst=y)
            cv2.sqrt(y, dst=y)
            cv2.multiply(y, float(GAIN_STEPS - 1), dst=y)
            cv2.add(y, 0.5, dst=y)
            np.copyto(self._yi, y, casting="unsafe")
            np.take(self._gain, self._yi, out=self._g, mode="clip")
            cv2.multiply(out, cv2.cvtColor(self._g, cv2.COLOR_GRAY2RGB, dst=self._gain3), dst=out)
        # 5 as one channel (OpenCV applies a bare scalar to a colour image's first channel only):
        # clipped below, then x ** (1 / 2.4) as exp(log(x) / 2.4); convertScaleAbs rounds and
        # saturates at 255, which is the clip above.
        flat = out.reshape(h, w * 3)
        cv2.max(flat, 1e-9, dst=flat)
        cv2.log(flat, dst=flat)
        cv2.multiply(flat, 1 / 2.4, dst=flat)
        cv2.exp(flat, dst=flat)
        return cv2.convertScaleAbs(flat, alpha=255.0).reshape(h, w, 3)


UNSTATED = 2  # AVCOL_SPC_UNSPECIFIED: a frame whose matrix its file does not state
# A coded video's pixel formats (FFmpeg's yuv420p, yuv422p10le..., a hardware decoder's nv12/p010);
# not yuvj* (a JPEG's: BT.601 by JFIF) nor the packed yuyv422 a camera sends (BT.601 by UVC).
_VIDEO_YUV = ("yuv4", "nv12", "p010")


class SdrFrames:
    """``to_rgb(frame)``: any decoded frame as SDR RGB uint8, like ``frame.to_ndarray("rgb24")``
    with the same ``width``/``height``/``interpolation``; a frame tagged HLG or PQ is
    tone-mapped, by a ``ToneMapper`` made at the first one (with that frame's stated peak), and
    an SDR frame in BT.2020 colours converted to BT.709 (``WIDE_SDR``); a frame with transparency
    (a GIF's, an animated PNG's) laid over black (``vbg.images.over_black``). One per reading thread.

    A video frame whose matrix is not stated is read as players read it: BT.709 when it is HD (1280 wide
    or more, or taller than 576: mpv's rule), BT.601 otherwise;
    FFmpeg's converter took BT.601 for all, so an untagged HD clip (many screen recorders and
    encoders write one) lost saturation in its reds and gained it in its greens. Not so for a
    camera's raw YUYV or a JPEG's frame (``yuvj``, ``yuyv422``: BT.601 by their own standards),
    nor for ``hd_guess=False`` (a HEIF photo: its format's default matrix is BT.601)."""

    def __init__(self, hd_guess: bool = True) -> None:
        self.mapper: ToneMapper | None = None
        self._hd_guess = hd_guess

    def __call__(self, frame: av.VideoFrame, width: int | None = None, height: int | None = None,
                 interpolation: str | None = None) -> np.ndarray:
        transfer = hdr_transfer(frame)
        if transfer is None and wide_gamut_sdr(frame):
            transfer = WIDE_SDR
        if transfer is None:
            fmt = frame.format
            if fmt.has_palette or len(fmt.components) in (2, 4):  # transparency (a GIF's, an APNG's)
                from vbg.images import over_black

                return over_black(frame.to_ndarray(format="rgba", width=width, height=height,
                                                   interpolation=interpolation, threads=1))
            hd = (self._hd_guess and frame.colorspace == UNSTATED and (frame.width >= 1280 or frame.height > 576)
                  and fmt.name.startswith(_VIDEO_YUV))
            return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation=interpolation,
                                    threads=1, src_colorspace="ITU709" if hd else None)
        if self.mapper is None or self.mapper.transfer != transfer:
            self.mapper = ToneMapper(transfer, stated_peak(frame) if transfer == PQ else None)
        return self.mapper(frame, width, height, interpolation)
