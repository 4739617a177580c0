"""Download, cache and verify hub model files.

In: a ``ModelSpec`` and a variant. Out: ``fetch`` returns the local path of the
verified file, downloaded if needed (``cached_path``: the cached copy or None,
no network); errors are one-line ``VbgError``s (``ModelAccessError``,
``ModelDownloadError``, ``ChecksumError``, ``OutputError``). The files live in
huggingface_hub's cache, which vbg does not own: other tools share it.

Files come from the Hugging Face hub through ``huggingface_hub`` into its
standard cache (``HF_HOME`` / ``HF_HUB_CACHE``), so ``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN`` work as usual. Every file is pinned by size
and sha256 in its ``ModelSpec``:

- a cached copy is used without any network access (the pin makes an update
  check pointless);
- hashing a 176 MB file on every start is too slow, so a verified file gets a
  stamp in ``cache_dir()/verified/<sha256>`` (resolved path, size, mtime); while
  the file's stat matches the stamp, the hash is not recomputed;
- a download that does not match its pin is removed from the hub cache before
  ``ChecksumError`` is raised, so a later run downloads it again.

huggingface_hub retries an unreachable host or a 5xx answer for about 23 s and
logs each retry; ``fetch`` first checks that the endpoint accepts a TCP
connection and asks for the file's metadata once without retries, so the user
gets a one-line error within seconds instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import (
    ChecksumError,
    ConfigError,
    DependencyError,
    ModelAccessError,
    ModelError,
    ModelDownloadError,
    OutputError,
    VbgError,
)
from ..fsutil import NewFile
from .spec import HubFile, ModelSpec

log = logging.getLogger("vbg.hub")

PROBE_TIMEOUT_S = 3.0
ALTERNATIVES = "pass --model PATH to a downloaded file, or use --model selfie"  # what else to run, at start
_NETWORK_MODULES = ("httpx", "httpx2", "requests", "urllib3", "aiohttp", "h11", "httpcore")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                 errno.EISDIR, errno.EEXIST, getattr(errno, "EDQUOT", errno.ENOSPC)}


# --------------------------------------------------------------------------- paths

def cache_dir() -> Path:
    """vbg's own cache folder (exports, verification stamps, TensorRT engines).

    ``$VBG_CACHE_DIR``, else ``$XDG_CACHE_HOME/vbg``, else ``~/.cache/vbg``.
    Only the path: whoever writes there creates the folders it needs, so a
    read-only home (or a cache path that cannot exist) stops nothing that
    writes nothing (the bundled selfie model). Hub files are not kept here but
    in huggingface_hub's cache.
    """
    if os.environ.get("VBG_CACHE_DIR"):
        return Path(os.environ["VBG_CACHE_DIR"]).expanduser()
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or "relative").expanduser()
    if xdg.is_absolute():  # the XDG spec: a relative path is ignored (it made a cache in the current folder)
        return xdg / "vbg"
    return Path.home() / ".cache" / "vbg"


def cache_unwritable(path: Path | None = None) -> str | None:
    """Why ``path`` (default :func:`cache_dir`) could not be created or written, or None;
    creates nothing: looks at the nearest folder that exists."""
    path = cache_dir() if path is None else Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- public API

def cached_path(spec: ModelSpec, variant: str) -> Path | None:
    """The verified cached copy of ``spec.hub_files[variant]``, or None.

    Never touches the network and never changes the hub cache.
    """
    f = _hub_file(spec, variant)
    hub = _import_hub()
    for path in _cached_candidates(hub, spec, f):
        if _verify(path, f) is None:
            return path
    return None


def unreadable_copy(spec: ModelSpec, variant: str) -> VbgError | None:
    """The error for a cached copy of ``spec.hub_files[variant]`` that cannot be read (another
    user's in a shared cache), where no other copy is whole; None otherwise. No network."""
    f = _hub_file(spec, variant)
    hub = _import_hub()
    found = None
    for path in _cached_candidates(hub, spec, f):
        problem = _verify(path, f)
        if problem is None:
            return None
        if isinstance(problem, Unreadable) and found is None:
            found = _unreadable_error(spec, f, path, problem)
    return found


def fetch(spec: ModelSpec, variant: str, *, token: str | None = None) -> Path:
    """Local path of ``spec.hub_files[variant]``, downloaded if needed and verified.

    ``token`` overrides ``HF_TOKEN`` / the stored login. Raises ``ConfigError``
    (unknown variant), ``ModelAccessError`` (gated, bad token),
    ``ModelDownloadError`` (offline, unreachable, hub error), ``ChecksumError``
    (the download does not match its pin; it is removed) or ``OutputError``
    (the cache cannot be written).
    """
    f = _hub_file(spec, variant)
    hub = _import_hub()

    unreadable: VbgError | None = None
    for path in _cached_candidates(hub, spec, f):
        problem = _verify(path, f)
        if problem is None:
            return path
        if isinstance(problem, Unreadable):  # not damaged: not removed, and not downloaded over
            unreadable = unreadable or _unreadable_error(spec, f, path, problem)
            continue
        log.warning("cached %s of %s is damaged (%s): removing it", f.path, spec.hub_repo, problem)
        failure = _remove_cached(hub, spec, f, path)
        if failure is not None:
            raise OutputError(
                f"cached {path} is damaged ({problem}) and cannot be removed ({failure}): "
                "delete it, or set HF_HOME to a writable folder"
            )

    if unreadable is not None:  # and no other copy is whole
        raise unreadable
    if _offline(hub):
        raise _download_error(spec, f, "HF_HUB_OFFLINE is set",
                              fix="unset HF_HUB_OFFLINE and connect to the internet")
    _check_endpoint()
    malformed = _token_problem(token or _stored_token(hub))
    if malformed is not None:
        raise malformed
    with _quiet_hub_logger():
        _check_reachable(hub.constants.ENDPOINT, spec, f)
        etag = _preflight(hub, spec, f, token)
        _log_notice(spec, f)
        path = _download(hub, spec, f, token, etag)

    problem = _verify(path, f)
    if problem is not None:
        failure = _remove_cached(hub, spec, f, path)
        removed = "was removed from the cache: run again" if failure is None else \
            f"could not be removed ({failure}): delete {path} and run again"
        raise ChecksumError(
            f"downloaded {f.path} of {spec.hub_repo} does not match its published checksum ({problem}) "
            f"and {removed}, or {ALTERNATIVES}"
        )
    return path


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Why a hub file can be neither read from the cache nor downloaded now."""

    reason: str  # short, for "RMBG-1.4 is not available (REASON)"
    fix: str  # the one step that makes it available
    error: VbgError  # what ``fetch`` would raise: the strict, one-line error


def availability(spec: ModelSpec, variant: str, *, token: str | None = None) -> Unavailable | None:
    """None when ``fetch`` would succeed (the file is cached, or the hub would serve it),
    else why not. Downloads nothing: at most a connection and one metadata request."""
    f = _hub_file(spec, variant)
    try:
        hub = _import_hub()
    except DependencyError as e:
        return Unavailable("huggingface_hub is not installed", "pip install huggingface_hub", e)
    except ModelDownloadError as e:
        if "HF_ENDPOINT" in str(e).split(":")[0]:
            return Unavailable("HF_ENDPOINT is not a URL", "set HF_ENDPOINT to the hub's URL, or unset it", e)
        return Unavailable("an HF_* variable is not a value huggingface_hub takes", "set it right or unset it", e)
    unreadable = None
    for path in _cached_candidates(hub, spec, f):
        problem = _verify(path, f)
        if problem is None:
            return None
        if isinstance(problem, Unreadable):
            unreadable = unreadable or (path, problem)
    if unreadable is not None:  # another user's copy in a shared cache: downloading again would not help
        refused = _unreadable_error(spec, f, *unreadable)
        return Unavailable(f"its cached copy cannot be read ({unreadable[1].why})", UNREADABLE_FIX, refused)
    page = f"https://huggingface.co/{spec.hub_repo}"
    if _offline(hub):
        fix = "unset HF_HUB_OFFLINE and connect to the internet"
        return Unavailable("HF_HUB_OFFLINE is set and it is not cached", fix,
                           _download_error(spec, f, "HF_HUB_OFFLINE is set", fix=fix))
    try:
        _check_endpoint()
    except ModelDownloadError as e:
        return Unavailable("HF_ENDPOINT is not a URL", "set HF_ENDPOINT to the hub's URL, or unset it", e)
    room = _cache_room(hub, f)
    if room is not None:  # a read-only home, a service's, a full disk: nowhere to download it to
        where = hub.constants.HF_HUB_CACHE
        fix = "set HF_HOME to a writable folder with room for it"
        return Unavailable(f"the Hugging Face cache {where} cannot take it: {room}", fix,
                           OutputError(f"cannot download {f.path} ({f.size / 1e6:.0f} MB) into the hub cache "
                                       f"{where} ({room}): free disk space, or {fix}; or {ALTERNATIVES}"))
    known = token or _stored_token(hub)  # the token file read once; the request below still asks with `token`
    malformed = _token_problem(known)
    if malformed is not None:
        return Unavailable("the Hugging Face token is malformed", "set the token again", malformed)
    have_token = bool(known)
    if spec.gated and not have_token:
        fix = f"accept its licence at {page}, then run `hf auth login` (or export HF_TOKEN=hf_...)"
        return Unavailable("it is gated and no Hugging Face token is set", fix,
                           ModelAccessError(f"{spec.hub_repo} is gated and no Hugging Face token is set: "
                                            f"{fix}; or {ALTERNATIVES}"))
    try:
        with _quiet_hub_logger():
            _check_reachable(hub.constants.ENDPOINT, spec, f)
            _preflight(hub, spec, f, token)
    except ModelAccessError as e:
        return Unavailable("the hub refused the token: licence not accepted, or an invalid token",
                           f"accept the licence at {page} with the token's account, or `hf auth login` again", e)
    except ModelDownloadError as e:
        return Unavailable("not downloaded yet, and the hub cannot be reached",
                           "connect to the internet once (it is cached after that)", e)
    except VbgError as e:
        return Unavailable(str(e).split(":")[0], "try again later", e)
    return None


def _stored_token(hub: Any) -> str | None:
    try:
        return hub.get_token()
    except Exception:  # an unreadable token file counts as none
        return None


# --------------------------------------------------------------------------- internals

def _hub_file(spec: ModelSpec, variant: str) -> HubFile:
    if spec.hub_repo is None or not spec.hub_files:
        raise ConfigError(f"model {spec.name!r} is not downloaded from the hub")
    try:
        return spec.hub_files[variant]
    except KeyError:
        known = ", ".join(spec.hub_files)
        raise ConfigError(f"unknown variant {variant!r} for model {spec.name}: use one of {known}") from None


def _import_hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401
    except ImportError as exc:
        raise DependencyError(
            "downloading models needs huggingface_hub: pip install 'huggingface_hub>=0.34'"
        ) from exc
    except ValueError as exc:  # its import parses HF_ENDPOINT, and fails on some that are no URL
        problem = _endpoint_problem(os.environ.get("HF_ENDPOINT"))
        if problem is None:  # or a number it reads with int() (HF_HUB_DOWNLOAD_TIMEOUT=60s)
            said = " ".join(str(exc).split())
            named = [f"{k}={v}" for k, v in sorted(os.environ.items())
                     if k.startswith("HF_") and v and (repr(v) in said or f"'{v}'" in said)]
            what = named[0] if named else "one of the HF_* variables"
            problem = (f"huggingface_hub cannot start: {what} is not a value it takes ({said}): set it right "
                       f"(a timeout is a whole number of seconds) or unset it; or {ALTERNATIVES}")
        raise ModelDownloadError(problem) from exc
    return huggingface_hub


def _check_endpoint() -> None:
    """Before anything is asked of the hub (a cached copy needs no endpoint)."""
    problem = _endpoint_problem(os.environ.get("HF_ENDPOINT"))
    if problem is not None:
        raise ModelDownloadError(problem)


def _endpoint_problem(endpoint: str | None) -> str | None:
    """Why ``HF_ENDPOINT`` is not a URL to download from (a scheme, a host, a numeric port), or None."""
    if not endpoint:
        return None
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return (f"HF_ENDPOINT={endpoint!r} is not a URL to download from (it needs http:// or https://, a host "
                f"and a numeric port, if any): set it to the hub's URL (https://huggingface.co) or unset it; "
                f"or {ALTERNATIVES}")
    return None


def _token_problem(token: str | None) -> ModelAccessError | None:
    """A token (given, or huggingface_hub's own) holding a character no token has (a space, a
    typographic quote, an invisible character pasted with it) cannot even be sent: said as such,
    not as a crash in the HTTP client."""
    if not token or all(33 <= ord(c) < 127 for c in token):
        return None
    return ModelAccessError("the Hugging Face token holds a character no token has (a space, a quote or an "
                            "invisible character pasted with it): set it again (export HF_TOKEN=hf_... or "
                            f"`hf auth login`); or {ALTERNATIVES}")


def hub_cache_problem(spec: ModelSpec, variant: str = "fp32") -> str | None:
    """Why huggingface_hub's cache cannot take ``spec``'s file now (it cannot be made or written,
    or the disk has less room than the file), or None. Creates nothing."""
    return _cache_room(_import_hub(), _hub_file(spec, variant))


def _cache_room(hub: Any, f: HubFile) -> str | None:
    where = Path(hub.constants.HF_HUB_CACHE)
    why = cache_unwritable(where)
    if why is not None:
        return why
    probe = where
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return None
    if free < f.size:
        return f"{free / 1e6:.0f} MB free in {probe}, and it takes {f.size / 1e6:.0f} MB"
    return None


def _offline(hub: Any) -> bool:
    is_offline = getattr(hub.constants, "is_offline_mode", None)
    return bool(is_offline() if callable(is_offline) else hub.constants.HF_HUB_OFFLINE)


def _repo_dir(hub: Any, spec: ModelSpec) -> Path:
    assert spec.hub_repo is not None
    # Resolved like huggingface_hub does, so paths it returns compare equal to ours.
    cache = Path(hub.constants.HF_HUB_CACHE).expanduser().resolve()
    return cache / ("models--" + spec.hub_repo.replace("/", "--"))


def _cached_candidates(hub: Any, spec: ModelSpec, f: HubFile) -> Iterator[Path]:
    """Snapshot paths of ``f`` in the hub cache: the ``main`` ref first, then any other snapshot.

    Other snapshots matter when ``refs/main`` moved on (another tool fetched a
    newer commit of the repository) while the pinned file is still cached.
    """
    seen: set[Path] = set()
    snapshots = _repo_dir(hub, spec) / "snapshots"
    try:
        found = hub.try_to_load_from_cache(repo_id=spec.hub_repo, filename=f.path)
    except (OSError, ValueError):
        found = None
    if isinstance(found, str) and _within(Path(found).parent, snapshots):
        path = Path(found)
        seen.add(path)
        yield path
    try:
        commits = sorted(snapshots.iterdir())
    except OSError:
        return
    for commit in commits:
        path = commit.joinpath(*f.path.split("/"))
        # a snapshot folder that is a link out of the cache is not the hub's: a damaged copy
        # would be removed through it (the cache may be shared with other users' tools)
        if path not in seen and path.is_file() and _within(path.parent, snapshots):
            seen.add(path)
            yield path


def _within(path: Path, root: Path) -> bool:
    """``path``, its links resolved, is ``root`` or inside it. ``root`` is taken as it is written
    (``_repo_dir``: the hub cache resolved, then the repository's own folders): a link at
    ``snapshots`` or above it within the cache leads out, not in."""
    real, top = os.path.realpath(path), str(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class Unreadable(str):
    """``_verify``'s problem for a cached file that cannot be read: not damaged (``why``: the OS's word)."""

    why: str

    def __new__(cls, text: str, why: str) -> Unreadable:
        self = super().__new__(cls, text)
        self.why = why
        return self


UNREADABLE_FIX = "make it readable to you (its owner can: chmod a+r), or set HF_HOME to a folder of your own"


def _unreadable_error(spec: ModelSpec, f: HubFile, path: Path, problem: Unreadable) -> ModelError:
    return ModelError(f"the cached {f.path} of {spec.hub_repo} cannot be read ({problem.why}: {path}): "
                      f"{UNREADABLE_FIX}; or {ALTERNATIVES}")


def _verify(path: Path, f: HubFile) -> str | None:
    """None if ``path`` holds ``f``, else a short description of the mismatch.

    A matching stamp skips the hash; a successful hash writes the stamp.
    """
    try:
        real = Path(os.path.realpath(path))
        st = real.stat()
    except OSError as exc:
        return _short(exc)
    if st.st_size != f.size:
        return f"expected {f.size} bytes, got {st.st_size}"
    expected_stamp = file_stamp(real, st)
    stamp = _stamp_path(f)
    if stamp is not None:
        try:
            if json.loads(stamp.read_text()) == expected_stamp:
                return None
        except (OSError, ValueError):
            pass
    try:
        digest = file_sha256(real)
    except OSError as exc:  # another user's file in a shared cache (mode 0600), a failing disk
        return Unreadable(f"cannot read it ({_short(exc)})", _short(exc))
    if digest != f.sha256:
        return f"expected sha256 {f.sha256[:12]}..., got {digest[:12]}..."
    if stamp is not None:
        _write_stamp(stamp, expected_stamp)
    return None


def file_stamp(real: Path, st: os.stat_result) -> dict:
    """What a verification stamp holds of the file it vouches for: its path, size and times, its
    device and inode, and its change time, which no user can set (a file of the same size renamed
    over it with the same modification time, in a cache others can write to, passed unhashed)."""
    return {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "dev": st.st_dev,
            "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}


def _stamp_path(f: HubFile) -> Path | None:
    """Where the verification stamp of ``f`` lives (written only when the folder can be made)."""
    return cache_dir() / "verified" / f.sha256


def _write_stamp(stamp: Path, content: dict) -> None:
    """Atomic write; a stamp is only an optimisation, so failing to write one is not an error."""
    try:
        with NewFile(stamp, check_busy=False) as new:
            new.write(json.dumps(content).encode())
    except OSError as exc:
        log.debug("cannot write verification stamp %s: %s", stamp, exc)


def _remove_cached(hub: Any, spec: ModelSpec, f: HubFile, path: Path) -> str | None:
    """Remove a snapshot entry and the blob it points to, so no later run uses it.

    Returns None, or why it could not be removed (a read-only cache). A blob that
    is a link into huggingface_hub's shared store is unlinked; the store entry
    itself is left alone (other repositories may point at it).
    """
    repo_dir = _repo_dir(hub, spec)
    if not _within(path.parent, repo_dir / "snapshots"):  # never through a link out of the cache
        return f"{path} lies outside the hub cache {repo_dir} (a link)"
    blob: Path | None = None
    if path.is_symlink():
        # huggingface_hub links snapshots/<commit>/<file> -> ../../blobs/<etag> (relative).
        link_target = Path(os.path.normpath(path.parent / os.readlink(path)))
        if os.path.realpath(link_target.parent) == str(repo_dir / "blobs"):  # not through a linked blobs/
            blob = link_target
    stamp = _stamp_path(f)
    if stamp is not None:
        with contextlib.suppress(OSError):
            stamp.unlink()
    for victim in (path, blob):
        if victim is None:
            continue
        try:
            victim.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            return _short(exc)
    # Tidy now-empty folders between the file and its snapshot root.
    snapshots = repo_dir / "snapshots"
    parent = Path(os.path.realpath(path.parent))
    while parent != snapshots and snapshots in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return None


@contextlib.contextmanager
def _quiet_hub_logger() -> Iterator[None]:
    """Keep huggingface_hub's retry warnings off the terminal (it has its own stderr handler).

    Progress bars stay: they are only disabled at level NOTSET. An explicit
    ``HF_HUB_VERBOSITY`` is respected.
    """
    hub_logger = logging.getLogger("huggingface_hub")
    if os.environ.get("HF_HUB_VERBOSITY"):
        yield
        return
    old = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(old)


def _check_reachable(endpoint: str, spec: ModelSpec, f: HubFile) -> None:
    """Resolve and TCP-connect to the endpoint (or the proxy that would carry the request)."""
    parts = urllib.parse.urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    what = host
    proxy = _proxy_for(parts.scheme, host)
    if proxy:
        pparts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host = pparts.hostname or ""
        port = pparts.port or (443 if pparts.scheme == "https" else 80)
        what = f"proxy {host}"

    # getaddrinfo has no timeout of its own: run it in a daemon thread and stop waiting.
    result: dict[str, Any] = {}

    def resolve() -> None:
        try:
            result["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            result["error"] = exc

    worker = threading.Thread(target=resolve, name="vbg-hub-resolve", daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S)
    if worker.is_alive():
        raise _download_error(spec, f, f"cannot resolve {what}: DNS timed out")
    if "error" in result:
        raise _download_error(spec, f, f"cannot resolve {what}") from result["error"]

    last: OSError | None = None
    for family, kind, proto, _, addr in result["addrs"]:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(PROBE_TIMEOUT_S)
                sock.connect(addr)
            return
        except OSError as exc:
            last = exc
    reason = "timed out" if isinstance(last, (TimeoutError, socket.timeout)) else _short(last)
    raise _download_error(spec, f, f"cannot connect to {what} port {port}: {reason}") from last


def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(host):
        return None
    return proxies.get(scheme) or proxies.get("all")


def _preflight(hub: Any, spec: ModelSpec, f: HubFile, token: str | None) -> str | None:
    """One metadata request without huggingface_hub's retries; returns the blob etag.

    Catches gated/missing/5xx answers at once and a file whose published size
    changed before its bytes are downloaded.
    """
    try:
        meta = hub.get_hf_file_metadata(hub.hf_hub_url(spec.hub_repo, f.path), token=token)
    except VbgError:
        raise
    except Exception as exc:
        err = _translate(exc, spec, f)
        if err is None:
            raise
        raise err from exc
    if meta.size is not None and meta.size != f.size:
        raise ChecksumError(
            f"the hub serves {f.path} of {spec.hub_repo} with {meta.size} bytes, not the published "
            f"{f.size} (the file changed upstream?): nothing was downloaded; {ALTERNATIVES}"
        )
    return meta.etag


def _log_notice(spec: ModelSpec, f: HubFile) -> None:
    terms = spec.license
    if not spec.commercial_use and "non-commercial" not in terms:
        terms += "; non-commercial use only"
    log.warning(
        "Downloading %s (%.1f MB) of %s. Licence: %s, %s. The file is downloaded under your own "
        "acceptance of these terms; vbg does not redistribute it.",
        f.path, f.size / 1e6, spec.attribution, terms, spec.license_url,
    )


def _download(hub: Any, spec: ModelSpec, f: HubFile, token: str | None, etag: str | None) -> Path:
    """hf_hub_download, leaving no partial ``.incomplete`` file of this blob behind on any failure
    (huggingface_hub before 1.x keeps one to resume from), and never another process's."""
    blobs = _repo_dir(hub, spec) / "blobs"
    pattern = f"{etag}*.incomplete" if etag else None
    before = set(blobs.glob(pattern)) if pattern else set()
    try:
        return Path(hub.hf_hub_download(repo_id=spec.hub_repo, filename=f.path, token=token))
    except BaseException as exc:
        if pattern:
            _remove_own_partials(hub, spec, etag, set(blobs.glob(pattern)) - before | {blobs / f"{etag}.incomplete"})
        err = _translate(exc, spec, f) if isinstance(exc, Exception) and not isinstance(exc, VbgError) else None
        if err is None:
            raise
        raise err from exc


def _remove_own_partials(hub: Any, spec: ModelSpec, etag: str | None, partials: set[Path]) -> None:
    """Remove ``partials`` while holding huggingface_hub's lock of the blob, not waiting for it:
    while another process (a second vbg, another tool on the same cache) holds it, the partial
    file is that process's download, and is left alone. (filelock: what huggingface_hub locks with.)"""
    try:
        import filelock
    except ImportError:
        return

    lock = Path(hub.constants.HF_HUB_CACHE) / ".locks" / _repo_dir(hub, spec).name / f"{etag}.lock"
    if not lock.parent.is_dir():  # huggingface_hub never got as far as its lock: nothing was written
        return
    try:
        with filelock.FileLock(str(lock), timeout=0):
            for partial in partials:
                with contextlib.suppress(OSError):
                    partial.unlink()
    except (filelock.Timeout, OSError, NotImplementedError):  # an old filelock where flock is missing
        pass


def _translate(exc: Exception, spec: ModelSpec, f: HubFile) -> VbgError | None:
    """Map a huggingface_hub / network / file-system error to one vbg error with a fix.

    None for anything else (a bug, not a user's problem): the caller re-raises it.
    """
    repo = spec.hub_repo
    status = _status(exc)
    if isinstance(exc, (_hf_error("GatedRepoError"), _hf_error("RepositoryNotFoundError"))) \
            or status in (401, 403):
        reason = "the hub refused the download" + (f", HTTP {status}" if status else "")
        return ModelAccessError(
            f"{repo} is gated ({reason}: no token, an invalid token, or the terms not accepted): "
            f"accept the terms at https://huggingface.co/{repo} and set HF_TOKEN "
            f"(or run `hf auth login`), or {ALTERNATIVES}"
        )
    local_missing = (_hf_error("LocalEntryNotFoundError"), _hf_error("OfflineModeIsEnabled"))
    if isinstance(exc, (_hf_error("RevisionNotFoundError"), _hf_error("EntryNotFoundError"))) \
            and not isinstance(exc, local_missing):
        return ModelDownloadError(
            f"cannot download {f.path} from {repo}: the hub has no such file (HTTP {status or 404}): "
            f"update vbg, or {ALTERNATIVES}"
        )
    if isinstance(exc, local_missing):
        cause = exc.__cause__ or exc.__context__
        if cause is not None and cause is not exc and isinstance(cause, Exception):
            inner = _translate(cause, spec, f)
            if inner is not None and not isinstance(inner, OutputError):
                return inner
        return _download_error(spec, f, "offline or unreachable")
    if status is not None:
        return ModelDownloadError(
            f"cannot download {f.path} from {repo}: the hub answered HTTP {status}: "
            f"try again later, or {ALTERNATIVES}"
        )
    if _is_network_error(exc):
        return _download_error(spec, f, _short(exc) or type(exc).__name__)
    if isinstance(exc, OSError) and "consistency check" in str(exc).lower():
        return _download_error(spec, f, "the transfer was cut short")
    if isinstance(exc, OSError) and (exc.errno in _WRITE_ERRNOS or exc.filename is not None):
        where = _import_hub().constants.HF_HUB_CACHE
        return OutputError(
            f"cannot write {f.path} ({f.size / 1e6:.0f} MB) to the hub cache {where} ({_short(exc)}): "
            "free disk space, or set HF_HOME to a writable folder with room for it"
        )
    if isinstance(exc, OSError):
        return _download_error(spec, f, _short(exc))
    return None


def _hf_error(name: str) -> type | tuple:
    """An exception class of huggingface_hub by name (``errors`` since 0.24, ``utils`` before); () if absent."""
    import huggingface_hub.utils as hf_utils

    try:
        import huggingface_hub.errors as hf_errors
    except ImportError:
        hf_errors = hf_utils
    return getattr(hf_errors, name, None) or getattr(hf_utils, name, None) or ()


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return any(k.__module__.split(".")[0] in _NETWORK_MODULES for k in type(exc).__mro__)


def _download_error(spec: ModelSpec, f: HubFile, reason: str,
                    fix: str = "connect to the internet (or check HF_ENDPOINT and proxy settings)") -> ModelDownloadError:
    return ModelDownloadError(
        f"cannot download {f.path} of {spec.hub_repo} from the Hugging Face hub ({reason}) "
        f"and it is not in the cache: {fix}, or {ALTERNATIVES}"
    )


def _short(exc: BaseException | None, limit: int = 120) -> str:
    if exc is None:
        return ""
    text = " ".join(str(getattr(exc, "strerror", None) or exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
