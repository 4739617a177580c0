"""``vbg ctl``'s side: find the running filter (its runtime file) and send it one request.

Over the Unix socket where there is one, else HTTP to 127.0.0.1; the token comes from the
runtime file. A file named on the command line is read here, as the user, and its bytes
uploaded: the server never opens a path a client names.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path

from ..errors import ControlError, InputError
from ..streams import printable
from .runtime import find_running

TIMEOUT_S = 15.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Client:
    """Requests to one running filter (``info``: its runtime file's content; default: the
    newest running filter's, :class:`ControlError` when none runs)."""

    def __init__(self, info: dict | None = None, *, timeout: float = TIMEOUT_S, unix: bool = True) -> None:
        self.info = info or find_running()
        self.timeout = timeout
        sock = self.info.get("socket")
        self._unix = sock if unix and sock and hasattr(socket, "AF_UNIX") and os.path.exists(sock) else None

    def _connection(self) -> http.client.HTTPConnection:
        if self._unix:
            return _UnixConnection(self._unix, self.timeout)
        return http.client.HTTPConnection("127.0.0.1", int(self.info["port"]), timeout=self.timeout)

    def request(self, method: str, path: str, body=None,
                content_type: str = "application/json", headers: dict | None = None) -> dict:
        """The JSON answer; :class:`ControlError` with the server's one line for a refusal. ``body``:
        bytes, or a binary file sent as it is read (give its Content-Length in ``headers``)."""
        conn = self._connection()
        hdrs = {"X-Vbg-Token": str(self.info["token"]), **(headers or {})}
        if body is not None:
            hdrs["Content-Type"] = content_type
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise ControlError(f"the vbg filter (pid {self.info.get('pid')}) does not answer ({e}): it may have "
                               f"stopped; its runtime file {self.info.get('file', '')} is stale") from None
        finally:
            conn.close()
        try:
            obj = json.loads(data.decode("utf-8")) if data else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = {}
        if resp.status >= 400:
            raise ControlError(obj.get("error") if isinstance(obj, dict) and obj.get("error")
                               else f"the filter answered {resp.status} {resp.reason}")
        return obj

    def post(self, path: str, obj: dict) -> dict:
        return self.request("POST", path, json.dumps(obj).encode())

    def status(self) -> dict:
        return self.request("GET", "/api/status")

    def page_url(self) -> str:
        """The control page's address with its token, as the filter printed it at start."""
        return f"http://127.0.0.1:{int(self.info['port'])}/?token={self.info['token']}"

    def ticket_url(self) -> str:
        """A one-time address of the page for a browser to open (the token is not in it: a
        browser's command line is every local user's to read); a filter started before vbg had
        tickets (upgraded while it ran) has none to give: its address with the token then."""
        try:
            return str(self.post("/api/ticket", {})["url"])
        except ControlError as e:
            if "no such page or API" not in str(e):
                raise
            return self.page_url()

    def upload_file(self, path: str | Path) -> str:
        """The picture or video at ``path`` (read here, as the user) uploaded; its ``upload:N`` id.
        A video is sent as it is read (the filter keeps it on disk for its run)."""
        from urllib.parse import quote

        from ..compositing.backgrounds import MOVING_PICTURES, OWN_DEMUXERS, PLAYED_KINDS
        from ..media.sequence import VIDEO_FILES
        from .uploads import MAX_UPLOAD, MAX_VIDEO_UPLOAD

        path = Path(os.path.expanduser(str(path)))
        suffix = path.suffix.lower()
        video = suffix in VIDEO_FILES
        if video and suffix not in OWN_DEMUXERS:
            raise InputError(f"{path} is a {suffix.lstrip('.').upper()} video: the filter plays "
                             f"{PLAYED_KINDS} backgrounds: convert it to mp4 first")
        # A GIF or an animated PNG is kept as a video: one too large for a picture is streamed as one.
        moving = suffix in MOVING_PICTURES.values()
        cap = MAX_VIDEO_UPLOAD if video or moving else MAX_UPLOAD
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > cap:
                    what = "video sent to the filter" if video else "moving picture sent to the filter" \
                        if moving else "picture"
                    raise InputError(f"{path} is {size / 2**20:.0f} MB: a background {what} may be at most "
                                     f"{cap >> 20} MB; " + ("put it in the filter's backgrounds folder"
                                                            if video or moving else "scale it down"))
                streamed = video or size > MAX_UPLOAD
                headers = {"X-Vbg-Name": quote(path.name[:80])}
                if streamed:
                    headers["Content-Length"] = str(size)
                ans = self.request("POST", "/api/upload", f if streamed else f.read(), "application/octet-stream",
                                   headers)
        except OSError as e:
            raise InputError(f"background {path} cannot be read ({e.strerror or e}): check the path") from None
        return ans["id"]


def format_status(s: dict) -> str:
    """The status as one line, like the live filter's own."""
    def ms(d):
        return "-" if not d or d.get("p50") is None else f"{d['p50']:.0f}/{d['p95']:.0f} ms"

    fps = "-" if s.get("fps") is None else f"{s['fps']:.1f}"
    cpu = "-" if s.get("cpu_percent") is None else f"{s['cpu_percent']:.0f}%"
    bg = (s.get("background") or {}).get("label", "?")
    parts = [f"out {fps} fps", f"latency {ms(s.get('latency_ms'))}", f"mask age {ms(s.get('mask_age_ms'))}",
             f"model {s.get('model')} {ms(s.get('infer_ms'))}", f"cpu {cpu}",
             f"effect {'on' if s.get('effect') else 'off'}", f"mirror {'on' if s.get('mirror') else 'off'}",
             f"background {bg}", f"{s.get('frames', 0)} frames"]
    if s.get("model_loading"):
        parts.append("loading a model")
    if s.get("model_error"):
        parts.append(s["model_error"])
    if s.get("camera_lost"):
        parts.append("camera lost")
    return printable(" | ".join(parts))  # a background's file name may hold a newline or an escape code
