"""A preview window (OpenCV HighGUI) with a few keys.

In: :meth:`PreviewWindow.send` with RGB uint8 composites; :meth:`PreviewWindow.poll`.
Out: the picture in a window (at most one image per call) and the keyboard,
polled for 1 ms per call: keys become :class:`Action` values handed to the
``on_action`` callback and returned. Thread: the window lives on the thread
that creates it (GUI toolkits want the main thread): call ``send`` / ``poll``
from there, never from a worker thread.

What each key does to the live picture is :class:`PreviewKeys`'s (the key
policy): it turns actions into a new :class:`View` on the GUI thread and hands
it to the render thread through a small queue, which the render thread drains
once per frame. Nothing else about the picture crosses the two threads.

opencv-python opens windows through a bundled Qt with only the X11 (xcb)
platform plugin, and without a reachable display it *aborts the process*
(SIGABRT) instead of raising. So nothing here touches the GUI before
:func:`display_available` said yes, and :class:`PreviewWindow` refuses to be
built otherwise.
"""

from __future__ import annotations

import enum
import os
import platform
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vbg.errors import SinkError
from vbg.sinks import SinkBase, SinkStats, check_geometry, check_image
from vbg.types import Composite

NO_DISPLAY = "no display: drop --preview or run under a desktop session / xvfb-run"


class Action(enum.Enum):
    QUIT = "quit"
    NEXT_BACKGROUND = "next background"
    TOGGLE_EFFECT = "toggle effect"
    BLUR_UP = "blur +"
    BLUR_DOWN = "blur -"


KEYS: dict[str, Action] = {
    "q": Action.QUIT, "\x1b": Action.QUIT,
    "b": Action.NEXT_BACKGROUND,
    " ": Action.TOGGLE_EFFECT,
    "+": Action.BLUR_UP, "=": Action.BLUR_UP,  # '=' is '+' without shift
    "-": Action.BLUR_DOWN, "_": Action.BLUR_DOWN,
}


def action_for_key(key: int) -> Action | None:
    """Map a ``cv2.waitKey`` result (-1: no key) to an action."""
    if key < 0:
        return None
    return KEYS.get(chr(key & 0xFF).lower())


BLUR_STEP, BLUR_RANGE = 0.5, (0.5, 5.0)  # what + and - do to the preview's blur
GREEN = (0, 177, 64)  # the third background of the b key's cycle


@dataclass(frozen=True, slots=True)
class View:
    """What the live picture shows, as the preview's keys set it."""

    effect: bool  # False: the camera as it is, no background (the space bar)
    background: object  # the prepared Background the person is composited over
    mirror: bool = False  # the compositor's selfie view (the control server's switch)


class PreviewKeys:
    """The preview's key policy: what each :class:`Action` does to the live picture.

    ``b`` cycles through ``background`` (the one configured), a blur and green;
    ``+`` / ``-`` blur the room more or less (0.5..5, in steps of 0.5); the space
    bar turns the effect off and on; ``q``, Esc or closing the window calls
    ``on_quit``. Called with each action on the GUI thread (pass it as
    :class:`PreviewWindow`'s ``on_action``); a new background is prepared there
    at ``frame_hw``, off the render thread.

    Each change is the whole new :class:`View`, appended to a small queue that
    the render thread drains once per frame with :meth:`take`; a full queue
    drops its oldest view, which the newer ones replace anyway. Every background
    made here is closed by :meth:`close`: call it once the render thread has
    stopped (the configured one stays its owner's).
    """

    QUEUE = 8

    def __init__(self, background, frame_hw: tuple[int, int], *, on_quit: Callable[[], None] | None = None,
                 target=None) -> None:
        from vbg.compositing import BlurBackground, ColorBackground

        self._target = target  # e.g. vbg.control.ControlState: its update(change) and take() instead of ours
        self._hw = frame_hw
        self._on_quit = on_quit
        self._made: list = [BlurBackground(1.0), ColorBackground(GREEN)]
        self._cycle = [background, *self._made]
        self._i = 0
        self._blur = 1.0
        self.view = View(True, background)  # the newest view (GUI thread)
        self._views: deque[View] = deque(maxlen=self.QUEUE)

    def __call__(self, action: Action) -> None:
        from dataclasses import replace

        if action is Action.QUIT:
            if self._on_quit is not None:
                self._on_quit()
            return
        if action is Action.TOGGLE_EFFECT:
            self._update(lambda v: replace(v, effect=not v.effect))
        elif action is Action.NEXT_BACKGROUND:
            self._i = (self._i + 1) % len(self._cycle)
            bg = self._prepared(self._cycle[self._i])
            self._update(lambda v: replace(v, background=bg))
        elif action in (Action.BLUR_UP, Action.BLUR_DOWN):
            from vbg.compositing import BlurBackground

            step = BLUR_STEP if action is Action.BLUR_UP else -BLUR_STEP
            self._blur = min(BLUR_RANGE[1], max(BLUR_RANGE[0], self._blur + step))
            bg = BlurBackground(self._blur)
            self._made.append(bg)
            bg = self._prepared(bg)
            self._update(lambda v: replace(v, background=bg))

    def _update(self, change) -> None:
        if self._target is not None:
            self._target.update(change)
            return
        v = change(self.view)
        self.view = v
        self._views.append(v)

    def _prepared(self, bg):
        bg.prepare(self._hw)  # a no-op for one prepared before at this size
        return bg

    def take(self) -> View | None:
        """(render thread) The newest view handed over since the last call; None when there
        is none (an empty queue is checked without allocating)."""
        if self._target is not None:
            return self._target.take()
        v = None
        while self._views:  # the one reader: a queue seen non-empty stays so until it pops
            v = self._views.popleft()
        return v

    def close(self) -> None:
        for bg in self._made:
            bg.close()


def display_available(environ: Mapping[str, str] | None = None, system: str | None = None) -> bool:
    """Whether an OpenCV window can open without aborting the process.

    Windows and macOS: always. Elsewhere: an X display that accepts a
    connection (``DISPLAY``), or ``WAYLAND_DISPLAY`` when OpenCV's GUI can
    speak Wayland (the opencv-python wheels' Qt cannot: they need XWayland).
    """
    system = system or platform.system()
    if system in ("Windows", "Darwin"):
        return True
    env = os.environ if environ is None else environ
    if env.get("DISPLAY"):
        return _x_display_reachable(env["DISPLAY"])
    if env.get("WAYLAND_DISPLAY"):
        return _gui_speaks_wayland()
    return False


def _x_display_reachable(display: str, timeout: float = 0.5) -> bool:
    host, sep, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not sep:  # no display number at all ("bogus"): Qt aborts the process on it (SIGABRT)
        return False
    if not number.isdigit():
        return True  # a form we do not know (e.g. a socket path): let the GUI try
    try:
        if host in ("", "unix"):
            path = f"/tmp/.X11-unix/X{number}"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                try:
                    s.connect(path)
                except OSError:
                    if not sys.platform.startswith("linux"):  # abstract sockets are Linux-only
                        raise
                    s.connect("\0" + path)
            return True
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return True
    except OSError:
        return False


def _gui_speaks_wayland() -> bool:
    import cv2

    plugins = Path(cv2.__file__).parent / "qt" / "plugins" / "platforms"
    if not plugins.is_dir():
        return True  # not the wheel's bundled Qt (e.g. a distribution's GTK build)
    return any("wayland" in p.name for p in plugins.iterdir())


class PreviewWindow(SinkBase):
    """Show composites in a window; keys go to ``on_action``.

    Raises :class:`SinkError` (one line) when there is no display.
    """

    def __init__(self, width: int, height: int, fps: float | None = None, *, title: str = "vbg",
                 on_action: Callable[[Action], None] | None = None) -> None:
        super().__init__()
        if not display_available():
            raise SinkError(NO_DISPLAY)
        import cv2

        self._cv2 = cv2
        width, height, _ = check_geometry("preview", width, height, fps or 30.0)
        self.width, self.height, self.title = width, height, title
        self._on_action = on_action
        self._owner = threading.get_ident()
        self._bgr = np.empty((height, width, 3), np.uint8)
        self._shown = self._received = 0
        self._closed = False
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        cv2.resizeWindow(title, width, height)

    def send(self, composite: Composite) -> Action | None:
        """Show the composite, poll the keys once; returns the action, if any."""
        self._own()
        check_image(composite.image, self.width, self.height)
        self._received += 1
        self._cv2.cvtColor(composite.image, self._cv2.COLOR_RGB2BGR, dst=self._bgr)
        self._cv2.imshow(self.title, self._bgr)
        self._shown += 1
        return self.poll()

    def poll(self) -> Action | None:
        """Let the window process events for 1 ms and handle one key.
        A window closed by the user counts as :attr:`Action.QUIT`."""
        self._own()
        cv2 = self._cv2
        action = action_for_key(cv2.waitKey(1))
        if action is None and self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            action = Action.QUIT
        if action is not None and self._on_action is not None:
            self._on_action(action)
        return action

    def stats(self) -> SinkStats:
        return SinkStats(received=self._received, written=self._shown)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)  # lets the toolkit actually take the window down
        except self._cv2.error:
            pass  # already closed by the user

    def _own(self) -> None:
        if self._closed:
            raise ValueError("PreviewWindow is closed")
        if threading.get_ident() != self._owner:
            raise RuntimeError("PreviewWindow must be used from the thread that created it (the GUI thread)")
