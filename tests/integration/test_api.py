"""The Python API (vbg.api): the README's examples run as they are, and the misuse they meet."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import PEOPLE, iou, read_alpha, read_rgb
from fakecam import fake_camera
from lockstep import wait_until
from media import person_clip_frames, read_frames, write_clip

ROOT = Path(__file__).resolve().parents[2]
PHOTO = PEOPLE / "example03_background01.jpg"
TRUTH = PEOPLE / "example03_background01_alpha.png"
CLIP_FRAMES = 12


def readme_examples() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The files the README's examples name, in the current folder: person.jpg (a person with
    exact alpha) and talk.mp4 (12 frames of a person swaying over a room)."""
    shutil.copy(PHOTO, tmp_path / "person.jpg")
    write_clip(tmp_path / "talk.mp4", (f for f, _ in person_clip_frames(CLIP_FRAMES, (180, 320))))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_example(index: int) -> dict:
    examples = readme_examples()
    assert len(examples) == 3, "the README shows one example each for Segmenter, LiveFilter and process_file"
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(examples[index], f"README.md Python API example {index + 1}", "exec"), namespace)
    return namespace


def test_readme_segmenter_example_masks_the_person(workdir):
    ns = run_example(0)
    alpha = ns["alpha"]
    truth = read_alpha(TRUTH)
    assert alpha.dtype == np.float32 and alpha.shape == truth.shape  # the photo's own size
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert iou(alpha, truth) > 0.8
    written = read_alpha(workdir / "mask.png")
    assert written.shape == truth.shape and iou(written, truth) > 0.8


def test_readme_live_filter_example_puts_the_person_on_the_colour(workdir):
    ns = run_example(1)
    stats, last = ns["stats"], ns["sink"].last
    assert 0 < stats.out_frames <= 90
    assert last is not None and last.shape == (361, 640, 3)
    truth, photo = read_alpha(TRUTH), read_rgb(PHOTO)
    chroma = np.array([0, 177, 64])
    background, person = truth < 0.02, truth > 0.98
    # The room is replaced by the colour; the person is kept as the camera saw them.
    assert np.mean(np.abs(last[background].astype(int) - chroma).max(axis=1) < 40) > 0.9
    assert np.mean(np.abs(last[person].astype(int) - photo[person]).max(axis=1) < 40) > 0.9


def test_readme_process_file_example_writes_a_playable_video(workdir, capsys):
    ns = run_example(2)
    result = ns["result"]
    out = workdir / "talk-beach.mp4"
    assert Path(result.output) == Path("talk-beach.mp4") and result.frames == CLIP_FRAMES
    frames = read_frames(out)
    assert len(frames) == CLIP_FRAMES and frames[0].shape == (180, 320, 3)
    source = read_frames(workdir / "talk.mp4")
    corner = (slice(0, 30), slice(0, 30))  # the room's corner: the beach there now
    assert np.abs(frames[0][corner].astype(int) - source[0][corner]).mean() > 20
    assert f"{CLIP_FRAMES} frames -> talk-beach.mp4" in capsys.readouterr().out
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_import_vbg_loads_no_heavy_library():
    code = textwrap.dedent("""
        import sys
        heavy = ("cv2", "onnxruntime", "av", "pyvirtualcam", "numpy", "huggingface_hub")
        loaded = lambda: sorted(m for m in heavy if m in sys.modules)
        import vbg
        print(loaded())
        from vbg import Segmenter, LiveFilter, process_file, LiveConfig, VbgError
        print(loaded())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    bare, named = proc.stdout.splitlines()
    assert bare == "[]"
    assert named in ("[]", "['numpy']")  # numpy at most (the API's arrays); the model, codecs and camera wait


def test_every_exported_name_is_there():
    import vbg

    for name in vbg.__all__:
        assert getattr(vbg, name) is not None
        assert name in dir(vbg)
    assert vbg.Segmenter.__module__ == "vbg.api" and vbg.Source.__module__ == "vbg.capture"
    with pytest.raises(AttributeError, match="no attribute 'Segmentor'"):
        vbg.Segmentor  # noqa: B018
    assert (ROOT / "vbg" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()  # shipped as package data


def test_segmenter_misuse_is_refused_clearly():
    from vbg import ConfigError, ModelError, Segmenter

    with pytest.raises(ConfigError, match="unknown option 'devise'"):
        Segmenter("selfie", devise="cpu")
    with pytest.raises(ConfigError, match="device 'gpu' is not known"):
        Segmenter("selfie", device="gpu")
    with pytest.raises(ConfigError, match="threads 0 is out of range"):
        Segmenter("selfie", threads=0)
    with pytest.raises(ModelError, match="does not exist"):
        Segmenter("no-such-model.onnx")
    seg = Segmenter("selfie", device="cpu")
    rgb = read_rgb(PHOTO)
    with pytest.raises(TypeError, match="uint8"):
        seg.segment(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        seg.segment(rgb[:, :, 0])
    assert seg.segment(rgb, dtype=np.uint8).dtype == np.uint8
    for same in ("uint8", np.dtype("uint8")):  # numpy's other names of it (refused as "not numpy.uint8")
        assert seg.segment(rgb, dtype=same).dtype == np.uint8
    assert seg.segment(rgb, dtype=np.dtype(np.float32)).dtype == np.float32
    with pytest.raises(TypeError, match="dtype must be numpy.float32 or numpy.uint8, not <class 'int'>"):
        seg.segment(rgb, dtype=int)
    assert seg.providers == ["CPUExecutionProvider"] and "selfie" in seg.model
    seg.close()
    seg.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        seg.segment(rgb)


def test_process_file_refuses_bad_input_and_never_touches_an_input(workdir):
    from vbg import ConfigError, InputError, OutputError, process_file

    talk = workdir / "talk.mp4"
    before = talk.read_bytes()
    with pytest.raises(InputError, match="no such file") as missing:
        process_file("missing.mp4", "out.mp4", model="selfie")
    assert isinstance(missing.value, OSError)
    with pytest.raises(OutputError, match="is the input"):
        process_file("talk.mp4", "talk.mp4", model="selfie", overwrite=True)
    with pytest.raises(ConfigError, match="did you mean smoothing"):
        process_file("talk.mp4", "out.mp4", smoothng=2)
    (workdir / "taken.mp4").write_bytes(b"mine")
    with pytest.raises(OutputError, match="already exists"):
        process_file("talk.mp4", "taken.mp4", model="selfie")
    assert (workdir / "taken.mp4").read_bytes() == b"mine" and talk.read_bytes() == before
    seen = []
    result = process_file("talk.mp4", "matte", mode="matte", model="selfie", workers=1,
                          on_progress=lambda done, total: seen.append((done, total)))
    assert result.frames == CLIP_FRAMES and len(list((workdir / "matte").glob("*.png"))) == CLIP_FRAMES
    assert seen[-1] == (CLIP_FRAMES, CLIP_FRAMES)
    counts = [done for done, _ in seen]  # each count once, as frames are written (it repeated counts)
    assert counts == sorted(set(counts)), counts


def test_on_progress_hears_each_count_once():
    """The pipeline reports after each composited frame, and the writer may not have written
    another since: the caller's function heard the same count again (as the writer thread
    happened to lag)."""
    from vbg.api import _Progress

    heard: list[tuple[int, int | None]] = []
    progress = _Progress(lambda done, total: heard.append((done, total)))
    progress.total = 3
    for done in (0, 0, 1, 1, 1, 2, 3, 3):
        progress.update(done)
    assert heard == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_live_filter_on_a_thread_feeds_the_virtual_camera_until_stopped():
    from vbg import LiveFilter

    with fake_camera("vbg-test-api") as cam:
        live = LiveFilter("demo", vcam_backend="vbg-test-api", blur=1.0, model="selfie")
        assert live.config.output.vcam  # no sink of the caller's: the virtual camera, as vbg does
        live.start()
        assert live.wait_started(60)
        assert live.running

        def frames_sent() -> bool:
            return bool(cam.instances) and cam.instances[0].sent >= 5

        wait_until(frames_sent, "five frames sent to the virtual camera")
        live.stop()
        stats = live.wait(60)
    assert frames_sent() and stats.out_frames > 0
    assert not live.running and cam.instances[0].closed == 1
    with pytest.raises(RuntimeError, match="runs once"):
        live.run()


class Frames:
    """A Source of ``n`` grey 64x48 frames, read as fast as they are asked for."""

    live = False
    width, height, fps = 64, 48, 30.0

    def __init__(self, n):
        self.left, self.closed = n, 0

    def read(self):
        if self.left == 0:
            return None
        self.left -= 1
        return np.full((48, 64, 3), 100, np.uint8)

    def close(self):
        self.closed += 1


def test_live_filter_checks_at_construction_and_closes_what_it_was_given(workdir):
    from vbg import InputError, LiveFilter, Problems, SinkBase

    class Count(SinkBase):
        def __init__(self):
            super().__init__()
            self.n, self.closed = 0, 0

        def send(self, composite):
            assert composite.image.shape == (48, 64, 3)
            self.n += 1

        def close(self):
            self.closed += 1

    with pytest.raises(InputError, match="no-such.jpg"):
        LiveFilter(Frames(3), sinks=[Count()], background="no-such.jpg", model="selfie")
    with pytest.raises(Problems) as both:
        LiveFilter(Frames(3), sinks=[Count()], background="no-such.jpg", model="no-such.onnx")
    assert len(both.value.errors) == 2
    with pytest.raises(TypeError, match="not a Sink"):
        LiveFilter(Frames(3), sinks=[object()])
    source, sink = Frames(20), Count()
    with LiveFilter(source, sinks=[sink], color="white", model="selfie") as live:
        assert not live.config.output.vcam  # the caller's sink is the output
        stats = live.run()  # a file-like source: it ends when the frames do
    assert 0 < sink.n == stats.out_frames <= 20
    assert source.closed == 1 and sink.closed == 1  # the caller's source was closed twice (a second close may raise)


def test_a_sink_with_send_alone_or_its_own_init_runs(workdir):
    """README: "vbg.SinkBase gives all but send". A sink with ``send`` alone ended the run with a
    bare NotImplementedError (SinkBase.close), and one whose ``__init__`` did not call
    SinkBase's failed on an AttributeError (_failure) deep in the run."""
    from vbg import LiveFilter, SinkBase

    class OnlySend(SinkBase):
        def __init__(self):  # no super().__init__()
            self.n = 0

        def send(self, composite):
            self.n += 1

    sink = OnlySend()
    stats = LiveFilter(Frames(8), sinks=[sink], color="white", model="selfie").run()
    assert sink.n == stats.out_frames > 0


def test_wrong_argument_types_are_named_and_a_failing_callback_keeps_the_frames(workdir):
    """A wrong type is a TypeError naming the argument (it was os.fspath's "expected str, bytes or
    os.PathLike object", or "'object' object is not iterable"); ``on_progress`` that is not a
    function is refused before any frame; one that raises stops the job with its own exception,
    which names where the frames before it are kept (they were kept, and not said)."""
    from vbg import LiveFilter, Segmenter, process_file

    with pytest.raises(TypeError, match=r"process_file\(input=...\) takes a path \(str or os.PathLike\), not int"):
        process_file(5, "o.mp4", model="selfie")
    with pytest.raises(TypeError, match=r"process_file\(output=...\) takes a path"):
        process_file("talk.mp4", None, model="selfie")
    with pytest.raises(TypeError, match=r"Segmenter\(model=...\) takes a path"):
        Segmenter(5)
    with pytest.raises(TypeError, match=r"LiveFilter\(sinks=...\) takes a list of sinks, not object"):
        LiveFilter("demo", sinks=object(), model="selfie")
    with pytest.raises(TypeError, match=r"on_progress=...\) takes a function of \(done, total\), not int"):
        process_file("talk.mp4", "o.mp4", model="selfie", on_progress=5)
    with pytest.raises(TypeError, match=r"process_file\(overwrite=...\) takes True or False, not str"):
        process_file("talk.mp4", "o.mp4", model="selfie", overwrite="no")  # it was taken as True
    assert not (workdir / "o.mp4").exists() and not list(workdir.glob("o.partial*"))

    def stop_at_five(done, total):
        if done >= 5:
            raise RuntimeError("enough")

    with pytest.raises(RuntimeError, match="enough") as stopped:
        process_file("talk.mp4", "o.mp4", model="selfie", workers=1, on_progress=stop_at_five)
    kept = list(workdir.glob("o.partial*.mp4"))
    assert len(kept) == 1 and not (workdir / "o.mp4").exists()
    if sys.version_info >= (3, 11):  # exception notes
        assert any(note.endswith(f"kept in {kept[0].name}") for note in stopped.value.__notes__), stopped.value.__notes__


def test_library_notes_print_nothing_until_the_program_sets_up_logging():
    """README: notes go to the "vbg" logger, nothing prints. Without a handler of vbg's, Python's
    last resort printed warnings (a model fallback, the CUDA line) to stderr."""
    code = ("import logging, vbg; logging.getLogger('vbg.models').warning('a note'); "
            "logging.basicConfig(); logging.getLogger('vbg.models').warning('now shown')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "WARNING:vbg.models:now shown\n", proc.stderr


def test_layer_check_refuses_an_import_of_the_api(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import check_layers
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert check_layers.check(ROOT) == []
    (tmp_path / "vbg" / "sinks").mkdir(parents=True)
    (tmp_path / "vbg" / "__init__.py").write_text("from .api import Segmenter\n")
    (tmp_path / "vbg" / "sinks" / "__init__.py").write_text("def f():\n    from ..api import LiveFilter\n")
    problems = check_layers.check(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(os.path.join("vbg", "sinks", "__init__.py") + ":2:")
    assert "Python API" in problems[0]


# ---------------------------------------------------------------------------- the API audit's findings
def _small_person(x0: int, scale: float = 0.25, size: int = 256) -> np.ndarray:
    """A person standing small in an office, ``x0`` from the left: the person crop looks again."""
    import cv2

    rgba = cv2.cvtColor(cv2.imread(str(PEOPLE / "example03_rgba.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    room = cv2.cvtColor(cv2.imread(str(ROOT / "vbg/assets/backgrounds/office.jpg")), cv2.COLOR_BGR2RGB)
    canvas = cv2.resize(room, (size, size)).astype(np.float32)
    h, w = rgba.shape[:2]
    nh, nw = int(h * scale), int(w * scale)
    p = cv2.resize(rgba, (nw, nh)).astype(np.float32)
    a = p[..., 3:] / 255
    canvas[size - nh:, x0:x0 + nw] = p[..., :3] * a + canvas[size - nh:, x0:x0 + nw] * (1 - a)
    return np.ascontiguousarray(canvas.round().astype(np.uint8))


def test_a_kept_mask_is_not_overwritten_by_the_next_one():
    """README: "a new array each call". A small person's mask (the crop's second look) came back in
    the crop's own buffer, so the next picture's mask overwrote a mask the caller had kept."""
    from vbg import Segmenter

    with Segmenter("selfie") as seg:
        first = seg.segment(_small_person(5))
        kept = first.copy()
        second = seg.segment(_small_person(150))
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)
    assert iou(first > 0.5, second > 0.5) < 0.5  # two masks of the person in two places


def test_threads_sharing_a_segmenter_get_their_own_masks():
    """Two threads calling one Segmenter: each gets its own picture's mask (they got each other's,
    now and then, unsaid: the input buffers were shared)."""
    import threading

    from vbg import Segmenter

    photo = read_rgb(PHOTO)
    pictures = [photo, np.ascontiguousarray(photo[:, ::-1]), _small_person(5), _small_person(150)]
    with Segmenter("selfie") as seg:
        expected = [seg.segment(p) for p in pictures]
        wrong: list = []

        def work(k: int) -> None:
            for i in range(12):
                j = (k + 2 * i) % len(pictures)
                if not np.array_equal(seg.segment(pictures[j]), expected[j]):
                    wrong.append(j)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert not any(t.is_alive() for t in threads) and wrong == []


def test_a_run_that_fails_starting_ends_wait_started_and_closes_the_callers_sinks(workdir):
    """A run that fails before frames flow (a size the selfie model cannot take): ``wait_started()``
    says False (without a time-out it waited for ever) and the caller's sinks are closed as its
    source is (they were left open)."""
    import threading

    from vbg import ConfigError, LiveFilter, SinkBase

    class Count(SinkBase):
        def __init__(self):
            super().__init__()
            self.closed = 0

        def send(self, composite):
            pass

        def close(self):
            self.closed += 1

    source, sink = Frames(30), Count()
    live = LiveFilter(source, sinks=[sink], model="selfie", size=512).start()
    said: list = []
    waiter = threading.Thread(target=lambda: said.append(live.wait_started()), daemon=True)
    waiter.start()
    waiter.join(120)  # bounds a hang only
    assert said == [False]
    with pytest.raises(ConfigError, match="512"):
        live.wait(120)
    assert source.closed == 1 and sink.closed == 1
    # a source of vbg's own that fails to open (a file damaged after the checks): the sinks close too
    from vbg import SourceError

    clip = workdir / "gone.mp4"
    clip.write_bytes((workdir / "talk.mp4").read_bytes())
    sink = Count()
    live = LiveFilter(str(clip), sinks=[sink], model="selfie")
    clip.write_bytes(b"\0" * 64)
    with pytest.raises(SourceError):
        live.run()
    assert sink.closed == 1


def test_record_takes_a_path_object_and_names_a_wrong_type(workdir):
    from pathlib import Path as P

    from vbg import LiveFilter

    stats = LiveFilter(Frames(6), model="selfie", color="white", record=P("rec.mp4")).run()
    assert stats.out_frames > 0 and len(read_frames(workdir / "rec.mp4")) == stats.out_frames
    with pytest.raises(TypeError, match=r"LiveFilter\(record=...\) takes a path"):
        LiveFilter(Frames(6), model="selfie", record=5)  # it was "--record 5: unknown file type"


def test_source_is_a_protocol_isinstance_can_check():
    import vbg

    assert isinstance(Frames(1), vbg.Source) and not isinstance(object(), vbg.Source)  # it raised TypeError


def test_a_callback_raising_on_the_last_count_says_the_output_is_complete(workdir):
    """``on_progress`` raising on its last call (every frame written): the job had finished and the
    output is in place; the exception says so (it read as a stopped job, with no partial named)."""
    from vbg import process_file

    def cancel_at_the_end(done, total):
        if done == CLIP_FRAMES:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled") as late:
        process_file("talk.mp4", "o.mp4", model="selfie", workers=1, on_progress=cancel_at_the_end)
    assert len(read_frames(workdir / "o.mp4")) == CLIP_FRAMES
    if sys.version_info >= (3, 11):
        assert any("o.mp4 is complete" in note for note in late.value.__notes__), late.value.__notes__


def test_a_source_that_breaks_its_contract_is_named(workdir):
    """A Source whose size or rate is no usable number, or whose read() gives something other than
    an H x W x 3 RGB uint8 array: an error naming what is wrong, the source and the sinks closed. They
    were a ZeroDivisionError, an AttributeError on a list, a compositor's message on a grey frame."""
    from vbg import LiveFilter, SinkBase

    class Off(Frames):
        def __init__(self, n, image=None, **attrs):
            super().__init__(n)
            self.image = image
            self.__dict__.update(attrs)

        def read(self):
            frame = super().read()
            return frame if frame is None or self.image is None else self.image

    class Nothing(SinkBase):
        def send(self, composite):
            pass

    for attrs, error, words in (({"fps": 0}, ValueError, "Off.fps is 0"), ({"fps": None}, TypeError, "Off.fps is None"),
                                ({"width": 64.0}, TypeError, "Off.width is 64.0"),
                                ({"height": 0}, ValueError, "Off.height is 0")):
        with pytest.raises(error, match=re.escape(words)):
            LiveFilter(Off(3, **attrs), sinks=[Nothing()], model="selfie")
    from fractions import Fraction

    stats = LiveFilter(Off(4, fps=Fraction(30000, 1001)), sinks=[Nothing()], model="selfie", color="white").run()
    assert stats.out_frames > 0  # a rate as PyAV gives one (stream.average_rate) is a number
    for image, words in ((np.zeros((48, 64), np.uint8), "a 48x64 uint8 array"),
                         (np.zeros((48, 64, 3), np.float32), "a 48x64x3 float32 array"),
                         (np.zeros((48, 64, 3), np.uint8).tolist(), "a list")):
        source = Off(5, image)
        with pytest.raises(TypeError, match=f"the source's read\\(\\) returned {words}: a Source returns an H x W x 3"):
            LiveFilter(source, sinks=[Nothing()], model="selfie", color="white").run()
        assert source.closed == 1


def test_wait_started_says_true_for_a_run_that_started_and_has_ended(workdir):
    """A short run asked about after its end (a caller that checks late): its model loaded and its
    frames flowed, so ``wait_started()`` is True, as its docstring says (it said False, and
    ``if not live.wait_started(): fail`` failed every short run)."""
    from vbg import LiveFilter, SinkBase

    class Count(SinkBase):
        n = 0

        def send(self, composite):
            self.n += 1

    sink = Count()
    live = LiveFilter(Frames(10), sinks=[sink], model="selfie").start()
    stats = live.wait(120)
    assert stats.out_frames == sink.n > 0
    assert live.wait_started(0) is True


def test_reopen_that_is_not_a_function_is_named_at_construction(workdir):
    """``reopen=5`` was taken, and a lost source then "reopened" by calling 5 for ever, the only
    trace a debug line."""
    from vbg import LiveFilter, SinkBase

    class Nul(SinkBase):
        def send(self, composite):
            pass

    with pytest.raises(TypeError, match=r"LiveFilter\(reopen=...\) takes a function .*not int"):
        LiveFilter(Frames(3), sinks=[Nul()], model="selfie", reopen=5)
