"""The control server: HTTP on 127.0.0.1 (random free port) and, where the OS has them, a
Unix socket (0600, in the private runtime folder), both speaking the same small JSON API
(docs/control-api.md) to a :class:`~vbg.control.state.Controller`.

Safe by default (issue 16):

- bound to the loopback address only; the Unix socket and the runtime file are the user's
  alone (0600 in a 0700 folder);
- every request carries the per-run token (``X-Vbg-Token`` header or ``?token=``), compared
  in constant time; else 403. A browser vbg opens (``--ui``, ``vbg ctl page``) gets a one-time
  ticket instead (``?ticket=``, good once and for ``TICKET_S``), which the server answers with a
  redirect to the page's address: the token is never on a command line, which every local user
  can read (``/proc/PID/cmdline``);
- over TCP (Linux), a connection from another local user is closed unanswered, before anything
  is read (``peer_uid``: the owner of the client's end, asked of the kernel);
- over TCP, the ``Host`` header must name the loopback address and this port (a DNS-rebinding
  page reaches 127.0.0.1 under its own name: refused), and an ``Origin`` header, when sent,
  must be this server's own (a cross-site page: refused);
- a background is named by an id from the allowed sets (:mod:`vbg.control.library`), never by
  a path; static files are looked up in the page folder's listing.

Reliability: a bounded number of handler threads (more connections wait in the kernel's
backlog), a time-out on every socket read and write (a client that stalls is dropped),
capped bodies (413 before reading), one JSON error line for every refusal; no handler
exception leaves the server thread, and the render thread never waits for it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..compositing.backgrounds import MOVING_PICTURES, OWN_DEMUXERS, PLAYED_KINDS
from ..errors import ControlError, VbgError
from ..media.sequence import VIDEO_FILES
from .runtime import runtime_dir, write_runtime
from .uploads import MAX_UPLOAD, MAX_VIDEO_UPLOAD, UploadRefused

log = logging.getLogger("vbg.control")

PAGE_DIR = Path(__file__).resolve().parent / "page"
MAX_JSON = 64 * 1024
SOCKET_TIMEOUT_S = 10.0
MAX_THREADS = 16
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".ico": "image/x-icon", ".json": "application/json"}
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,100}")
# The kind of an uploaded video, from its Content-Type where its name has no suffix that says it
VIDEO_TYPES = {"video/mp4": ".mp4", "video/x-m4v": ".m4v", "video/quicktime": ".mov", "video/webm": ".webm",
               "video/x-matroska": ".mkv", "video/matroska": ".mkv", "video/x-msvideo": ".avi",
               "video/avi": ".avi", "video/msvideo": ".avi"}


MOVING_TYPES = {f"image/{kind.lower()}": suffix for kind, suffix in MOVING_PICTURES.items()}  # image/gif...


def video_suffix(name: str, ctype: str) -> str | None:
    """The kind (a key of ``OWN_DEMUXERS``) of an upload named ``name`` sent as ``ctype``, when it
    is a video the filter plays; None otherwise: a picture, a moving one included (``moving_suffix``)."""
    suffix = Path(name).suffix.lower()
    if (suffix in OWN_DEMUXERS and suffix not in MOVING_TYPES.values()
            and (ctype.startswith("video/") or ctype in ("application/octet-stream", ""))):
        return suffix
    return VIDEO_TYPES.get(ctype)


def moving_suffix(name: str, ctype: str) -> str | None:
    """The kind (".gif", ".apng") of an upload that says it is a moving picture, by its name or
    else its Content-Type; None otherwise. One that fits a picture upload is sent whole and told by
    its bytes (``Library.add_upload``: a GIF, an animated PNG is kept as a video); a larger one is
    streamed to disk as a video of this kind, as a video upload is, and refused there if its bytes
    are not one."""
    suffix = Path(name).suffix.lower()
    if suffix in MOVING_TYPES.values() and (ctype.startswith("image/") or ctype in ("application/octet-stream", "")):
        return suffix
    return MOVING_TYPES.get(ctype)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _NoToken(_Refused):
    """A request without the run's token (a browser opening the page's address without it gets a
    page that says so: ``NO_TOKEN_PAGE``, or ``USED_TICKET_PAGE`` for a ticket spent or too old)."""

    def __init__(self, status: int, message: str, page: bytes | None = None) -> None:
        super().__init__(status, message)
        self.page = page


# What a browser that opens the page's address without its token is shown (status 403): the page's
# colours, no script, nothing fetched but the icon.
_NO_TOKEN_STYLE = (
    "html,body{margin:0;background:#16171a;color:#e6e8eb;"
    "font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}"
    "main{max-width:36em;margin:12vh auto;padding:0 16px}"
    "h1{font-size:20px;font-weight:650;margin:0 0 12px}h1 span{color:#9aa0a8;font-weight:400}"
    "p{margin:0 0 12px;overflow-wrap:anywhere}code{background:#2a2d32;border-radius:4px;padding:1px 5px}"
    ".error{padding:8px 12px;border:1px solid #8c4045;border-radius:6px;background:#35211f;color:#ffd0d0}")
def _no_token_page(title: str, why: str) -> bytes:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vbg control: {title}</title>
<link rel="icon" href="/favicon.ico" type="image/svg+xml">
<style>{_NO_TOKEN_STYLE}</style></head>
<body><main>
<h1>vbg <span>control</span></h1>
<p class="error">{why}</p>
<p>Open that address, or run <code>vbg ctl page</code>: it prints the page's address and opens it.</p>
</main></body></html>
""".encode()


NO_TOKEN_PAGE = _no_token_page(
    "the link lacks its token or holds an old one",
    """This link lacks its token, or holds an earlier run's (a bookmark, say): the
control page opens only with the address vbg printed when it started this time (it ends in
<code>?token=&hellip;</code>; each run has a token of its own).""")
# A ticket's address (what vbg hands a browser) opened a second time, or after TICKET_S: history,
# a restored session, a copy of it.
USED_TICKET_PAGE = _no_token_page(
    "this link was for one visit",
    """This link was for one visit: it opens the control page once, within two minutes of vbg
handing it to the browser (it ends in <code>?ticket=&hellip;</code>), and it has been used or is
older. The page's lasting address is the one vbg printed when it started (it ends in
<code>?token=&hellip;</code>).""")
_NO_TOKEN_CSP = ("default-src 'none'; img-src 'self'; style-src 'sha256-"
                 + base64.b64encode(hashlib.sha256(_NO_TOKEN_STYLE.encode()).digest()).decode()
                 + "'; frame-ancestors 'none'")
ICON = b"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1f2125"/><rect x="3" y="3" width="26" height="26" rx="5" fill="#5aa9ff"/><circle cx="16" cy="13" r="5" fill="#16171a"/><path d="M7 29c0-6 4-9 9-9s9 3 9 9z" fill="#16171a"/></svg>"""
PAGE_PATHS = ("/", "/index.html")
# A thumbnail asked for with its file's version: the browser may keep it this long. Its address
# holds this run's token, so nothing kept is reused by a later run: half a day covers a run, and a
# private photo removed from the folder does not stay for weeks in the browser's disk cache.
THUMB_KEPT_S = 12 * 3600
ICON_KEPT_S = 30 * 24 * 3600  # the icon: the same in every run, nothing private
# A ticket (the one-time address vbg hands a browser) is good once, for this long: a browser that
# is not running yet takes seconds to start (a snap's first start: tens of seconds).
TICKET_S = 120.0
MAX_TICKETS = 16  # outstanding at once (more: the oldest are dropped)


class _Handler(BaseHTTPRequestHandler):
    server_version = "vbg-control"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: nothing held between requests
    timeout = SOCKET_TIMEOUT_S  # every read and write on the socket (StreamRequestHandler.setup)

    # -------------------------------------------------------------- plumbing
    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("control: " + format, *args)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, OSError) as e:  # a client gone or stalled: its loss
            log.debug("control: client dropped (%s)", e)

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None,
              cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def send_error(self, code, message=None, explain=None) -> None:
        """http.server's own refusals (a malformed request line, headers too long) as JSON too."""
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # even to a request line it could not parse: a status line
        with contextlib.suppress(OSError):
            self._json(code, {"error": f"{message or 'bad request'}: send a well-formed HTTP request"})

    # -------------------------------------------------------------- checks
    def _check(self, query: dict) -> None:
        self._check_site()
        token = self.headers.get("X-Vbg-Token") or (query.get("token") or [""])[0]
        if not token or not hmac.compare_digest(token.encode(), self.server.token.encode()):
            raise _NoToken(403, "missing or wrong token: use the URL vbg printed at start "
                                "(control: http://127.0.0.1:PORT/?token=...), vbg ctl page to open it, or vbg ctl")

    def _check_site(self) -> None:
        """Over TCP: the Host and the Origin are this server's own."""
        srv = self.server
        if srv.tcp:
            host = self.headers.get("Host", "")
            if host not in srv.hosts:
                raise _Refused(403, f"Host {host!r} is not this machine's loopback address: open "
                                    f"http://127.0.0.1:{srv.port}/ (DNS rebinding refused)")
            origin = self.headers.get("Origin")
            if origin is not None and origin not in srv.origins:
                raise _Refused(403, f"Origin {origin!r} is another site: only the control page itself may "
                                    "send requests (cross-site requests refused)")

    def _bounded(self) -> Any:
        """The server, a _Bounded one: its token and tickets set by _setup_bounded."""
        return self.server

    def _tickets(self) -> Tickets:
        return self._bounded().tickets

    def _redeem(self, query: dict) -> None:
        """``GET /?ticket=T`` (a browser vbg opened): a ticket good now is spent and answered with
        a redirect to the page's address with the token; any other: the page saying so."""
        self._check_site()
        ticket = (query.get("ticket") or [""])[0]
        if not self._tickets().redeem(ticket):
            raise _NoToken(403, "this ticket was used or is older than two minutes: run vbg ctl page "
                                "for a new one", page=USED_TICKET_PAGE)
        self._send(303, b"", "text/plain", {"Location": f"/?token={self._bounded().token}"})

    def _own_browser(self) -> bool:
        """Whether a request without the token may get the icon or the page saying the token is
        missing: not when another site asks for it (``Sec-Fetch-Site`` cross-site or same-site,
        e.g. ``<img src=http://127.0.0.1:PORT/favicon.ico>``, whose onload would tell it that vbg
        runs, and on which port); a browser's own (typed address, bookmark: ``none``), the page's
        own (``same-origin``) or a client that sends no such header may."""
        return self.headers.get("Sec-Fetch-Site", "none").strip().lower() in ("none", "same-origin")

    def _length(self, cap: int, too_big: Callable[[int], str] | None = None) -> int:
        """The body's Content-Length, refused (413, the body unread) above ``cap``; ``too_big(n)``
        says what to do then (else how many bytes are accepted)."""
        length = self.headers.get("Content-Length")
        if length is None:
            raise _Refused(411, "a request body needs a Content-Length header")
        try:
            n = int(length)
        except ValueError:
            raise _Refused(400, f"Content-Length {length!r} is not a number") from None
        if n < 0:
            raise _Refused(400, f"Content-Length {n} is negative")
        if n > cap:
            self.close_connection = True
            raise _Refused(413, too_big(n) if too_big else f"the body is {n} bytes: at most {cap} are accepted here")
        return n

    def _body(self, cap: int) -> bytes:
        n = self._length(cap)
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("the client sent less than its Content-Length")
        return data

    def _json_body(self) -> dict:
        data = self._body(MAX_JSON)
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _Refused(400, f"the body is not JSON ({e}): send e.g. {{\"on\": true}}") from None
        if not isinstance(obj, dict):
            raise _Refused(400, "the body must be a JSON object, e.g. {\"on\": true}")
        return obj

    # -------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = ""
        try:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            # An id's name that is not UTF-8 (a folder's file) is quoted byte for byte
            # (``Library._item``): unquoted back to the same surrogates, as os.listdir has it.
            path = unquote(parts.path, errors="surrogateescape")
            if (method == "GET" and path in PAGE_PATHS and "ticket" in query and "token" not in query
                    and "X-Vbg-Token" not in self.headers):
                return self._redeem(query)
            try:
                self._check(query)
            except _NoToken:
                if method == "GET" and path == "/favicon.ico" and self._own_browser():
                    return self._icon()  # the browser's own request, never with the token
                raise
            self._route(method, path, query)
        except _NoToken as e:
            if method == "GET" and path in PAGE_PATHS and self._own_browser():
                # a browser opening the page (typed, a bookmark): a page saying so
                self._send(e.status, e.page or NO_TOKEN_PAGE, TYPES[".html"],
                           {"Content-Security-Policy": _NO_TOKEN_CSP, "X-Frame-Options": "DENY"})
            else:
                self._json(e.status, {"error": str(e)})
        except _Refused as e:
            self._json(e.status, {"error": str(e)})
        except ControlError as e:
            self._json(getattr(e, "status", 400), {"error": str(e)})
        except VbgError as e:
            self._json(400, {"error": str(e)})
        except (ConnectionError, TimeoutError):
            raise  # the client went away: nothing to answer
        except Exception as e:  # never out of the server thread
            log.debug("control: %s %s failed", method, self.path, exc_info=True)
            with contextlib.suppress(OSError):
                self._json(500, {"error": f"internal error ({type(e).__name__}: {e}): run vbg with -v and "
                                          "report it"})

    def _icon(self) -> None:
        self._send(200, ICON, TYPES[".svg"], cache=f"max-age={ICON_KEPT_S}")

    def _route(self, method: str, path: str, query: dict) -> None:
        ctl = self.server.controller
        if method == "GET":
            if path in PAGE_PATHS:
                return self._static("index.html")
            if path == "/favicon.ico":
                return self._icon()
            if path.startswith("/static/"):
                return self._static(path[len("/static/"):])
            if path == "/api/status":
                return self._json(200, ctl.status())
            if path == "/api/backgrounds":
                return self._json(200, ctl.backgrounds())
            if path.startswith("/api/thumb/"):
                jpeg, version = ctl.library.versioned_thumb(path[len("/api/thumb/"):])
                # asked for as listed (its file's version named): the same address is the same picture
                kept = (query.get("v") or [""])[0] == version
                return self._send(200, jpeg, "image/jpeg",
                                  cache=f"private, max-age={THUMB_KEPT_S}, immutable" if kept else "no-store")
            if path == "/api/preview.jpg":
                jpeg = ctl.preview_jpeg()
                if jpeg is None:
                    raise _Refused(404, "no frame yet: try again in a moment")
                return self._send(200, jpeg, "image/jpeg")
        elif method == "POST":
            if path == "/api/upload":
                return self._upload(ctl)
            if path == "/api/ticket":
                self._json_body()  # read (an answer before the body is read can break the sender's pipe)
                return self._json(200, {"url": self._tickets().url()})
            actions = {"/api/background": lambda b: ctl.set_background(b),
                       "/api/effect": lambda b: ctl.set_effect(b.get("on")),
                       "/api/mirror": lambda b: ctl.set_mirror(b.get("on")),
                       "/api/model": lambda b: ctl.set_model(b.get("name"))}
            if path in actions:
                return self._json(200, actions[path](self._json_body()))
        known = ("/", "/index.html", "/favicon.ico", "/api/status", "/api/backgrounds", "/api/preview.jpg", "/api/background", "/api/effect",
                 "/api/mirror", "/api/model", "/api/upload", "/api/ticket")
        if path in known or path.startswith(("/static/", "/api/thumb/")):
            raise _Refused(405, f"{method} {path} is not allowed: see docs/control-api.md")
        raise _Refused(404, f"{path}: no such page or API: see docs/control-api.md")

    def _upload(self, ctl) -> None:
        """POST /api/upload: a picture (read whole, decoded, kept in memory) or a video (streamed to
        this run's uploads folder, :mod:`.uploads`), told apart by the Content-Type and the name's
        suffix (``X-Vbg-Name``); a moving picture larger than a picture may be is streamed as a video."""
        ctype = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        name = Path(unquote(self.headers.get("X-Vbg-Name", "upload"))).name[:80] or "upload"
        suffix = video_suffix(name, ctype)
        what = "video"
        if suffix is None and (moving := moving_suffix(name, ctype)):
            what = "moving picture"
            if self._length(MAX_VIDEO_UPLOAD, lambda n: self._too_big(n, what, ctl)) > MAX_UPLOAD:
                suffix = moving  # too large to send whole: kept as the video it says it is, or refused
        if suffix is not None:
            n = self._length(MAX_VIDEO_UPLOAD, lambda n: self._too_big(n, what, ctl))
            stem = Path(name).stem if Path(name).suffix.lower() == suffix else name
            try:
                return self._json(200, ctl.upload_video(self.rfile.read, n, stem or "upload", suffix))
            except UploadRefused as e:
                self.close_connection = True  # the body may be unread
                raise _Refused(e.status, str(e)) from None
        other = Path(name).suffix.lower() in VIDEO_FILES and ctype in ("application/octet-stream", "")
        if ctype.startswith("video/") or other:
            raise _Refused(415, f"{name}: a {Path(name).suffix if other else ctype} video: the filter plays "
                                f"{PLAYED_KINDS} videos: convert it to mp4")
        if not ctype.startswith("image/") and ctype != "application/octet-stream":
            raise _Refused(415, f"Content-Type {ctype!r}: upload an image file (image/jpeg, image/png...) "
                                "or a video (video/mp4...)")
        data = self._body(MAX_UPLOAD)
        return self._json(200, ctl.upload(data, name))

    @staticmethod
    def _too_big(n: int, what: str, ctl) -> str:
        return (f"the {what} is {n / 2**20:.0f} MB: an upload may be at most {MAX_VIDEO_UPLOAD >> 20} MB; "
                f"put it in the backgrounds folder, {ctl.library.folder}, and pick it from the list")

    def _static(self, name: str) -> None:
        """A file of the page folder, found in its listing (no path is ever joined from the request)."""
        if not _STATIC_NAME.fullmatch(name) or ".." in name:
            raise _Refused(404, f"/static/{name}: no such file")
        try:
            listed = {e.name for e in os.scandir(PAGE_DIR) if e.is_file(follow_symlinks=False)}
        except OSError:
            listed = set()
        if name not in listed:
            raise _Refused(404, f"/static/{name}: no such file" if name != "index.html"
                           else "the control page is not installed with this vbg: use vbg ctl")
        body = (PAGE_DIR / name).read_bytes()
        if name == "index.html":
            # The page's own script and style are fetched with the token it was opened with (a
            # static file cannot know it, and the CSP below allows no inline script to read it).
            body = body.replace(b"{{token}}", self.server.token.encode())
        self._send(200, body, TYPES.get(Path(name).suffix, "application/octet-stream"),
                   {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
                    "X-Frame-Options": "DENY"})


class _Bounded:
    """A ThreadingMixIn server with at most ``MAX_THREADS`` requests served at once."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def _setup_bounded(self, controller, token: str, tcp: bool, tickets: Tickets) -> None:
        self.controller, self.token, self.tcp, self.tickets = controller, token, tcp, tickets
        self._slots = threading.BoundedSemaphore(MAX_THREADS)
        self._closing = False

    def process_request(self, request, client_address) -> None:
        while not self._slots.acquire(timeout=0.5):
            if self._closing:
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.debug("control: a request failed", exc_info=True)


def _proc_address(ip: str, port: int, family: int) -> str:
    """``ip``:``port`` as /proc/net/tcp{,6} write it: the address's 32-bit words in this machine's
    byte order, in hex, and the port in hex."""
    raw = socket.inet_pton(family, ip)
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


_SOCK_DIAG = 4  # NETLINK_SOCK_DIAG
_BY_FAMILY = 20  # SOCK_DIAG_BY_FAMILY
_NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: the socket named by its addresses alone


def _diag_uid(family: int, src: str, sport: int, dst: str, dport: int) -> int | None:
    """The owner of the TCP socket ``src:sport`` -> ``dst:dport``, asked of the kernel alone
    (netlink sock_diag, as ``ss`` asks: microseconds, where reading /proc/net/tcp takes
    milliseconds on a machine with many connections); None when it knows no such socket.
    ``OSError`` where netlink cannot be used."""
    raw_s = socket.inet_pton(family, src).ljust(16, b"\0")
    raw_d = socket.inet_pton(family, dst).ljust(16, b"\0")
    sockid = struct.pack("!HH", sport, dport) + raw_s + raw_d + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
    req = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid  # every state
    msg = struct.pack("=IHHII", 16 + len(req), _BY_FAMILY, 1, 1, 0) + req  # NLM_F_REQUEST: this one socket
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(msg, (0, 0))
        data = nl.recv(8192)
    if len(data) < 16 + 68 or struct.unpack_from("=H", data, 4)[0] != _BY_FAMILY:
        return None  # NLMSG_ERROR: no such socket
    return struct.unpack_from("=I", data, 16 + 64)[0]  # inet_diag_msg.idiag_uid


def peer_uid(server_port: int, client: tuple) -> int | None:
    """The user that owns the client end of a loopback TCP connection to ``server_port`` (Linux:
    asked of the kernel by netlink, else read from /proc/net/tcp, or tcp6 for a dual-stack
    client's socket); None where that cannot be told (another system, neither readable, the
    connection gone)."""
    host, port = client[0], client[1]
    if not sys.platform.startswith("linux"):
        return None
    try:
        for family, peer, ours in ((socket.AF_INET, host, "127.0.0.1"),
                                   (socket.AF_INET6, f"::ffff:{host}", "::ffff:127.0.0.1")):
            uid = _diag_uid(family, peer, port, ours, server_port)
            if uid is not None:
                return uid
        return None
    except (OSError, ValueError, AttributeError):  # no netlink here (a container's seccomp, an old kernel)
        return proc_uid(server_port, client)


def proc_uid(server_port: int, client: tuple) -> int | None:
    """``peer_uid`` from /proc/net/tcp (or tcp6), where netlink cannot be used."""
    host, port = client[0], client[1]
    tables = (("/proc/net/tcp", socket.AF_INET, host, "127.0.0.1"),
              ("/proc/net/tcp6", socket.AF_INET6, f"::ffff:{host}", "::ffff:127.0.0.1"))
    for table, family, peer, ours in tables:
        try:
            needle = f"{_proc_address(peer, port, family)} {_proc_address(ours, server_port, family)}"
            with open(table, encoding="ascii", errors="replace") as f:
                text = f.read()
        except (OSError, ValueError):
            continue
        at = text.find(needle)
        if at < 0:
            continue
        fields = text[at:text.find("\n", at)].split()
        try:
            return int(fields[6])  # local, remote, st, queues, tr, retrnsmt, uid
        except (IndexError, ValueError):
            return None
    return None


class _TCPServer(_Bounded, ThreadingHTTPServer):
    allow_reuse_address = False
    owner = os.getuid() if hasattr(os, "getuid") else None  # whose connections are served

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no getfqdn() lookup
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def verify_request(self, request, client_address) -> bool:
        """Only the user's own programs (their browser, vbg ctl): a connection another local user
        opened is closed before anything is read, so no token, ticket or request of theirs is
        looked at (a ticket read off the browser's command line, a dozen connections held open to
        keep the page from being served). Where the owner cannot be told, the token decides."""
        uid = peer_uid(self.server_address[1], client_address) if self.owner is not None else None
        if uid is not None and uid != self.owner:
            log.debug("control: a connection of user %d refused (this filter is user %d's)", uid, self.owner)
            return False
        return True


if hasattr(socket, "AF_UNIX"):
    class _UnixServer(_Bounded, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        pass
else:  # pragma: no cover (Windows)
    _UnixServer = None


class Tickets:
    """One-time addresses of the page for a browser vbg opens: each good once, for ``TICKET_S`` by
    ``clock`` (injectable: tests drive it), at most ``MAX_TICKETS`` outstanding."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._due: dict[str, float] = {}  # ticket -> when it lapses, oldest first
        self.port: int | None = None

    def url(self) -> str:
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._due[ticket] = self._clock() + TICKET_S
            while len(self._due) > MAX_TICKETS:
                del self._due[next(iter(self._due))]
        return f"http://127.0.0.1:{self.port}/?ticket={ticket}"

    def redeem(self, ticket: str) -> bool:
        """Whether ``ticket`` was handed out and is good now (then it is spent)."""
        with self._lock:
            now = self._clock()
            for t in [t for t, due in self._due.items() if due <= now]:
                del self._due[t]
            match = next((t for t in self._due if hmac.compare_digest(t.encode(), ticket.encode())), None)
            if match is None:
                return False
            del self._due[match]
            return True


class ControlServer:
    """The control server of one live run: ``start()`` binds, writes the runtime file and serves
    on daemon threads; ``close()`` stops serving and removes the socket and the runtime file.

    ``folder``: the runtime folder (default :func:`~vbg.control.runtime.runtime_dir`); ``clock``:
    the tickets' (``Tickets``)."""

    def __init__(self, controller, *, folder: Path | None = None, unix: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.controller = controller
        self.token = secrets.token_urlsafe(24)
        self.tickets = Tickets(clock)
        self._folder = folder
        self._unix = unix and _UnixServer is not None
        self._servers: list = []
        self._threads: list[threading.Thread] = []
        self.port: int | None = None
        self.socket_path: Path | None = None
        self.runtime_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def ticket_url(self) -> str:
        """A one-time address of the page, for a browser vbg starts (``Tickets``)."""
        return self.tickets.url()

    def start(self) -> ControlServer:
        try:
            tcp = _TCPServer(("127.0.0.1", 0), _Handler)
        except OSError as e:
            raise ControlError(f"the control server cannot listen on 127.0.0.1 ({e.strerror or e}): "
                               "run with --no-control") from e
        self.port = tcp.server_address[1]
        self.tickets.port = self.port
        tcp._setup_bounded(self.controller, self.token, True, self.tickets)
        tcp.port = self.port
        tcp.hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}
        tcp.origins = {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}",
                       f"http://[::1]:{self.port}"}
        self._servers.append(tcp)
        try:
            folder = self._folder or runtime_dir()
            if self._unix:
                self._start_unix(folder / f"vbg-{os.getpid()}.sock")
            info = {"pid": os.getpid(), "port": self.port, "token": self.token, "started": time.time(),
                    "socket": str(self.socket_path) if self.socket_path else None}
            self.runtime_file = write_runtime(folder, info)
        except BaseException:
            self.close()
            raise
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="vbg-control", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _start_unix(self, path: Path) -> None:
        """The Unix socket (0600); where it cannot be made (a path too long for one), HTTP alone."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead run's (this pid's) socket
        try:
            unix = _UnixServer(str(path), _Handler)
        except OSError as e:
            log.debug("control: no Unix socket at %s (%s): HTTP on 127.0.0.1 only", path, e)
            return
        self.socket_path = path
        os.chmod(path, 0o600)  # in a 0700 folder: only the user reaches it anyway
        unix._setup_bounded(self.controller, self.token, False, self.tickets)
        self._servers.append(unix)

    def close(self) -> None:
        for path in (self.runtime_file, self.socket_path):
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        self.runtime_file = self.socket_path = None
        servers, self._servers = self._servers, []
        for srv in servers:
            srv._closing = True
        for srv, t in zip(servers, self._threads):
            srv.shutdown()
            t.join(5.0)
        for srv in servers:
            srv.server_close()
        self._threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
