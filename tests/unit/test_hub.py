"""vbg.models.hub against the real huggingface_hub client and a local fake hub.

huggingface_hub reads its environment when imported, so each fetch runs in a
fresh interpreter (``fakehub.run_fetch``) with its own HF_HOME / VBG_CACHE_DIR
under the test's tmp_path; the fake hub runs in a thread of this process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import unreadable_to_child  # noqa: E402
from fakehub import FakeHub, child_env, finish_fetch, run_fetch, sha256, start_fetch  # noqa: E402

from vbg.errors import ConfigError  # noqa: E402
from vbg.models import hub as vbg_hub  # noqa: E402
from vbg.models.spec import RMBG14, RMBG_LICENSE_URL, SELFIE  # noqa: E402

REPO = RMBG14.hub_repo
FILE = "onnx/model.onnx"
DATA = b"".join(sha256(bytes([i])).encode() for i in range(128))  # 8 KB, not all one byte
BAD = bytes(reversed(DATA))  # same size, other content


def files_for(data: bytes) -> dict[str, tuple[str, int, str]]:
    return {"fp32": (FILE, len(data), sha256(data))}


@pytest.fixture
def fake():
    hub = FakeHub().start()
    try:
        yield hub
    finally:
        hub.stop()


def repo_cache(tmp_path: Path) -> Path:
    return tmp_path / "hf" / "hub" / ("models--" + REPO.replace("/", "--"))


def cached_entries(tmp_path: Path) -> list[str]:
    """Every blob, partial download and snapshot entry of the test repository in the hub cache."""
    root = repo_cache(tmp_path)
    found = []
    for sub in ("blobs", "snapshots"):
        for path in sorted((root / sub).rglob("*")) if (root / sub).exists() else []:
            if path.is_symlink() or path.is_file():
                found.append(str(path.relative_to(root)))
    return found


def notices(result: dict) -> list[str]:
    return [r["msg"] for r in result["records"] if r["level"] == "WARNING"]


def assert_one_line_error(result: dict, error: str, exit_code: int) -> str:
    assert not result["ok"], result
    assert result["error"] == error, result
    assert result["exit_code"] == exit_code
    message = result["message"]
    assert "\n" not in message and message.strip() == message
    assert "Traceback" not in result["stderr"]
    return message


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- in-process


def test_unknown_variant_is_a_config_error_listing_the_variants():
    with pytest.raises(ConfigError) as info:
        vbg_hub.fetch(RMBG14, "fp64")
    message = str(info.value)
    assert "'fp64'" in message
    for variant in RMBG14.hub_files:
        assert variant in message
    with pytest.raises(ConfigError):
        vbg_hub.cached_path(RMBG14, "fp64")


def test_a_model_without_hub_files_is_a_config_error():
    with pytest.raises(ConfigError, match="not downloaded from the hub"):
        vbg_hub.fetch(SELFIE, "fp32")


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VBG_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert vbg_hub.cache_dir() == tmp_path / "home" / ".cache" / "vbg"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says (it was ./relative/...)
    assert vbg_hub.cache_dir() == tmp_path / "home" / ".cache" / "vbg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vbg_hub.cache_dir() == tmp_path / "xdg" / "vbg"
    monkeypatch.setenv("VBG_CACHE_DIR", str(tmp_path / "own"))
    assert vbg_hub.cache_dir() == tmp_path / "own"
    assert not (tmp_path / "own").exists()  # only a path: made by whatever writes there


def test_file_sha256_matches_hashlib_for_any_chunk(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    for chunk in (1, 7, 4096, 1 << 20):
        assert vbg_hub.file_sha256(path, chunk) == sha256(DATA)


# --------------------------------------------------------------------------- downloads


def test_download_then_cache_without_network_notice_or_rehash(fake, tmp_path):
    fake.serve(REPO, FILE, DATA)
    env = child_env(tmp_path, fake.endpoint)

    first = run_fetch(env, files_for(DATA), check_cached=True)
    assert first["ok"], first
    assert first["cached_before"] is None
    assert first["sha256"] == sha256(DATA)
    path = Path(first["path"])
    assert path.name == "model.onnx" and path.parent.name == "onnx"
    assert repo_cache(tmp_path).resolve() in path.resolve().parents  # the standard hub cache
    # One licence notice, naming what the user agrees to.
    (notice,) = notices(first)
    assert "BRIA AI" in notice and RMBG_LICENSE_URL in notice
    assert "non-commercial" in notice and "acceptance" in notice and "MB" in notice
    assert first["stderr"] == ""  # nothing of huggingface_hub's own logging reaches the terminal
    assert fake.count("GET") == 1
    # Hashed once after the download, and stamped so later starts skip the hash.
    assert len(first["hash_calls"]) == 1
    stamp = json.loads((tmp_path / "vbg" / "verified" / sha256(DATA)).read_text())
    assert stamp["path"] == os.path.realpath(path) and stamp["size"] == len(DATA)
    requests_after_download = fake.count()

    offline = run_fetch(dict(env, HF_HUB_OFFLINE="1"), files_for(DATA), check_cached=True)
    assert offline["ok"], offline
    assert offline["path"] == first["path"] and offline["cached_before"] == first["path"]
    assert offline["records"] == [] and offline["hash_calls"] == []

    online = run_fetch(env, files_for(DATA))
    assert online["ok"] and online["path"] == first["path"]
    assert online["records"] == [] and online["hash_calls"] == []
    assert fake.count() == requests_after_download  # a cached file never touches the network


def test_token_is_sent_to_the_hub(fake, tmp_path):
    fake.serve(REPO, FILE, DATA)
    result = run_fetch(child_env(tmp_path, fake.endpoint), files_for(DATA), token="hf_vbg_test")
    assert result["ok"], result
    assert {auth for _, _, auth in fake.requests} == {"Bearer hf_vbg_test"}


def test_a_damaged_cached_file_is_rehashed_removed_and_downloaded_again(fake, tmp_path):
    fake.serve(REPO, FILE, DATA)
    env = child_env(tmp_path, fake.endpoint)
    first = run_fetch(env, files_for(DATA))
    assert first["ok"], first
    blob = Path(os.path.realpath(first["path"]))
    blob.write_bytes(BAD)  # same size, new mtime: the stamp no longer matches

    again = run_fetch(env, files_for(DATA))
    assert again["ok"], again
    assert again["sha256"] == sha256(DATA)
    assert any("damaged" in n for n in notices(again))
    assert len(again["hash_calls"]) == 2  # the damaged copy, then the new download
    assert fake.count("GET") == 2


def test_a_cached_file_the_user_cannot_read_is_one_line_and_left_alone(fake, tmp_path):
    """Another user's download in a shared Hugging Face cache (their umask 077): one line naming
    the file and the fix, exit 4; the copy is neither removed nor downloaded over. It was a
    PermissionError traceback (even where no model was named and vbg would fall back)."""
    fake.serve(REPO, FILE, DATA)
    env = child_env(tmp_path, fake.endpoint)
    first = run_fetch(env, files_for(DATA))
    assert first["ok"], first
    blob = Path(os.path.realpath(first["path"]))
    for stamp in (tmp_path / "vbg" / "verified").glob("*"):
        stamp.unlink()  # hashed again, as by another user whose stamps these are not
    prefix = tuple(unreadable_to_child(blob))
    gets = fake.count("GET")
    result = run_fetch(env, files_for(DATA), check_cached=True, prefix=prefix)
    message = assert_one_line_error(result, "ModelError", 4)
    assert message.startswith(f"the cached {FILE} of {REPO} cannot be read (Permission denied: "), message
    assert "chmod a+r" in message and "HF_HOME" in message and "--model selfie" in message
    assert result["cached_before"] is None
    assert blob.exists() and fake.count("GET") == gets


def test_a_hub_setting_written_with_a_unit_is_one_line_naming_it(fake, tmp_path):
    """HF_HUB_DOWNLOAD_TIMEOUT=60s: huggingface_hub's import fails on int("60s"). One line names
    the variable (exit 5), as for a malformed HF_ENDPOINT; it was a ValueError traceback."""
    env = child_env(tmp_path, fake.endpoint, HF_HUB_DOWNLOAD_TIMEOUT="60s")
    message = assert_one_line_error(run_fetch(env, files_for(DATA)), "ModelDownloadError", 5)
    assert message.startswith("huggingface_hub cannot start: HF_HUB_DOWNLOAD_TIMEOUT=60s is not a value it takes"), \
        message


def test_a_cached_file_swapped_with_the_same_size_and_time_is_hashed_again(fake, tmp_path):
    """In a cache others can write to, a file of the same size renamed over the verified copy,
    its modification time set back to the old one: the stamp (path, size, mtime) passed it
    unhashed, and vbg ran it as RMBG-1.4. The stamp holds the inode and change time too."""
    fake.serve(REPO, FILE, DATA)
    env = child_env(tmp_path, fake.endpoint)
    first = run_fetch(env, files_for(DATA))
    assert first["ok"], first
    blob = Path(os.path.realpath(first["path"]))
    st = blob.stat()
    other = blob.with_name("planted")
    other.write_bytes(BAD)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(other, blob)
    again = run_fetch(env, files_for(DATA))
    assert again["ok"] and again["sha256"] == sha256(DATA), again
    assert any("damaged" in n for n in notices(again)) and len(again["hash_calls"]) == 2


@pytest.mark.parametrize("lying_etag", [False, True], ids=["honest-etag", "lying-etag"])
def test_wrong_bytes_raise_checksum_error_and_leave_nothing_in_the_cache(fake, tmp_path, lying_etag):
    fake.serve(REPO, FILE, BAD, claimed_sha256=sha256(DATA) if lying_etag else None)
    env = child_env(tmp_path, fake.endpoint)

    result = run_fetch(env, files_for(DATA))
    message = assert_one_line_error(result, "ChecksumError", 7)
    assert FILE in message and sha256(DATA)[:12] in message and sha256(BAD)[:12] in message
    assert "removed" in message and "--model" in message
    assert cached_entries(tmp_path) == []
    assert not (tmp_path / "vbg" / "verified" / sha256(DATA)).exists()

    fake.serve(REPO, FILE, DATA)
    fixed = run_fetch(env, files_for(DATA))
    assert fixed["ok"], fixed
    assert fixed["sha256"] == sha256(DATA)


def test_a_size_change_upstream_is_caught_before_downloading(fake, tmp_path):
    fake.serve(REPO, FILE, DATA + b"more")
    result = run_fetch(child_env(tmp_path, fake.endpoint), files_for(DATA))
    message = assert_one_line_error(result, "ChecksumError", 7)
    assert str(len(DATA)) in message and "nothing was downloaded" in message
    assert fake.count("GET") == 0 and cached_entries(tmp_path) == []


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "GatedRepo"), (403, "GatedRepo"), (401, "RepoNotFound"), (403, None)],
    ids=["gated-401", "gated-403", "no-token", "bad-token"],
)
def test_gated_or_refused_is_an_access_error_naming_the_fix(fake, tmp_path, status, code):
    fake.fail(REPO, None, status, code, f"Access to model {REPO} is restricted.")
    result = run_fetch(child_env(tmp_path, fake.endpoint), files_for(DATA))
    message = assert_one_line_error(result, "ModelAccessError", 6)
    assert "gated" in message and "HF_TOKEN" in message and "--model" in message
    assert "https://huggingface.co/briaai/RMBG-1.4" in message
    assert notices(result) == []  # no licence notice for a download that never started
    assert fake.count() == 1 and "Retrying" not in result["stderr"]  # one request: fails at once


@pytest.mark.parametrize(("status", "code", "shown"),
                         [(500, None, "HTTP 500"), (503, None, "HTTP 503"), (404, "EntryNotFound", "HTTP 404")])
def test_other_http_errors_are_download_errors_with_the_status(fake, tmp_path, status, code, shown):
    fake.fail(REPO, FILE, status, code)
    result = run_fetch(child_env(tmp_path, fake.endpoint), files_for(DATA))
    message = assert_one_line_error(result, "ModelDownloadError", 5)
    assert shown in message and "--model" in message
    # one request, no retries (huggingface_hub's own would take 23 s)
    assert fake.count() == 1 and "Retrying" not in result["stderr"]


def test_offline_and_not_cached_fails_fast_without_requests(fake, tmp_path):
    fake.serve(REPO, FILE, DATA)
    result = run_fetch(child_env(tmp_path, fake.endpoint, HF_HUB_OFFLINE="1"), files_for(DATA))
    message = assert_one_line_error(result, "ModelDownloadError", 5)
    assert "HF_HUB_OFFLINE" in message and "not in the cache" in message and "--model" in message
    assert fake.count() == 0


def test_unreachable_endpoint_fails_fast(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = run_fetch(child_env(tmp_path, endpoint), files_for(DATA))
    message = assert_one_line_error(result, "ModelDownloadError", 5)
    assert "cannot connect" in message and "not in the cache" in message and "--model selfie" in message
    assert result["stderr"] == ""  # no "Retrying in ..." from huggingface_hub


def test_real_spec_without_network_fails_fast(tmp_path):
    # .invalid never resolves (RFC 2606), so this never downloads 176 MB on a machine with network.
    result = run_fetch(child_env(tmp_path, "https://vbg-no-such-host.invalid"), None)
    message = assert_one_line_error(result, "ModelDownloadError", 5)
    assert RMBG14.hub_files["fp32"].path in message and "cannot resolve" in message
    assert "--model PATH" in message and "--model selfie" in message
    assert "Retrying" not in result["stderr"]


def test_unwritable_hub_cache_is_an_output_error(fake, tmp_path):
    fake.serve(REPO, FILE, DATA)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = child_env(tmp_path, fake.endpoint, HF_HUB_CACHE=str(blocker / "hub"))
    result = run_fetch(env, files_for(DATA))
    message = assert_one_line_error(result, "OutputError", 10)
    assert str(blocker / "hub") in message and "HF_HOME" in message


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGINT delivery to a child process")
def test_interrupted_download_leaves_no_partial_file(fake, tmp_path):
    data = DATA * 16  # 128 KB, so the first chunk is written before the stall
    fake.serve(REPO, FILE, data)
    fake.stall(len(data) // 2)
    # the stall holds until the test's signal: the client's read time-out must not end it first on a busy machine
    env = child_env(tmp_path, fake.endpoint, HF_HUB_DOWNLOAD_TIMEOUT="600")
    proc = start_fetch(env, files_for(data))
    try:
        assert fake.stalled.wait(60), "the download never started"
        blobs = repo_cache(tmp_path) / "blobs"
        deadline = time.monotonic() + 60  # only a guard against a hang
        while not list(blobs.glob("*.incomplete")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(blobs.glob("*.incomplete")), "expected a partial file while downloading"
        proc.send_signal(signal.SIGINT)
        result = finish_fetch(proc)  # the stall holds for as long as the test does: no waiting it out
    finally:
        fake.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert result["error"] == "KeyboardInterrupt"
    assert cached_entries(tmp_path) == []

    fake.stall_after = None
    again = run_fetch(env, files_for(data))
    assert again["ok"], again
    assert again["sha256"] == sha256(data)


@pytest.mark.parametrize("planted", ["snapshots/zzzz", "snapshots"])
def test_a_snapshot_folder_linked_out_of_the_cache_is_not_read_or_removed(fake, tmp_path, planted):
    """A link planted in the cache (a shared HF_HOME), as a snapshot or as the snapshots folder,
    pointing at a folder of the user's that holds a file of the model's name: vbg took it for a
    damaged cached copy and deleted it. It is not the hub's: left alone. A planted snapshot beside
    the real ones leaves the download as it is; with the snapshots folder itself a link,
    huggingface_hub's own link for the file lands out there, and the run stops in one line."""
    fake.serve(REPO, FILE, DATA)
    mine = tmp_path / "mine"
    victim = (mine / "zzzz" if planted == "snapshots" else mine) / "onnx" / "model.onnx"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"my own model")
    link = repo_cache(tmp_path) / planted
    link.parent.mkdir(parents=True)
    link.symlink_to(mine, target_is_directory=True)
    result = run_fetch(child_env(tmp_path, fake.endpoint), files_for(DATA))
    if planted == "snapshots":
        assert_one_line_error(result, result["error"], result["exit_code"])
    else:
        assert result["ok"] and result["sha256"] == sha256(DATA), result
    assert victim.read_bytes() == b"my own model"
    assert not any("damaged" in n for n in notices(result))


def test_a_cached_copy_is_used_whatever_hf_endpoint_says(fake, tmp_path):
    """A cached model needs no endpoint: a malformed HF_ENDPOINT (no scheme, a port that is no
    number) stops a download with one line, never the cached copy from being used."""
    fake.serve(REPO, FILE, DATA)
    assert run_fetch(child_env(tmp_path, fake.endpoint), files_for(DATA))["ok"]
    for endpoint in ("huggingface.example", "http://localhost:notaport"):
        cached = run_fetch(child_env(tmp_path, endpoint), files_for(DATA))
        assert cached["ok"] and cached["sha256"] == sha256(DATA), cached
    fresh = tmp_path / "fresh"
    message = assert_one_line_error(run_fetch(child_env(fresh, "huggingface.example"), files_for(DATA)),
                                    "ModelDownloadError", 5)
    assert message.startswith("HF_ENDPOINT='huggingface.example' is not a URL to download from"), message


def _downloading(pid: int) -> bool:
    """Process ``pid`` has a partial blob (``*.incomplete``) open: it holds the download's lock."""
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd).endswith(".incomplete") for fd in fds.iterdir() if fd.is_symlink())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for which child downloads")
def test_a_run_that_stops_leaves_another_runs_download_alone(fake, tmp_path):
    """Two runs fetch the model at once (two vbg, or vbg and another tool on the same cache): one
    downloads under huggingface_hub's lock, the other waits for it. The waiting one is stopped
    (Ctrl-C; any failure does the same): it removed the partial file the other was writing, and
    that one then failed with "No such file or directory". The other run finishes its download."""
    data = DATA * 16
    fake.serve(REPO, FILE, data)
    fake.stall(len(data) // 2)
    fake.finish_on_release = True
    env = child_env(tmp_path, fake.endpoint, HF_HUB_DOWNLOAD_TIMEOUT="600")
    lock = tmp_path / "hf" / "hub" / ".locks" / repo_cache(tmp_path).name / f"{sha256(data)}.lock"
    lock.parent.mkdir(parents=True)
    # a third process holds the lock while both runs start, so both reach it (a run's own partial
    # files are the ones that appear after it starts its download) before either can download
    holder = subprocess.Popen([sys.executable, "-c", "import filelock, sys; lock = filelock.FileLock(sys.argv[1]); "
                               "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(lock)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    runs = []
    try:
        assert holder.stdout.readline().strip() == "held"
        runs = [start_fetch(env, files_for(data)) for _ in range(2)]
        deadline = time.monotonic() + 120  # only a guard against a hang
        while fake.count("HEAD") < 4 and time.monotonic() < deadline:  # each: vbg's look, then the library's
            time.sleep(0.02)
        assert fake.count("HEAD") >= 4, fake.requests
        holder.stdin.close()
        holder.wait(60)
        assert fake.stalled.wait(60), "neither run started downloading"
        while not any(_downloading(p.pid) for p in runs) and time.monotonic() < deadline:
            time.sleep(0.02)
        downloading = next(p for p in runs if _downloading(p.pid))
        waiting = next(p for p in runs if p is not downloading)
        waiting.send_signal(signal.SIGINT)
        stopped = finish_fetch(waiting)
        assert stopped["error"] == "KeyboardInterrupt", stopped
        assert list((repo_cache(tmp_path) / "blobs").glob("*.incomplete")), "the partial download was removed"
        fake.release.set()
        done = finish_fetch(downloading)
    finally:
        fake.release.set()
        for proc in (holder, *runs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert done["ok"], done
    assert done["sha256"] == sha256(data)


def test_cached_path_is_none_in_a_fresh_cache(tmp_path):
    result = run_fetch(child_env(tmp_path, f"http://127.0.0.1:{closed_port()}", HF_HUB_OFFLINE="1"),
                       files_for(DATA), check_cached=True)
    assert result["cached_before"] is None


_MODELS_CLI = r'''
import json, sys
from dataclasses import replace
from vbg.models import spec
from vbg.models.spec import HubFile
files = json.loads(sys.argv[1])
spec.MODELS["rmbg-1.4"] = replace(spec.MODELS["rmbg-1.4"], hub_files={k: HubFile(*v) for k, v in files.items()})
from vbg.cli import main
sys.exit(main(sys.argv[2:]))
'''


def test_vbg_models_download_fetches_now_and_lists_it_cached(fake, tmp_path):
    """``vbg models --download`` (before going offline): the licence said, the file checked and
    kept, its path printed; ``vbg models`` then lists it as cached, and a second run asks the hub
    nothing. A bundled model needs nothing."""
    fake.serve(REPO, FILE, DATA)
    env = child_env(tmp_path, fake.endpoint, HF_TOKEN="hf_vbg_test")

    def models(*args):
        return subprocess.run([sys.executable, "-c", _MODELS_CLI, json.dumps(files_for(DATA)), "models", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    got = models("--download")
    assert got.returncode == 0 and "Traceback" not in got.stderr, got.stderr
    path = Path(got.stdout.strip())
    assert path.read_bytes() == DATA and repo_cache(tmp_path).resolve() in path.resolve().parents
    assert "Licence:" in got.stderr and RMBG_LICENSE_URL in got.stderr
    assert "vbg: rmbg-1.4 (fp32) is on this machine" in got.stderr
    listing = models()
    assert "cached: fp32" in listing.stdout, listing.stdout
    asked = fake.count()
    again = models("--download")
    assert again.returncode == 0 and again.stdout == got.stdout and fake.count() == asked
    bundled = models("--download", "selfie")
    assert bundled.returncode == 0 and bundled.stdout.startswith("selfie comes with vbg: nothing to download")
