"""vbg's Python API: the three things people embed, over the same code the CLI runs.

    from vbg import Segmenter, LiveFilter, process_file

* :class:`Segmenter`: one model, opened once; ``segment(rgb)`` gives the person's alpha at
  the image's own size (``vbg.inference.create_segmenter`` underneath).
* :class:`LiveFilter`: the live filter (``vbg.pipeline.LivePipeline``) on a source and
  sinks of your own (the :class:`~vbg.capture.Source` and :class:`~vbg.sinks.Sink`
  protocols) or the ones the CLI opens; ``run()`` blocks, ``start()`` runs it on a thread.
* :func:`process_file`: ``vbg process`` on one file (``vbg.offline.process``): the same
  start-up checks and output rules (written under a fresh name and renamed into place,
  never over an input), a :class:`~vbg.offline.process.FileResult` back.

Options are the long flags' names with underscores (``--vcam-device`` -> ``vcam_device``),
checked against the same declarations (``vbg.config``); a bad value, a missing file or an
output in the way raises a :class:`~vbg.errors.VbgError` subclass that also inherits the
matching builtin (``ConfigError`` is a ``ValueError``, ``InputError`` an ``OSError``), with
several start-up problems at once as :class:`~vbg.errors.Problems`. Neither the user's config
file nor ``VBG_*`` variables are read here: what a program passes is what runs. Nothing
prints; notes (a model fallback) go to the ``vbg`` logger. This module is a runner: it imports
the others, and nothing in vbg imports it (``tools/check_layers.py``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError, Problems, VbgError

if TYPE_CHECKING:
    from .capture import Source
    from .config import LiveConfig, ProcessConfig
    from .inference.segmenter import OnnxSegmenter, TorchSegmenter
    from .offline.process import FileResult
    from .sinks import Sink
    from .stats import LiveStats

log = logging.getLogger("vbg")

Size = int | tuple[int, int] | str | None  # a long side, (H, W), or "256" / "144x256" as --size takes it

__all__ = ["LiveFilter", "Segmenter", "process_file"]


# --- Options: flat keywords -> the config dataclasses ------------------------------------------


def _fields_by_name(root) -> dict[str, tuple[str, Any]]:
    """Every setting of config ``root``: its name -> (its TOML table, its field)."""
    from .config import sections

    tables = sections(root)
    out: dict[str, tuple[str, Any]] = {}
    for table, cls in tables.items():
        for f in fields(cls):
            if cls is type(root) and f.name in tables:
                continue  # the root's sections are not settings
            out[f.name] = (table, f)
    return out


def _configure(base, options: Mapping[str, Any], who: str):
    """``base`` with ``options`` applied; an unknown name or a choice that is not one raises."""
    from difflib import get_close_matches

    from .config import apply

    known = _fields_by_name(base)
    updates: dict[str, dict[str, Any]] = {}
    for name, value in options.items():
        if name not in known:
            near = get_close_matches(name, known, 1)
            hint = f"did you mean {near[0]}?" if near else f"known are {', '.join(sorted(known))}"
            raise ConfigError(f"{who}() got an unknown option {name!r}: {hint}")
        table, f = known[name]
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name} {value!r} is not known: use {', '.join(map(str, choices))}")
        updates.setdefault(table, {})[name] = value
    return apply(base, updates, check=False)


def _base(config, cls, who: str):
    """A config object to start from: ``config`` itself, a TOML file's, or the defaults."""
    if config is None:
        return cls()
    if isinstance(config, cls):
        return config
    if isinstance(config, (str, os.PathLike)):
        from .config import from_toml

        return from_toml(os.fspath(config), cls(), check=False)
    raise TypeError(f"{who}(config=...) takes a {cls.__name__} or a .toml path, not {type(config).__name__}")


def _path(value: Any, who: str) -> str:
    """``value`` as a path; a clear TypeError for anything else (``who``: "process_file(input=...)")."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise TypeError(f"{who} takes a path (str or os.PathLike), not {type(value).__name__}")


# The live filter's path-valued settings passed as keywords: a pathlib.Path taken as background= is
PATH_OPTIONS = ("record", "backgrounds_dir", "vcam_device")


def _paths(options: dict[str, Any], who: str) -> dict[str, Any]:
    """``options`` with its path-valued ones (``PATH_OPTIONS``) as str; a clear TypeError for a
    value of another type (``record=5`` was taken as a file named 5)."""
    return {k: _path(v, f"{who}({k}=...)") if k in PATH_OPTIONS and v is not None else v
            for k, v in options.items()}


def _check_source(source: Any) -> None:
    """A Source of the caller's states its size and rate as numbers vbg can use: a clear error
    naming the attribute (fps = 0 was a ZeroDivisionError deep in the run, a width of 640.0 a
    TypeError from NumPy)."""
    import math
    import numbers

    name = type(source).__name__
    for attr in ("width", "height"):
        value = getattr(source, attr)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"source: {name}.{attr} is {value!r}: a Source's width and height are whole numbers "
                            "of pixels (int)")
        if value < 1:
            raise ValueError(f"source: {name}.{attr} is {value}: a frame is at least 1 pixel each way")
    fps = source.fps
    if isinstance(fps, bool) or not isinstance(fps, (numbers.Real, np.integer, np.floating)):  # a Fraction too
        raise TypeError(f"source: {name}.fps is {fps!r}: a Source's fps is its frames per second, a number")
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"source: {name}.fps is {fps}: a Source's fps is its frames per second, more than 0")


def _given(**options: Any) -> dict[str, Any]:
    """The keyword options that were passed (None: leave the setting as it is)."""
    return {k: v for k, v in options.items() if v is not None}


def _one_or_all(found: list[VbgError]) -> None:
    if len(found) == 1:
        raise found[0]
    if found:
        raise Problems(found)


def _single(e: Problems) -> VbgError:
    """One problem as itself (``InputError`` is an ``OSError``, ...); several as ``Problems``."""
    return e.errors[0] if len(e.errors) == 1 else e


# --- Segmenter ---------------------------------------------------------------------------------


class Segmenter:
    """A segmentation model, opened once: RGB image in, the person's alpha out.

    ``model``: ``"selfie"``, ``"selfie-landscape"``, ``"rmbg-1.4"`` (downloaded once, under
    BRIA AI's non-commercial licence), ``"auto"`` (RMBG-1.4 when it can be had, else the bundled
    selfie model, with a note on the ``vbg`` logger) or a ``.onnx``/``.safetensors`` file.
    ``device``: ``auto``, ``cpu``, ``cuda``, ``tensorrt``...; ``size``: the inference size, a
    long side or (H, W) (default: the model's reference size). ``threads``: inference threads.
    ``crop="off"``: the whole image only (default ``"auto"``: a small person is looked at again,
    closer, as ``vbg segment`` does). Close it (or use ``with``) to free the session. Threads
    sharing one take turns; one segmenter per thread runs side by side.
    """

    def __init__(self, model: str | os.PathLike[str] = "auto", *, device: str = "auto", size: Size = None,
                 threads: int | None = None, **options: Any) -> None:
        from . import preflight
        from .config import ProcessConfig, SegmenterConfig
        from .inference import create_segmenter
        from .inference.crop import CroppedSegmenter
        from .ranges import out_of_range

        base = ProcessConfig(model=SegmenterConfig())  # default size: the model's own, as vbg segment
        opts = {"model": _path(model, "Segmenter(model=...)"), "device": device, **_given(size=size, threads=threads),
                **options}
        unknown = set(opts) - {f.name for f in fields(SegmenterConfig)}
        if unknown:
            raise ConfigError(f"Segmenter() got an unknown option {sorted(unknown)[0]!r}: known are "
                              f"{', '.join(f.name for f in fields(SegmenterConfig))}")
        cfg = _configure(base, opts, "Segmenter").model
        found: list[VbgError] = list(out_of_range(cfg, lambda key: key))
        preflight.collect(found, preflight.check_gpu_index, cfg.gpu)
        notes: list[str] = []
        cfg = preflight.settle_model(cfg, found, notes)  # "auto" -> a model; one that cannot be had: a problem
        _one_or_all(found)
        for note in notes:
            log.warning("%s", note)
        self.config: SegmenterConfig = cfg
        self._seg: OnnxSegmenter | TorchSegmenter | None = create_segmenter(cfg)
        # One call at a time: the model's input buffers and the crop's state are the segmenter's
        # own (two threads sharing one got each other's masks, unsaid).
        self._calls = threading.Lock()
        # crop="auto" (the default), as vbg segment: a small person is looked at again, closer
        self._still = CroppedSegmenter(self._seg).segment_still if cfg.crop == "auto" else None

    def _live(self) -> OnnxSegmenter | TorchSegmenter:
        if self._seg is None:
            raise ValueError("this Segmenter is closed")
        return self._seg

    @property
    def model(self) -> str:
        """The model's name (or file) as it runs."""
        return self._live().source.label

    @property
    def providers(self) -> list[str]:
        """Where it runs: ONNX Runtime's providers in order (``CPUExecutionProvider``, ...)."""
        return list(self._live().providers)

    def input_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The network's (H, W) input for an image of ``image_hw``."""
        h, w = image_hw
        return self._live().input_size((int(h), int(w)))

    def segment(self, image: np.ndarray, *, dtype: type[np.float32] | type[np.uint8] = np.float32) -> np.ndarray:
        """The alpha of the person in ``image`` (H x W x 3 RGB uint8): an H x W array at the
        image's own size, float32 in [0, 1] (``dtype=np.uint8``: 0..255). A new array each call.
        A wrong dtype is a ``TypeError``, a wrong shape a ``ValueError``. Threads may share a
        segmenter: their calls take turns (one segmenter per thread runs them side by side)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise TypeError(f"image must be a uint8 numpy array, got {getattr(image, 'dtype', type(image).__name__)}")
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"image must be H x W x 3 (RGB), got shape {image.shape}")
        try:
            kind = np.dtype(dtype)  # np.uint8, "uint8", np.dtype("uint8") alike
        except (TypeError, ValueError):
            kind = None
        if kind not in (np.dtype(np.float32), np.dtype(np.uint8)):
            raise TypeError(f"dtype must be numpy.float32 or numpy.uint8, not {dtype!r}")  # before the model runs
        with self._calls:
            seg = self._live()
            alpha = (self._still or seg.segment_full)(np.ascontiguousarray(image))
        if kind == np.uint8:
            from .models.preprocess import alpha_to_u8

            return alpha_to_u8(alpha)
        return alpha if alpha.dtype == np.float32 else alpha.astype(np.float32)

    __call__ = segment

    def close(self) -> None:
        """Free the model's session (after a call another thread is making); idempotent."""
        with self._calls:
            seg, self._seg = self._seg, None
        if seg is not None:
            seg.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- LiveFilter --------------------------------------------------------------------------------


class LiveFilter:
    """The live filter: frames from a source, the background replaced, composites to sinks.

    ``source``: a :class:`~vbg.capture.Source` object of yours (``read() -> RGB uint8 frame |
    None``, ``width``, ``height``, ``fps``, ``live``, ``close()``), or what ``--source`` takes (a
    camera index, a device, a video file, a URL, ``"demo"``). ``sinks``: :class:`~vbg.sinks.Sink`
    objects that get every :class:`~vbg.types.Composite` (``send`` must copy what it keeps: the
    image buffer is reused). ``vcam``: also feed the virtual camera (default: only when no sink,
    ``record`` or ``preview`` is given). Other options are the live filter's flags as keywords
    (``skip="auto"``, ``smoothing=1.0``, ``record="out.mp4"``, ``frames=300``, ``mirror=True``...),
    on top of ``config`` (a :class:`~vbg.config.LiveConfig` or a TOML file) when given.
    ``reopen``: called to open your source again after its ``read()`` raised
    :class:`~vbg.errors.SourceError` (None: that error ends the run); ``clock``: a
    :class:`~vbg.clock.Clock` (default: the monotonic clock; tests pass a fake one).

    Everything cheap is checked here, all at once (files, the source, the model, the virtual
    camera). ``run()`` opens the rest and blocks until the source ends, ``frames``/``duration``
    is reached or ``stop()`` is called (from another thread, or a sink); ``start()`` runs it on a
    thread of its own and ``wait()`` collects the result. A worker's error is raised from
    ``run()``/``wait()``. The filter closes the source and the sinks it was given when it ends.
    """

    def __init__(self, source: Source | str | int | None = None, *, sinks: Sequence[Sink] = (),
                 vcam: bool | None = None, background: str | os.PathLike[str] | None = None,
                 color: str | None = None, blur: float | None = None, model: str | os.PathLike[str] | None = None,
                 size: Size = None, device: str | None = None, config: LiveConfig | str | os.PathLike[str] | None = None,
                 reopen: Callable[[], Source] | None = None, clock=None, **options: Any) -> None:
        from . import preflight
        from .config import LiveConfig

        if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Iterable):
            raise TypeError(f"LiveFilter(sinks=...) takes a list of sinks, not {type(sinks).__name__}")
        sinks = list(sinks)
        for sink in sinks:
            if not all(callable(getattr(sink, m, None)) for m in ("send", "check", "close")):
                raise TypeError(f"sinks: {type(sink).__name__} is not a Sink (send, check, close)")
        own_source = source is not None and not isinstance(source, (str, int, os.PathLike))
        if own_source and not all(hasattr(source, a) for a in ("read", "close", "width", "height", "fps")):
            raise TypeError(f"source: {type(source).__name__} is not a Source (read, close, width, height, fps, live)")
        if own_source:
            _check_source(source)
        if reopen is not None and not callable(reopen):
            raise TypeError(f"LiveFilter(reopen=...) takes a function that opens the source again, not "
                            f"{type(reopen).__name__}")
        opts = _given(background=background if background is None else _path(background, "LiveFilter(background=...)"),
                      color=color, blur=blur, model=model if model is None else _path(model, "LiveFilter(model=...)"),
                      size=size, device=device)
        if source is not None and not own_source:
            opts["source"] = str(os.fspath(source) if isinstance(source, os.PathLike) else source)
        opts.update(_paths(options, "LiveFilter"))
        cfg = _configure(_base(config, LiveConfig, "LiveFilter"), opts, "LiveFilter")
        if vcam is None:
            vcam = not sinks and not cfg.output.record and not cfg.output.preview
        cfg = _configure(cfg, {"vcam": vcam}, "LiveFilter")
        try:
            plan = preflight.live(cfg, own_source=own_source, own_sinks=bool(sinks))
        except Problems as e:
            raise _single(e) from None
        for note in plan.notes:
            log.warning("%s", note)
        self.config: LiveConfig = plan.cfg
        self._source = source if own_source else None
        self._sinks = list(sinks)
        self._reopen = reopen
        self._clock = clock
        self._lock = threading.Lock()
        self._pipeline = None
        self._thread: threading.Thread | None = None
        self._result: LiveStats | None = None
        self._error: BaseException | None = None
        self._stop_asked = False
        self._done = threading.Event()

    def _claim(self):
        from .pipeline import LivePipeline

        with self._lock:
            if self._pipeline is not None:
                raise RuntimeError("a LiveFilter runs once: make a new one to run again")
            self._pipeline = LivePipeline(self.config, clock=self._clock, sinks=self._sinks, source=self._source,
                                          reopen=self._reopen)
            if self._stop_asked:
                self._pipeline.stop()
            return self._pipeline

    def run(self) -> LiveStats:
        """Run on this thread until the source ends, ``frames``/``duration``, or ``stop()``; the
        run's :class:`~vbg.stats.LiveStats`. Ctrl-C on the main thread stops it too (the
        ``KeyboardInterrupt`` goes on once everything is closed)."""
        pipeline = self._claim()
        try:
            self._result = pipeline.run()
            return self._result
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._done.set()

    def start(self) -> LiveFilter:
        """Run on a thread of its own (``wait()`` for its end); returns self."""
        pipeline = self._claim()

        def body() -> None:
            try:
                self._result = pipeline.run()
            except BaseException as e:  # raised again from wait()
                self._error = e
            finally:
                self._done.set()

        self._thread = threading.Thread(target=body, name="vbg-live", daemon=True)
        self._thread.start()
        return self

    def wait_started(self, timeout: float | None = None) -> bool:
        """True once the model is loaded, the sinks are open and frames flow, also after the run
        ended (False: not yet, or the run ended before that)."""
        pipeline = self._pipeline
        if pipeline is None:
            raise RuntimeError("the LiveFilter has not been started: call start() or run()")
        end = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():  # a run that fails starting never starts: not waited for
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0 or pipeline.started.wait(left):
                break
        return pipeline.started.is_set()  # (a run that started and ended since: True, its error from wait())

    @property
    def running(self) -> bool:
        return self._pipeline is not None and not self._done.is_set()

    @property
    def stats(self) -> LiveStats | None:
        """The counters of the run, live while it runs (None before it starts)."""
        return self._pipeline.stats if self._pipeline is not None else None

    def stop(self) -> None:
        """Ask the run to end (any thread; idempotent): the frames in flight are finished,
        the sinks flushed and closed."""
        with self._lock:
            self._stop_asked = True
            if self._pipeline is not None:
                self._pipeline.stop()

    def wait(self, timeout: float | None = None) -> LiveStats:
        """The run's stats once it has ended; its error raised. ``TimeoutError`` if it has not
        ended within ``timeout`` seconds."""
        if self._pipeline is None:
            raise RuntimeError("the LiveFilter has not been started: call start() or run()")
        if not self._done.wait(timeout):
            raise TimeoutError(f"the live filter is still running after {timeout} s: call stop() first")
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> LiveFilter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Stop a run started with ``start()`` and wait for it (its error raised, unless the
        block is already raising one)."""
        self.stop()
        if self._thread is not None:
            self._done.wait()
            self._thread.join()
            if exc_type is None and self._error is not None:
                raise self._error


# --- process_file ------------------------------------------------------------------------------


class _Progress:
    """What ``FileProcessor`` reports to, turned into ``on_progress(done, total)`` calls."""

    def __init__(self, callback: Callable[[int, int | None], None] | None) -> None:
        self.total: int | None = None
        self.done = 0
        self._said = False  # the callback has been called
        self._callback = callback

    def emit(self, event: str, **fields: Any) -> None:
        pass

    def update(self, done: int) -> None:
        """Once per new count: the pipeline reports after each composited frame, and the writer
        may not have written another since."""
        if done == self.done and self._said:
            return
        self.done, self._said = done, True
        if self._callback is not None:
            self._callback(done, self.total)


def process_file(input: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False,
                 workers: int | str = "auto", background: str | os.PathLike[str] | None = None,
                 color: str | None = None, blur: float | None = None, model: str | os.PathLike[str] | None = None,
                 size: Size = None, device: str | None = None, mode: str | None = None,
                 config: ProcessConfig | str | os.PathLike[str] | None = None,
                 on_progress: Callable[[int, int | None], None] | None = None, **options: Any) -> FileResult:
    """``vbg process INPUT -o OUTPUT``: every frame of ``input`` (a video file or URL, or an image
    sequence: a folder of frames or a ``frame_%05d.png`` pattern, at ``fps=``, default 30) with
    the background replaced, its audio kept, written to ``output``.

    ``output``'s suffix picks the format as ``-o`` does: ``.mp4``/``.m4v``/``.mkv`` (H.264),
    ``.mov`` (ProRes), ``.webm`` (VP9), or no suffix: a folder of PNG frames. ``mode``:
    ``"rgb"`` (the composite), ``"rgba"`` (the person over transparency: .mov, .webm or PNGs)
    or ``"matte"`` (the mask alone). The output is written under a fresh name and renamed into
    place; an existing one is replaced only with ``overwrite``, an input never. ``workers``:
    model sessions in parallel (``"auto"``: measured once per model and frame size, as the CLI).
    Other options are ``vbg process``'s flags as keywords (``smoothing``, ``window``, ``quality``,
    ``encoder``, ``memory``, ``feather``...). ``on_progress(done, total)`` is called as frames
    are written, the last time with every frame (``total``: None when the file does not say); an
    exception it raises stops the job and comes out as it is, the frames before it kept as a
    playable ``NAME.partial.EXT`` named in its notes (raised by the last call, once the output
    is complete, it comes out with a note saying so). Returns the
    :class:`~vbg.offline.process.FileResult` (``frames``, ``output``, ``seconds``, ``fps``...).
    """
    from . import cli
    from .config import ProcessConfig
    from .offline.process import FileProcessor

    if not isinstance(overwrite, bool):  # "no" would be true
        raise TypeError(f"process_file(overwrite=...) takes True or False, not {type(overwrite).__name__}")
    if on_progress is not None and not callable(on_progress):
        raise TypeError(f"process_file(on_progress=...) takes a function of (done, total), not "
                        f"{type(on_progress).__name__}")
    opts = _given(background=background if background is None else _path(background, "process_file(background=...)"),
                  color=color, blur=blur, model=model if model is None else _path(model, "process_file(model=...)"),
                  size=size, device=device, mode=mode)
    opts.update(options)
    cfg = _configure(_base(config, ProcessConfig, "process_file"), opts, "process_file")
    from .media.open import is_url

    src = _path(input, "process_file(input=...)")
    output = _path(output, "process_file(output=...)")
    src_in: Path | str = src if is_url(src) else Path(src)
    try:
        plan = cli.plan_process(cfg, [src_in], cli._output_arg(os.fspath(output)), overwrite=overwrite,
                                workers=str(workers), raw_output=os.fspath(output))
    except Problems as e:
        raise _single(e) from None
    segs: list = []
    try:
        cli.open_segmenters(plan, segs)
        proc = FileProcessor(plan.cfg, *segs)  # type: ignore[arg-type]  # the plan holds a ProcessConfig
        (dst, sequence), = plan.planned
        progress = _Progress(on_progress)
        result = proc.process(plan.inputs[0], dst, progress, sequence=sequence, overwrite=overwrite)
        if progress.done != result.frames:  # the last frames written after the last update
            try:
                progress.update(result.frames)
            except BaseException as e:  # too late to stop anything: the output is whole
                if hasattr(e, "add_note"):
                    e.add_note(f"the job had finished: {result.output} is complete")
                raise
        return result
    finally:
        for seg in segs:
            seg.close()
