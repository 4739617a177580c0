"""Other libraries' messages stay off the terminal unless -v, and show with -v; a file name with a
newline is shown escaped, on its message's one line. Each message is triggered for real."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from media import person_clip_frames, write_clip

SEGMENT_ME = ("--model", "selfie")


def _vbg(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "vbg", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


def _only_vbg_lines(proc) -> None:
    """Every line on stderr is vbg's own ('vbg: ...'), or vbg process's per-file summary ('NAME -> OUT: ...')."""
    strays = [ln for ln in proc.stderr.splitlines() if not ln.startswith("vbg: ") and " -> " not in ln]
    assert not strays, proc.stderr


def tiff_with_unknown_tag(path: Path) -> Path:
    """An 8x8 grey-ish RGB TIFF (uncompressed, little-endian) carrying private tag 65000,
    which libtiff warns about ("Unknown field with tag 65000") when it reads the file."""
    w = h = 8
    pixels = np.full((h, w, 3), 128, np.uint8).tobytes()
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, None), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(pixels)), (65000, 3, 1, 7)]
    ifd_at = 8
    bps_at = ifd_at + 2 + 12 * len(entries) + 4
    data_at = bps_at + 6
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = {258: bps_at, 273: data_at}.get(tag, value)
        out += struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 and count == 1 else \
            struct.pack("<HHII", tag, kind, count, value)
    out += struct.pack("<I", 0) + struct.pack("<HHH", 8, 8, 8) + pixels
    path.write_bytes(bytes(out))
    return path


def onnx_that_ort_warns_about(path: Path) -> Path:
    """A 1x3xHxW -> 1x1xHxW model with an initializer also listed as a graph input and an unused
    initializer: ONNX Runtime warns about both while it loads it."""
    onnx = pytest.importorskip("onnx", reason="building the test model needs onnx (the torch extra)")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, np.float32), "W")
    unused = numpy_helper.from_array(np.zeros(4, np.float32), "unused")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W"], ["c"]), helper.make_node("Sigmoid", ["c"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [1, 3, 1, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 32, 32])], [weight, unused])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("noise") / "clip.mp4", [f for f, _ in person_clip_frames(6, (96, 128))])


def test_libtiff_warning_only_with_verbose(tmp_path):
    image = tiff_with_unknown_tag(tmp_path / "tagged.tif")
    plain = subprocess.run([sys.executable, "-c", f"import cv2; cv2.imread({str(image)!r}, cv2.IMREAD_UNCHANGED)"],
                           capture_output=True, text=True, env={**os.environ, "OPENCV_LOG_LEVEL": "INFO"}, timeout=120)
    if "65000" not in plain.stderr:  # OpenCV 4.10's libtiff, for one, says nothing about this tag
        pytest.skip("this OpenCV build's libtiff prints no warning for an unknown tag")
    quiet = _vbg("segment", image, *SEGMENT_ME, "-o", tmp_path / "m.png")
    assert quiet.returncode == 0, quiet.stderr
    _only_vbg_lines(quiet)
    loud = _vbg("segment", image, *SEGMENT_ME, "-o", tmp_path / "m2.png", "-v")
    assert loud.returncode == 0, loud.stderr
    assert "Unknown field with tag 65000" in loud.stderr


def test_x264_lines_only_with_verbose(clip, tmp_path):
    quiet = _vbg("process", clip, "-o", tmp_path / "a.mp4", *SEGMENT_ME)
    assert quiet.returncode == 0, quiet.stderr
    _only_vbg_lines(quiet)
    assert "using cpu capabilities" not in quiet.stderr
    loud = _vbg("process", clip, "-o", tmp_path / "b.mp4", *SEGMENT_ME, "-v")
    assert loud.returncode == 0, loud.stderr
    assert "libx264" in loud.stderr and "using cpu capabilities" in loud.stderr  # x264's own first line


def test_onnx_runtime_model_warnings_only_with_verbose(tmp_path):
    model = onnx_that_ort_warns_about(tmp_path / "warns.onnx")
    image = tiff_with_unknown_tag(tmp_path / "i.tif")
    quiet = _vbg("segment", image, "--model", model, "-o", tmp_path / "m.png")
    assert quiet.returncode == 0, quiet.stderr
    _only_vbg_lines(quiet)
    loud = _vbg("segment", image, "--model", model, "-o", tmp_path / "m2.png", "-v")
    assert loud.returncode == 0, loud.stderr
    assert "appears in graph inputs" in loud.stderr and "Removing initializer 'unused'" in loud.stderr


def test_onnx_runtime_import_message_only_with_verbose(tmp_path):
    """ONNX Runtime prints from C while it is imported when it cannot store its telemetry id
    (a home below a file: nothing can be created there)."""
    (tmp_path / "file").write_bytes(b"")
    env = {"HOME": str(tmp_path / "file" / "home"), "XDG_CACHE_HOME": str(tmp_path / "file" / "xdg"),
           "VBG_CACHE_DIR": str(tmp_path / "file" / "vbg"),
           "ORT_DISABLE_TELEMETRY": "0"}  # the user's choice: its telemetry on, as ONNX Runtime has it
    bare = subprocess.run([sys.executable, "-c", "import onnxruntime"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    image = tiff_with_unknown_tag(tmp_path / "i.tif")
    quiet = _vbg("segment", image, *SEGMENT_ME, "-o", tmp_path / "m.png", env=env)
    assert quiet.returncode == 0, quiet.stderr
    _only_vbg_lines(quiet)
    if not bare.stderr.strip():
        pytest.skip("this ONNX Runtime prints nothing at import in a read-only home")
    loud = _vbg("segment", image, *SEGMENT_ME, "-o", tmp_path / "m2.png", "-v", env=env)
    assert loud.returncode == 0, loud.stderr
    assert bare.stderr.strip().splitlines()[0][-40:] in loud.stderr


def test_onnx_runtime_reports_nothing_and_writes_nothing_unless_the_user_asks(tmp_path):
    """ONNX Runtime 1.31's import starts its usage telemetry: a device id and a database under
    ~/.cache/Microsoft, and $TMPDIR/.ses written through a link planted there (a shared TMPDIR: any
    file of the user's overwritten). vbg runs it with the telemetry off: nothing written in the
    home or the temporary folder, the planted link's target untouched. A user who set
    ORT_DISABLE_TELEMETRY=0 gets ONNX Runtime's own behaviour, whatever that version does."""
    victim = tmp_path / "precious.txt"
    victim.write_text("mine")
    image = tiff_with_unknown_tag(tmp_path / "i.tif")
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}

    def written(*cmd: str, **extra: str) -> list[str]:
        home, tmp = tmp_path / "home", tmp_path / "tmp"
        victim.write_text("mine")
        for d in (home, tmp):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
        (tmp / ".ses").symlink_to(victim)
        full = {**env, "HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(home / ".cache"),
                "VBG_CACHE_DIR": str(tmp_path / "vbg"), **extra}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        made = [str(p.relative_to(tmp_path)) for d in (home, tmp) for p in d.rglob("*")
                if p.is_file() and not p.is_symlink()]
        return sorted(made + (["precious.txt"] if victim.read_text() != "mine" else []))

    vbg = (sys.executable, "-m", "vbg", "segment", str(image), *SEGMENT_ME, "-o", str(tmp_path / "m.png"),
           "--overwrite")
    assert written(*vbg) == []
    own = written(sys.executable, "-c", "import onnxruntime", ORT_DISABLE_TELEMETRY="0")
    assert written(*vbg, ORT_DISABLE_TELEMETRY="0") == own  # the user's choice: the library's own doing


def test_doctor_prints_only_its_report(tmp_path):
    """vbg doctor imports every library (ONNX Runtime among them) with a read-only home."""
    (tmp_path / "file").write_bytes(b"")
    env = {"HOME": str(tmp_path / "file" / "home"), "XDG_CACHE_HOME": str(tmp_path / "file" / "xdg"),
           "VBG_CACHE_DIR": str(tmp_path / "file" / "vbg"), "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}
    proc = _vbg("doctor", env=env)
    assert proc.stderr == ""


NEWLINE_NAME = "a\nb.mp4"


def test_a_name_with_a_newline_is_shown_escaped_on_one_line(clip, tmp_path):
    named = tmp_path / NEWLINE_NAME
    named.write_bytes(clip.read_bytes())
    # progress summary and log lines of a run that works
    ok = _vbg("process", NEWLINE_NAME, "-o", "out.mp4", *SEGMENT_ME, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    _only_vbg_lines(ok)
    assert any(ln.startswith("a\\nb.mp4 -> out.mp4: ") for ln in ok.stderr.splitlines()), ok.stderr
    # the error of a batch member, and of a missing image
    bad = _vbg("process", NEWLINE_NAME, "c\nd.mp4", "-o", "outs", *SEGMENT_ME, cwd=tmp_path)
    assert bad.returncode == 9
    _only_vbg_lines(bad)
    assert "vbg: error: c\\nd.mp4: no such file" in bad.stderr, bad.stderr
    seg = _vbg("segment", "x\ny.png", *SEGMENT_ME, "-o", "m.png", cwd=tmp_path)
    assert seg.returncode == 9
    _only_vbg_lines(seg)
    assert "x\\ny.png" in seg.stderr


def test_progress_bar_escapes_the_name():
    import io

    from vbg.clock import FakeClock
    from vbg.progress import Progress

    out = io.StringIO()
    p = Progress("evil\n\x1b[31mname.mp4", 10, stream=out, clock=FakeClock(), interval=0.0)
    p.update(5)
    p.finish("evil\n\x1b[31mname.mp4 -> out.mp4: 10 frames")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(ln.startswith("evil\\n\\x1b[31mname.mp4") for ln in lines), lines


class Screen:
    """What a terminal of ``cols`` columns shows after some output: text wraps at the last column
    (the next character goes to a new row), ``\r`` returns to the start of the cursor's row and
    ``\n`` goes to the next one. An escape code would show as its characters."""

    def __init__(self, cols: int) -> None:
        self.cols, self.rows, self.x, self.y = cols, [[]], 0, 0

    def feed(self, text: str) -> None:
        for c in text:
            if c == "\r":
                self.x = 0
            elif c == "\n":
                self.x, self.y = 0, self.y + 1
            else:
                if self.x == self.cols:  # the pending wrap of a full row
                    self.x, self.y = 0, self.y + 1
                while len(self.rows) <= self.y:
                    self.rows.append([])
                row = self.rows[self.y]
                row.extend(" " * (self.x + 1 - len(row)))
                row[self.x] = c
                self.x += 1
            while len(self.rows) <= self.y:
                self.rows.append([])

    def lines(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows if "".join(r).strip()]


def _on_a_terminal(argv: list[str], cols: int, cwd: Path, timeout: float = 300) -> tuple[int, list[str]]:
    """Run vbg with stderr on a pseudo-terminal ``cols`` columns wide (its own width, no COLUMNS):
    the exit code and the screen's rows at the end."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([sys.executable, "-m", "vbg", *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout  # only a hang guard: a hung vbg fails the test, not the suite
    while True:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            proc.kill()
            os.close(master)
            raise AssertionError(f"vbg {' '.join(argv)} did not finish in {timeout} s: {bytes(out)[-2000:]!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal has closed it
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    rc = proc.wait(timeout)
    screen = Screen(cols)
    screen.feed(out.decode("utf-8", "replace").replace("\r\n", "\n"))  # the tty's ONLCR
    return rc, screen.lines()


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_the_progress_bar_and_the_status_line_fit_a_narrow_terminal(tmp_path):
    """On a 50-column terminal the bar of ``vbg process`` and the live status line are redrawn
    in one row: the screen ends with the log lines and the summary, no piece of a bar or of a
    status line left behind. The 121-cell status line and a long file name's bar wrapped, and
    each redraw (``\r`` returns to the start of the last row only) left a row behind."""
    name = "a lecture recording with a long name, 2024-05-01.mp4"
    write_clip(tmp_path / name, [f for f, _ in person_clip_frames(90, (96, 128))])
    rc, rows = _on_a_terminal(["process", name, "-o", "out.mp4", "--model", "selfie"], 50, tmp_path)
    assert rc == 0, rows
    assert not [r for r in rows if re.search(r"\d+/\d+ frames", r)], rows  # no piece of a bar left
    screen = "".join(rows).replace(" ", "")  # rows as one text (a long line wraps)
    assert f"{name}->out.mp4:90framesin".replace(" ", "") in screen and screen.endswith("ms/frame)"), rows
    assert all("\x1b" not in r and "[2K" not in r for r in rows), rows
    rc, rows = _on_a_terminal(["--source", name, "--loop", "--model", "selfie", "--no-vcam", "--record",
                               "live.mp4", "--duration", "3"], 50, tmp_path)
    assert rc == 0, rows
    status = [r for r in rows if r.startswith("out ") or re.search(r"(fps|ms) \|", r)]
    assert len(status) == 1 and status[0].startswith("out ") and len(status[0]) <= 49, rows


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "-v"])
def test_huggingface_hub_logging_and_bars_follow_verbose(verbose):
    """huggingface_hub's own stderr logger and its download bars (tqdm): off unless -v. (A real
    download with a bar needs the 176 MB file, so this looks at the switches vbg sets.)"""
    pytest.importorskip("huggingface_hub")
    code = ("import logging, sys; from vbg.cli import main; main(['models'] + sys.argv[1:]); "
            "import huggingface_hub.utils as u; "
            "print(u.are_progress_bars_disabled(), logging.getLogger('huggingface_hub').getEffectiveLevel())")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-c", code, *(["-v"] if verbose else [])], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    bars_off, level = proc.stdout.split()[-2:]
    assert bars_off == str(not verbose)
    assert (int(level) >= 40) == (not verbose)  # ERROR and above only, unless -v


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
@pytest.mark.parametrize(("flags", "bars"), [([], True), (["-q"], False)], ids=["terminal", "terminal -q"])
def test_a_download_shows_its_bar_on_a_terminal(flags, bars):
    """On a terminal a model download shows huggingface_hub's bar (176 MB with nothing moving looked
    like a hang); its log lines stay off, and ``-q`` or a pipe (the test above) has no bar."""
    import pty

    pytest.importorskip("huggingface_hub")
    code = ("import logging, sys; from vbg.cli import main; main(['models'] + sys.argv[1:]); "
            "import huggingface_hub.utils as u; "
            "print(u.are_progress_bars_disabled(), logging.getLogger('huggingface_hub').getEffectiveLevel())")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-c", code, *flags], stdout=subprocess.PIPE, stderr=slave,
                              stdin=subprocess.DEVNULL, text=True, env=env, timeout=120)
    finally:
        os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    bars_off, level = proc.stdout.split()[-2:]
    assert bars_off == str(not bars) and int(level) >= 40


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_a_gpu_provider_that_cannot_load_stays_off_stdout_and_stderr(clip, tmp_path, device):
    """Without a GPU, --device cuda falls back to the CPU: ONNX Runtime's C++ errors ("Failed to load
    library") and the "EP Error ... Falling back" block its Python part prints on *stdout* must reach
    neither the JSON lines nor the terminal; vbg's own warning says it; -v shows ONNX Runtime's words."""
    from vbg.inference.onnx_backend import gpu_present

    if gpu_present():
        pytest.skip("CUDA loads on this machine: there is no fallback to report")
    env = {"VBG_CACHE_DIR": str(tmp_path / "cache")}  # TensorRT's engine cache
    quiet = _vbg("process", clip, "-o", tmp_path / "a.mp4", *SEGMENT_ME, "--device", device, "--json", env=env)
    assert quiet.returncode == 0, quiet.stderr
    events = [json.loads(ln) for ln in quiet.stdout.splitlines()]  # every line is JSON
    assert events[0]["event"] == "start" and events[-1]["event"] == "done"
    _only_vbg_lines(quiet)
    name = {"cuda": "CUDA", "tensorrt": "Tensorrt"}[device]
    assert f"{name} is not usable here, so the model runs on CPU" in quiet.stderr
    assert "no NVIDIA driver is loaded" in quiet.stderr  # the missing layer, named by vbg
    loud = _vbg("process", clip, "-o", tmp_path / "b.mp4", *SEGMENT_ME, "--device", device, "-v", env=env)
    assert loud.returncode == 0, loud.stderr
    assert "onnxruntime" in loud.stderr and "Failed to load library" in loud.stderr


def png_with_a_bad_text_chunk(path: Path) -> Path:
    """A valid PNG with a tEXt chunk whose CRC is wrong: libpng drops the chunk and prints
    "libpng warning: tEXt: CRC error" from C."""
    import zlib

    import cv2

    ok, buf = cv2.imencode(".png", np.full((32, 32, 3), 100, np.uint8))
    data = bytes(buf)
    at = data.index(b"IDAT") - 4
    text = b"Comment\x00hello"
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", zlib.crc32(b"tEXt" + text) ^ 1)
    path.write_bytes(data[:at] + chunk + data[at:])
    return path


@pytest.mark.parametrize("use", ["segment", "background"])
def test_libpng_warning_only_with_verbose(clip, tmp_path, use):
    image = png_with_a_bad_text_chunk(tmp_path / "crc.png")

    def run(*extra, out):
        if use == "segment":
            return _vbg("segment", image, *SEGMENT_ME, "-o", tmp_path / f"{out}.png", *extra)
        return _vbg("process", clip, "--background", image, *SEGMENT_ME, "-o", tmp_path / f"{out}.mp4", *extra)

    quiet = run(out="a")
    assert quiet.returncode == 0, quiet.stderr
    _only_vbg_lines(quiet)
    loud = run("-v", out="b")
    assert loud.returncode == 0, loud.stderr
    assert "libpng warning: tEXt: CRC error" in loud.stderr
