"""Opening media with PyAV: local files, and network URLs (http, rtsp, tcp, ...).

In: a path or URL, and an optional ``cancel`` event. Out: ``open_media``
returns an open PyAV input container (the caller owns and closes it); a local
name that is no regular file (a FIFO, a folder, a device) is ``NotAFileError``,
never opened; a URL gets FFmpeg's time-outs (``timeout_s()``,
``VBG_NETWORK_TIMEOUT``, default 20 s: a silent server is ``TimeoutError``).
``picture_stream`` picks the first video stream that is a moving picture (not
cover art). Thread: a URL is opened on a helper thread while the caller waits
in short steps, so Ctrl-C, a signal or ``cancel`` end the wait
(``KeyboardInterrupt``); :class:`NetworkFrames` decodes a stream on a helper
thread that owns the container.

Why (FIFOs, FFmpeg's time-outs, helper threads): docs/design/media-input.md.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

from vbg.errors import ConfigError, one_line

TIMEOUT_ENV = "VBG_NETWORK_TIMEOUT"
DEFAULT_TIMEOUT_S = 20.0
_WAIT_STEP_S = 0.05


def is_url(name: str | Path) -> bool:
    """A network URL (``scheme://...``), not a local path (``file:`` counts as local)."""
    text = str(name)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum() and scheme.lower() != "file" and not isinstance(name, Path)


def http_refusal(url: str | Path, e: BaseException) -> str | None:
    """The server's refusal of ``url`` in one line with its fix (HTTP 401/403, 404, another 4xx,
    5xx), or None when ``e`` is no HTTP answer. A wrong address or a server's failure is not
    a damaged file."""
    import av.error as averr

    if not is_url(url) or not isinstance(e, (averr.HTTPError, averr.HTTPClientError)):  # two families in PyAV
        return None
    if isinstance(e, (averr.HTTPUnauthorizedError, averr.HTTPForbiddenError)):
        return (f"{url}: the server refused it ({one_line(e)}): check the URL, and the user and password "
                "it needs (http://USER:PASSWORD@host/...)")
    if isinstance(e, averr.HTTPNotFoundError):
        return f"{url}: the server has no such file ({one_line(e)}): check the URL"
    if isinstance(e, averr.HTTPServerError):
        return f"{url}: the server failed ({one_line(e)}): try again later, or check the URL"
    return f"{url}: the server refused the request ({one_line(e)}): check the URL"


def local_path(name: str) -> str:
    """A ``file://`` URL as the path it names (``file:///tmp/a%20b.mp4`` -> ``/tmp/a b.mp4``, on
    this computer only); anything else as it is."""
    if not name.lower().startswith("file://"):
        return name
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(name)
    if parts.netloc not in ("", "localhost"):
        return name  # another host's file: not ours to read
    return unquote(parts.path)


def timeout_s() -> float:
    """Seconds without data before a network source is given up (``VBG_NETWORK_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is not a time-out: give seconds, e.g. 20")
    return value


def network_options(url: str) -> dict[str, str]:
    """FFmpeg options that bound every wait on ``url`` (microseconds)."""
    us = str(int(timeout_s() * 1_000_000))
    opts = {"rw_timeout": us}
    if url.lower().startswith(("rtsp://", "rtsps://")):
        opts["timeout"] = us
    return opts


def timed_out(e: BaseException) -> bool:
    """Whether an error of ``open_media`` or of a read is a network time-out."""
    return isinstance(e, TimeoutError)


def no_reply(url) -> str:
    """What to say when opening ``url`` timed out (``timed_out``), and the two fixes."""
    return (f"{url}: the server sent nothing for {timeout_s():g} s: check the URL, "
            f"or allow longer with {TIMEOUT_ENV}=SECONDS")


def special_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file ("a FIFO (named pipe)",
    "a folder", ...); None for a regular file or a missing one."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


class NotAFileError(OSError):
    """A local media name that exists but is not a regular file (``str``: what it is)."""


ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}


def alpha_decoder(stream, threads: int | None = None):
    """A decoder of its own for a VP8/VP9 ``stream`` that carries transparency (WebM's AlphaMode):
    libvpx, which keeps the alpha; FFmpeg's own decoder drops it, and the colour stored under the
    transparent parts showed (a transparent WebM's magenta where every other kind with
    transparency is laid over black). None for any other stream, or an FFmpeg without libvpx
    (the picture without its alpha, as before)."""
    import av

    name = ALPHA_DECODERS.get(stream.codec_context.name)
    if name is None or stream.metadata.get("alpha_mode") != "1":
        return None
    try:
        codec = av.CodecContext.create(name, "r")
    except (av.FFmpegError, ValueError):
        return None
    if threads is not None:
        codec.thread_count = threads
    return codec


def picture_stream(container):
    """The first video stream that is not an attached picture (an mp3's or m4a's cover
    art is a one-frame 'video' stream); None when there is none."""
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


METADATA_ERRORS = "replace"  # a title or tag that is not UTF-8 (an old camera's Latin-1, a damaged file)
# reads with U+FFFD where its bytes make no sense: PyAV's default raised UnicodeDecodeError on opening


def open_read(name, **kwargs):
    """``av.open(name)`` for reading a file (or a file object) vbg did not write, its metadata read
    leniently (``METADATA_ERRORS``). ``open_media`` for a name a user gave."""
    import av

    return av.open(name if not isinstance(name, Path) else str(name), "r", metadata_errors=METADATA_ERRORS, **kwargs)


def open_media(name: str | Path, cancel: threading.Event | None = None):
    """``av.open(name)``; for a URL with time-outs, interruptible by a signal or ``cancel``.

    Raises ``NotAFileError`` for a local name that is a FIFO, a folder, a device
    (never opened: a FIFO would block), else what ``av.open`` raises (``TimeoutError`` when a URL's server was
    silent for the time-out: RTSP reports that as invalid data, so an error
    that comes after the whole time-out counts as one); ``KeyboardInterrupt``
    when ``cancel`` is set (or a signal handler raised it) before a URL was opened."""
    import av

    if not is_url(name):
        what = special_file(name)
        if what is not None:
            raise NotAFileError(f"{name} is {what}, not a file")
        return open_read(str(name))
    url = str(name)
    options = network_options(url)
    lock = threading.Lock()
    box: dict = {}
    done = threading.Event()

    limit = timeout_s()

    def run() -> None:
        start = time.monotonic()
        try:
            container = open_read(url, options=options)
        except BaseException as e:  # handed to the waiting caller
            if isinstance(e, av.FFmpegError) and not isinstance(e, TimeoutError) \
                    and time.monotonic() - start >= limit:
                e = TimeoutError(f"no answer for {limit:g} s ({e})")
            box["error"] = e
        else:
            with lock:
                if box.get("abandoned"):
                    container.close()
                else:
                    box["container"] = container
        finally:
            done.set()

    threading.Thread(target=run, name="vbg-net-open", daemon=True).start()
    try:
        while not done.wait(_WAIT_STEP_S):
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
    except BaseException:
        with lock:
            box["abandoned"] = True
            container = box.pop("container", None)
        if container is not None:
            container.close()
        raise
    if "error" in box:
        raise box["error"]
    return box["container"]


class NetworkFrames:
    """The decoded frames of a network ``container``, decoded on a helper thread so that
    the reader can stop waiting (``cancel`` set, a signal in the main thread) while FFmpeg
    is blocked on a server that went silent mid-stream.

    The helper owns the container: it closes it when it ends, also when the reader gave up
    (``abandon``) while it was still blocked (closing it under FFmpeg's feet would crash)."""

    _DEPTH = 4

    def __init__(self, container, stream, cancel: threading.Event | None) -> None:
        import queue

        self._queue: queue.Queue = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._cancel = cancel
        self._container, self._stream = container, stream
        threading.Thread(target=self._pump, name="vbg-net-read", daemon=True).start()

    def _offer(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_WAIT_STEP_S)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            try:
                for frame in self._container.decode(self._stream):
                    if not self._offer(("frame", frame)):
                        return
            except BaseException as e:  # handed to the reader
                self._offer(("error", e))
            else:
                self._offer(("end", None))
        finally:
            self._container.close()

    def __iter__(self):
        return self

    def __next__(self):
        """The next frame; StopIteration at the end or once ``cancel`` is set; a decoding error is raised."""
        import queue

        while True:
            if self._cancel is not None and self._cancel.is_set():
                self.abandon()
                raise StopIteration
            try:
                kind, value = self._queue.get(timeout=_WAIT_STEP_S)
            except queue.Empty:
                continue
            if kind == "frame":
                return value
            self.abandon()
            if kind == "error":
                raise value
            raise StopIteration

    def abandon(self) -> None:
        """Stop reading; the helper closes the container as soon as FFmpeg lets it go."""
        self._stop.set()
