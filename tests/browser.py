"""A real headless Chromium, driven through chromedriver's W3C WebDriver HTTP protocol with the
standard library only (no selenium): for the control-page test, the screenshot tool and the
control benchmark.

    with Browser.start() as b:          # None-safe: see find_chromium()
        b.get(url)
        b.wait_for("return document.title")
        png = b.screenshot()

:func:`find_chromium` says where Debian's ``chromium`` and ``chromedriver`` are, or why not.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

# Flags for a root user in a container: no sandbox (root), no GPU, and nothing that talks to
# the network on its own.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars"]

# Named keys for press() (W3C WebDriver key codes).
KEYS = {"ArrowLeft": "\ue012", "ArrowRight": "\ue014", "Enter": "\ue007", "Tab": "\ue004", "Space": " "}

# The W3C element reference key.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def find_chromium() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or one line saying which is missing and how to get it."""
    chromium = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                                 shutil.which("google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if path is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (Debian: apt-get install chromium chromium-driver; "
                ".ci/run installs them where it can)")
    return chromium, driver


class WebDriverError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One chromedriver process and one Chromium session with a fresh profile dir; ``close()``
    (or leaving the ``with`` block) ends both and removes the profile."""

    def __init__(self, chromium: str, driver: str, *, width: int = 1280, height: int = 800,
                 timeout: float = 60.0) -> None:
        self._profile = tempfile.mkdtemp(prefix="vbg-chromium-")
        self._port = _free_port()
        self._timeout = timeout
        self._proc = subprocess.Popen([driver, f"--port={self._port}"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.session = None
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if self._call("GET", "/status")["ready"]:
                        break
                except (OSError, WebDriverError):
                    pass
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise WebDriverError(f"chromedriver did not start (exit {self._proc.poll()})")
                time.sleep(0.05)
            args = FLAGS + [f"--user-data-dir={self._profile}", f"--window-size={width},{height}"]
            caps = {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "pageLoadStrategy": "normal",
                "goog:chromeOptions": {"binary": chromium, "args": args},
                "goog:loggingPrefs": {"browser": "ALL"}}}}  # the console, for console_errors()
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """chromedriver's process id (Chromium's processes run below it)."""
        return self._proc.pid

    @classmethod
    def start(cls, **kw) -> Browser:
        found = find_chromium()
        if isinstance(found, str):
            raise WebDriverError(found)
        return cls(*found, **kw)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.session is not None:
                self._call("DELETE", f"/session/{self.session}")
        except (OSError, WebDriverError):
            pass
        self.session = None
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self._port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as r:
                reply = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                v = json.loads(e.read()).get("value", {})
                msg = f"{v.get('error')}: {v.get('message', '').splitlines()[0] if v.get('message') else ''}"
            except (ValueError, AttributeError):
                msg = str(e)
            raise WebDriverError(msg) from None
        return reply.get("value")

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    # --- what the tests use ---------------------------------------------------------------
    def get(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def execute(self, script: str, *args):
        """Runs ``script`` (a function body: ``return ...``) in the page; returns its value."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def execute_async(self, script: str, *args):
        """Runs ``script``; its last argument is the callback that hands back the value."""
        return self._call("POST", self._s("/execute/async"), {"script": script, "args": list(args)})

    def wait_for(self, script: str, *args, timeout: float = 30.0, interval: float = 0.1):
        """Polls ``script`` until it returns a truthy value (returned); ``timeout`` only bounds
        a hang: TimeoutError with the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied {script!r} (last: {value!r})")
            time.sleep(interval)

    def element(self, css: str) -> str:
        found = self._call("POST", self._s("/element"), {"using": "css selector", "value": css})
        return found[ELEMENT]

    def click(self, css: str) -> None:
        self._call("POST", self._s(f"/element/{self.element(css)}/click"), {})

    def press(self, *keys: str) -> None:
        """Presses and releases each key in turn on the focused element, as a keyboard does
        (W3C key values: "\ue012" is ArrowLeft, "\ue007" Enter; see KEYS)."""
        steps = []
        for k in keys:
            steps += [{"type": "keyDown", "value": KEYS.get(k, k)}, {"type": "keyUp", "value": KEYS.get(k, k)}]
        self._call("POST", self._s("/actions"), {"actions": [{"type": "key", "id": "keyboard", "actions": steps}]})
        self._call("DELETE", self._s("/actions"))

    def role(self, css: str) -> str:
        """The element's computed ARIA role, as a screen reader is told it ("button", "listitem")."""
        return self._call("GET", self._s(f"/element/{self.element(css)}/computedrole"))

    def console_errors(self) -> list[str]:
        """The console's error lines since the last call (a failed load of the page's files, a
        script error), from Chromium's log."""
        logs = self._call("POST", self._s("/se/log"), {"type": "browser"}) or []
        return [e.get("message", "") for e in logs if e.get("level") == "SEVERE"]

    def send_file(self, css: str, path: str | os.PathLike) -> None:
        """Types a file path into an ``<input type=file>``, as a user picking that file."""
        self._call("POST", self._s(f"/element/{self.element(css)}/value"), {"text": str(path)})

    def new_tab(self) -> str:
        """Opens a tab and switches to it (the one before goes to the background: hidden)."""
        handle = self._call("POST", self._s("/window/new"), {"type": "tab"})["handle"]
        self.switch_to(handle)
        return handle

    def tab(self) -> str:
        return self._call("GET", self._s("/window"))

    def switch_to(self, handle: str) -> None:
        self._call("POST", self._s("/window"), {"handle": handle})

    def close_tab(self) -> None:
        """Closes the current tab; switch_to() another one next."""
        self._call("DELETE", self._s("/window"))

    def set_window(self, width: int, height: int) -> None:
        self._call("POST", self._s("/window/rect"), {"width": width, "height": height})

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode(self._call("GET", self._s("/screenshot")))
