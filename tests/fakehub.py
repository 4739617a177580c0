"""A tiny stand-in for the Hugging Face hub, and a runner for ``vbg.models.hub.fetch`` in a child process.

``FakeHub`` answers the two requests ``huggingface_hub.hf_hub_download`` makes
for a file, ``HEAD`` then ``GET`` on ``/{repo}/resolve/{revision}/{path}``:

- ``HEAD`` must carry ``X-Repo-Commit`` (a 40-hex commit; without it the
  client raises ``FileMetadataError``), an ``ETag`` (the hub sends
  ``X-Linked-Etag``/``X-Linked-Size`` for LFS files: the etag is the content's
  sha256 and names the blob in the cache) and the size (``X-Linked-Size`` or
  ``Content-Length``). ``Accept-Encoding: identity`` is requested, so the size
  is the real one.
- ``GET`` returns the bytes with ``Content-Length``; a length that differs from
  the HEAD size makes the client raise "Consistency check failed".
- errors are told apart by ``X-Error-Code``: ``GatedRepo`` (401/403 ->
  ``GatedRepoError``), ``RepoNotFound`` (-> ``RepositoryNotFoundError``),
  ``EntryNotFound`` (404 -> ``RemoteEntryNotFoundError``), ``RevisionNotFound``.
  A 5xx on HEAD makes the client retry with backoff (~23 s in all).

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_OFFLINE`` once, when
it is imported, so every fetch runs in a fresh interpreter: ``run_fetch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Entry:
    data: bytes
    etag: str  # what the hub claims the content's sha256 is


@dataclass
class Failure:
    status: int
    error_code: str | None = None
    message: str | None = None


@dataclass
class FakeHub:
    """Configure with ``serve`` / ``fail`` / ``stall``; ``requests`` logs (method, path, authorization)."""

    files: dict[tuple[str, str], Entry] = field(default_factory=dict)
    failures: dict[tuple[str, str | None], Failure] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    stall_after: int | None = None  # GET sends this many bytes, then waits for `release`
    finish_on_release: bool = False  # after `release`, a stalled GET sends the rest (else it ends short)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- configuration
    def serve(self, repo: str, path: str, data: bytes, *, claimed_sha256: str | None = None) -> None:
        """Serve ``data``; ``claimed_sha256`` makes the etag lie (a corrupting mirror or CDN)."""
        self.failures.pop((repo, path), None)
        self.failures.pop((repo, None), None)
        self.files[(repo, path)] = Entry(data, claimed_sha256 or sha256(data))

    def fail(self, repo: str, path: str | None, status: int, error_code: str | None = None,
             message: str | None = None) -> None:
        """Answer every request for ``path`` (or the whole repo when None) with an error."""
        self.failures[(repo, path)] = Failure(status, error_code, message)

    def stall(self, nbytes: int) -> None:
        self.stall_after = nbytes
        self.stalled.clear()
        self.release.clear()

    # -- lifecycle
    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fakehub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, _, _ in self.requests if method is None or m == method)

    def _log(self, method: str, path: str, auth: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, auth))


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        fake = self.fake
        path = unquote(urlsplit(self.path).path)
        fake._log(self.command, path, self.headers.get("authorization"))
        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(Failure(404, None, "not a resolve url"), head)
        repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
        failure = fake.failures.get((repo, filename)) or fake.failures.get((repo, None))
        if failure is not None:
            return self._error(failure, head)
        entry = fake.files.get((repo, filename))
        if entry is None:
            known = any(r == repo for r, _ in fake.files)
            code = "EntryNotFound" if known else "RepoNotFound"
            return self._error(Failure(404 if known else 401, code, f"{code}: {path}"), head)

        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{entry.etag}"')
        self.send_header("X-Linked-Etag", f'"{entry.etag}"')
        self.send_header("X-Linked-Size", str(len(entry.data)))
        self.send_header("Content-Length", str(len(entry.data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if head:
            return
        if fake.stall_after is None:
            self.wfile.write(entry.data)
            return
        self.wfile.write(entry.data[: fake.stall_after])
        self.wfile.flush()
        fake.stalled.set()
        fake.release.wait(timeout=600)  # held until the test lets go: a client that waits for it hangs
        if fake.finish_on_release:
            self.wfile.write(entry.data[fake.stall_after:])
        self.close_connection = True

    def _error(self, failure: Failure, head: bool) -> None:
        body = json.dumps({"error": failure.message or "error"}).encode()
        self.send_response(failure.status)
        self.send_header("X-Repo-Commit", COMMIT)
        if failure.error_code:
            self.send_header("X-Error-Code", failure.error_code)
        if failure.message:
            self.send_header("X-Error-Message", failure.message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "0" if head else str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


# --------------------------------------------------------------------------- child runner

_CHILD = r'''
import faulthandler, hashlib, json, logging, signal, sys, time
from dataclasses import replace
from pathlib import Path

args = json.loads(sys.argv[1])
from vbg.models import hub
from vbg.models.spec import RMBG14, HubFile

spec = RMBG14
if args["files"] is not None:
    spec = replace(RMBG14, hub_files={k: HubFile(*v) for k, v in args["files"].items()})

records = []
class Capture(logging.Handler):
    def emit(self, record):
        records.append({"level": record.levelname, "msg": record.getMessage()})
vbg_log = logging.getLogger("vbg.hub")
vbg_log.addHandler(Capture())
vbg_log.setLevel(logging.DEBUG)
vbg_log.propagate = False

hash_calls = []
real_hash = hub.file_sha256
def counting_hash(path, *a, **k):
    hash_calls.append(str(path))
    return real_hash(path, *a, **k)
hub.file_sha256 = counting_hash

out = {"cached_before": None}
if args["check_cached"]:
    p = hub.cached_path(spec, args["variant"])
    out["cached_before"] = None if p is None else str(p)
faulthandler.register(signal.SIGUSR1)  # a hang guard that fires shows where the child hung
# Ctrl-C raises KeyboardInterrupt even where the child was started with SIGINT ignored (a job started
# in the background, nohup: Python then leaves SIGINT ignored), as vbg's CLI sees to for itself.
signal.signal(signal.SIGINT, signal.default_int_handler)
print("READY", flush=True)
t0 = time.monotonic()
try:
    path = hub.fetch(spec, args["variant"], token=args["token"])
    out.update(ok=True, path=str(path), sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest())
except BaseException as exc:
    out.update(ok=False, error=type(exc).__name__, message=str(exc),
               exit_code=getattr(exc, "exit_code", None),
               cause=type(exc.__cause__).__name__ if exc.__cause__ else None,
               mro=[k.__name__ for k in type(exc).__mro__])
out.update(elapsed=time.monotonic() - t0, records=records, hash_calls=hash_calls)
print("RESULT " + json.dumps(out), flush=True)
'''


def child_env(tmp: Path, endpoint: str | None, **extra: str) -> dict[str, str]:
    """A clean environment: our caches in ``tmp``, no token, proxy or offline flag from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGING", "VBG_")) and k.lower() not in
           {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "transformers_offline"}}
    env.update(HF_HOME=str(tmp / "hf"), VBG_CACHE_DIR=str(tmp / "vbg"), HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    env.update(extra)
    return env


def _args(files: dict[str, tuple[str, int, str]] | None, variant: str, token: str | None,
          check_cached: bool) -> str:
    return json.dumps({"files": files, "variant": variant, "token": token, "check_cached": check_cached})


def start_fetch(env: dict[str, str], files: dict[str, tuple[str, int, str]] | None, *,
                variant: str = "fp32", token: str | None = None, check_cached: bool = False,
                prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """``prefix``: a command the child runs under (``setpriv`` dropping root's capabilities)."""
    return subprocess.Popen([*prefix, sys.executable, "-c", _CHILD, _args(files, variant, token, check_cached)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_fetch(proc: subprocess.Popen, timeout: float = 120) -> dict:
    t0 = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import signal

        proc.send_signal(signal.SIGUSR1)  # the child's stacks to its stderr, then stop it
        time.sleep(2)
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(f"the child hung for {timeout} s\nstdout:\n{stdout}\nstderr:\n{stderr}") from None
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"child printed no result (rc={proc.returncode})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    result = json.loads(lines[-1][len("RESULT "):])
    result["stderr"] = stderr
    result["wall"] = time.monotonic() - t0
    return result


def run_fetch(env: dict[str, str], files: dict[str, tuple[str, int, str]] | None, *,
              variant: str = "fp32", token: str | None = None, check_cached: bool = False,
              timeout: float = 120, prefix: tuple[str, ...] = ()) -> dict:
    """Run ``fetch`` in a fresh interpreter and return what it saw (result or error, log records)."""
    proc = start_fetch(env, files, variant=variant, token=token, check_cached=check_cached, prefix=prefix)
    return finish_fetch(proc, timeout)
