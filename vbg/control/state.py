"""What control changes hand the render thread, and the control API's operations.

:class:`ControlState` generalises the preview's key policy hand-over
(:class:`vbg.sinks.preview.PreviewKeys`): the whole new
:class:`~vbg.sinks.preview.View` (effect, prepared background, mirror) is made by
whichever thread asks (a server thread, the preview's GUI thread, a signal handler)
under a lock, and the render thread picks up the newest once per frame with
:meth:`ControlState.take`: one integer compared when nothing changed, no lock, no
allocation. A new model comes the same way (:meth:`ControlState.take_model`), loaded
on a thread of its own.

:class:`Controller` is what the server calls: it checks a request, prepares what the
render thread will need at the frame size off the frame path, and hands it over.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ..clock import Clock
from ..compositing.backgrounds import MOVING_PICTURES, OWN_DEMUXERS, played_background
from ..errors import ControlError, VbgError, one_line
from ..models.hub import ALTERNATIVES as LAUNCH_ALTERNATIVES
from ..ranges import BLUR
from ..sinks.preview import View
from .library import BadRequest, Library, encode_jpeg
from .uploads import MAX_UPLOAD, MAX_VIDEO_UPLOAD

if TYPE_CHECKING:
    from ..compositing import Background

PREVIEW_WIDTH = 320
BLUR_LIGHTEST = BLUR.lo
PREVIEW_CACHE_S = 0.2  # a preview encoding is reused this long: a few per second at most
FIRST_FRAME_S = 2.0  # a picked video is swapped in once its first frame is out, or after this long (black till then)


class Busy(ControlError):
    status = 409


@dataclass(frozen=True, slots=True)
class ModelSwap:
    """A model loaded off the frame path, with what the render thread needs for it."""

    name: str
    segmenter: object
    tracker: object  # a MaskTracker at the new model's mask size
    mask_hw: tuple[int, int]


class ControlState:
    """The hand-over to the render thread (see the module docstring)."""

    def __init__(self, background, frame_hw: tuple[int, int], *, mirror: bool = False) -> None:
        self.frame_hw = frame_hw
        self._lock = threading.Lock()
        self._view = View(True, background, bool(mirror))
        self._version = 0
        self._taken = 0  # render thread
        self._model: ModelSwap | None = None

    @property
    def view(self) -> View:
        return self._view

    def update(self, change: Callable[[View], View]) -> View:
        """Apply ``change`` to the newest view, atomically; the render thread takes it on its next frame."""
        with self._lock:
            v = change(self._view)
            self._view = v
            self._version += 1  # after the view: a reader that sees the new number sees the new view
            return v

    def set_effect(self, on: bool) -> View:
        return self.update(lambda v: replace(v, effect=bool(on)))

    def toggle_effect(self) -> View:
        return self.update(lambda v: replace(v, effect=not v.effect))

    def set_mirror(self, on: bool) -> View:
        return self.update(lambda v: replace(v, mirror=bool(on)))

    def set_background(self, background, wait_s: float = FIRST_FRAME_S) -> View:
        """``background`` prepared at the frame size here, on the caller's thread, and swapped in
        once it has a picture to show (a video's first frame, waited for up to ``wait_s``): the
        camera goes on showing the one before meanwhile, not black."""
        background.prepare(self.frame_hw)
        wait = getattr(background, "wait_first_frame", None)
        if wait is not None:
            wait(wait_s)
        return self.update(lambda v: replace(v, background=background))

    def take(self) -> View | None:
        """(render thread) The newest view when it changed since the last call, else None."""
        version = self._version
        if version == self._taken:
            return None
        self._taken = version
        return self._view

    # ------------------------------------------------------------------ model
    def put_model(self, swap: ModelSwap) -> None:
        with self._lock:
            old, self._model = self._model, swap
        if old is not None:
            old.segmenter.close()

    def take_model(self) -> ModelSwap | None:
        """(render thread) A newly loaded model, once."""
        if self._model is None:
            return None
        with self._lock:
            swap, self._model = self._model, None
        return swap

    def close(self) -> None:
        """A model loaded but never taken is closed (call once the render thread stopped)."""
        swap = self.take_model()
        if swap is not None:
            swap.segmenter.close()


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def config_background(background: str | None, color: str | None, blur: float | None) -> dict:
    """What status says of the background the filter's settings made (``id`` "config"): its label,
    and for a colour the colour as ``#rrggbb`` (the page's colour well shows it)."""
    from pathlib import Path

    from ..compositing import ColorBackground

    info = {"id": "config", "label": Path(background).stem if background else color or f"blur {blur or 1.0:g}"}
    if not background and color:
        with contextlib.suppress(VbgError):
            info["color"] = "#{:02x}{:02x}{:02x}".format(*ColorBackground(color).rgb)
    return info


class Controller:
    """The control API's operations (the server's threads call them; each is thread-safe).

    ``status()``: the pipeline's figures (``LivePipeline.control_status``); ``latest()``: the
    newest output image or None; ``load_model(name)``: a :class:`ModelSwap` (runs on a thread
    of its own); ``models``: the names a switch may ask for.
    """

    def __init__(self, state: ControlState, library: Library, *, status: Callable[[], dict],
                 latest: Callable[[], np.ndarray | None], load_model: Callable[[str], ModelSwap] | None = None,
                 models: tuple[str, ...] = (), model: str = "", background_label: str = "configured",
                 clock: Clock | None = None) -> None:
        self.state, self.library = state, library
        self._clock = clock  # a video background's (real time when None)
        self._playing: Background | None = None  # the moving background a request started: closed when replaced
        self._status, self._latest, self._load_model = status, latest, load_model
        self.models = tuple(models)
        self.model = model
        self.model_error: str | None = None
        self.model_notes: dict[str, str] = {}  # name -> "not downloaded yet" (set once known)
        self._loading: threading.Thread | None = None
        self.background = {"id": "config", "label": background_label}
        self._lock = threading.Lock()
        self._preview: tuple[float, bytes] | None = None
        self._preview_lock = threading.Lock()
        self._cpu = (time.monotonic(), time.process_time())
        self._cpu_last: float | None = None
        self.started = time.monotonic()

    # ------------------------------------------------------------------ status
    def cpu_percent(self) -> float | None:
        """The process's CPU use since the last call, % of one core."""
        now, cpu = time.monotonic(), time.process_time()
        with self._lock:
            t0, c0 = self._cpu
            if now - t0 < 0.05:
                return self._cpu_last  # polled twice at once: the last figure
            self._cpu = (now, cpu)
            self._cpu_last = 100.0 * (cpu - c0) / (now - t0)
            return self._cpu_last

    def status(self) -> dict:
        s = dict(self._status())
        v = self.state.view
        s.update({
            "cpu_percent": _num(self.cpu_percent()),
            "uptime_s": time.monotonic() - self.started,
            "effect": v.effect, "mirror": v.mirror,
            "blur": _num(getattr(v.background, "strength", None)),
            "background": dict(self.background),
            "model": self.model, "models": list(self.models), "model_notes": dict(self.model_notes),
            "model_loading": self._loading is not None and self._loading.is_alive(),
            "model_error": self.model_error,
            "backgrounds_version": self.library.version(),
        })
        return s

    # ------------------------------------------------------------------ changes
    def set_effect(self, on) -> dict:
        self.state.set_effect(_bool(on, "effect"))
        return {"ok": True, "effect": self.state.view.effect}

    def set_mirror(self, on) -> dict:
        self.state.set_mirror(_bool(on, "mirror"))
        return {"ok": True, "mirror": self.state.view.mirror}

    def set_background(self, body: dict) -> dict:
        from ..compositing import BlurBackground, ColorBackground, PictureBackground

        keys = [k for k in ("id", "color", "blur") if k in body]
        if len(keys) != 1:
            raise BadRequest('give exactly one of "id", "color" or "blur", e.g. {"color": "green"}')
        key, value = keys[0], body[keys[0]]
        bg: Background
        moving: Background | None = None  # a video or an animated WebP: its thread, its frames
        try:
            if key == "color":
                if not isinstance(value, str):
                    raise BadRequest('"color" is a name or #rrggbb, e.g. "green" or "#00b140"')
                bg = ColorBackground(value)
                # "color": the colour as #rrggbb, whatever name it was given by (the page's colour well shows it)
                info = {"id": f"color:{value}", "label": value, "color": "#{:02x}{:02x}{:02x}".format(*bg.rgb)}
            elif key == "blur":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise BadRequest('"blur" is a strength, a number such as 1.0')
                # 0 .. 0.1 is the lightest blur (a slider's 0 end); else the strength as --blur takes it
                strength = BLUR_LIGHTEST if 0 <= value < BLUR_LIGHTEST else float(value)
                bg, info = BlurBackground(strength), {"id": f"blur:{strength:g}", "label": f"blur {strength:g}"}
            elif (video := self.library.video(value)) is not None:
                bid, label, path = video
                with self._lock:  # an uploaded video is not let go of (its file removed) while it starts
                    was = self.background["id"]
                    self.library.showing(bid)
                try:  # a video, or an animated WebP (played from OpenCV's frames)
                    bg = moving = played_background(path, self._clock, own_file=True)
                    info = {"id": bid, "label": label}
                except BaseException:
                    with self._lock:  # unless another request has put something behind the person since
                        if self.background["id"] == was:
                            self.library.showing(was)
                    raise
            else:
                bid, label, image = self.library.picture(value)
                bg, info = PictureBackground(image), {"id": bid, "label": label}
        except ControlError:
            raise
        except VbgError as e:
            raise BadRequest(str(e).replace("--color", '"color"').replace("--blur strength", '"blur"')) from None
        self.state.set_background(bg)
        if key == "id":
            self.library.used(info["id"])
        with self._lock:
            self.background = info
            self.library.showing(info["id"])
            replaced, self._playing = self._playing, moving
        if replaced is not None:  # its thread and file: a render still under way keeps its last frame
            replaced.close()
        return {"ok": True, "background": dict(info)}

    def close(self) -> None:
        """The video background a request started, if any (after the render thread is joined), and
        the videos uploaded in this run."""
        with self._lock:
            playing, self._playing = self._playing, None
        if playing is not None:
            playing.close()
        self.library.close()

    def upload(self, data: bytes, name: str = "upload") -> dict:
        """A picture sent whole (``Library.add_upload``: a moving one is kept as a video)."""
        try:
            return {"id": self.library.add_upload(data, name)}
        except ControlError:
            raise  # its own status: a busy or full uploads folder (409, 507), bytes that do not play (400)
        except VbgError as e:
            raise BadRequest(str(e)) from None

    def upload_video(self, read, length: int, name: str, suffix: str) -> dict:
        """A video of ``length`` bytes read with ``read``, kept for this run (``Library.add_video_upload``)."""
        return {"id": self.library.add_video_upload(read, length, name, suffix)}

    def backgrounds(self) -> dict:
        items, version = self.library.listing()
        return {"items": items, "version": version, "folder": str(self.library.folder),
                "upload_max": {"picture": MAX_UPLOAD, "video": MAX_VIDEO_UPLOAD},
                "upload_kinds": {"video": [s for s in OWN_DEMUXERS if s not in MOVING_PICTURES.values()],
                                 "moving": list(MOVING_PICTURES.values())}}

    def set_model(self, name) -> dict:
        if self._load_model is None:
            raise BadRequest("this filter cannot switch models (a model given as a test double)")
        if not isinstance(name, str) or name not in self.models:
            raise BadRequest(f"model {name!r} is unknown: use one of {', '.join(self.models)}")
        with self._lock:
            if self._loading is not None and self._loading.is_alive():
                raise Busy("a model is loading: wait until status says model_loading false")
            if name == self.model:
                return {"ok": True, "model": name, "loading": False}
            self.model_error = None
            t = threading.Thread(target=self._load, args=(name,), name="vbg-model-load", daemon=True)
            self._loading = t
            t.start()
        return {"ok": True, "model": name, "loading": True}

    def _load(self, name: str) -> None:
        try:
            swap = self._load_model(name)
        except BaseException as e:  # reported through status; the old model runs on
            text = one_line(e, type(e).__name__)
            # the fixes a start-up error names are flags; a running filter switches with vbg ctl
            text = text.replace(LAUNCH_ALTERNATIVES, "switch to the bundled one: vbg ctl model selfie")
            self.model_error = f"model {name} could not be loaded: {text}"
            return
        self.state.put_model(swap)
        self.model = name

    def wait_model(self, timeout: float) -> bool:
        """(tests, vbg ctl) Until a model load ends; whether it did."""
        t = self._loading
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    # ------------------------------------------------------------------ pictures
    def preview_jpeg(self) -> bytes | None:
        """The newest output, about 320 px wide, as JPEG; re-encoded at most every 0.2 s."""
        with self._preview_lock:
            now = time.monotonic()
            if self._preview is not None and now - self._preview[0] < PREVIEW_CACHE_S:
                return self._preview[1]
            image = self._latest()
            if image is None:
                return None
            jpeg = encode_jpeg(image, PREVIEW_WIDTH, quality=70)
            self._preview = (now, jpeg)
            return jpeg


def _bool(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f'"on" must be true or false, e.g. {{"on": false}} ({what})')
    return value
