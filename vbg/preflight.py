"""Start-up checks: everything cheap, all at once, before any camera, model or encoder.

In: a :class:`~vbg.config.LiveConfig` (``live``), or one path or option per
``check_*``. Out: a :class:`Plan` (the config to run, the model settled, and
notes for the user), or :class:`vbg.errors.Problems` listing every problem at
once. Nothing is opened, built or printed. Thread: the caller's, at start-up.

A new user should learn every set-up problem from one run, not one per run: a
missing background file, a source that does not exist, an output in the way
(already there, one of the inputs, or being written by another run now),
no virtual camera, no display for ``--preview``, a model that cannot be had.
Each check adds its one-line error to a list; the caller raises
:class:`vbg.errors.Problems` with all of them (exit code: the first one's).

The checks also settle two choices the live filter makes at start: ``--model
auto`` (RMBG-1.4 when it can be had, else the bundled selfie model, with a note)
and, with ``--preview``, whether there is a virtual camera to feed as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import LiveConfig, problems as config_problems
from .errors import (ConfigError, DependencyError, DeviceError, InputError, ModelError, OutputError, Problems,
                     SinkError, SourceError, VbgError)

DOCTOR_HINT = "`vbg doctor` checks this machine's whole set-up (packages, GPU, cameras, virtual camera, models)"


def is_setup_problem(e: BaseException) -> bool:
    """Whether ``e`` is about this machine's set-up (a package, the model, the GPU, the camera,
    the virtual camera), which `vbg doctor` checks; a bad flag, input or output is not."""
    return isinstance(e, (DependencyError, DeviceError, ModelError, SinkError, SourceError))


@dataclass
class Plan:
    """What the checks decided: the config to run (model settled, sinks chosen) and
    lines to tell the user (a model fallback, the preview without a virtual camera)."""

    cfg: LiveConfig
    notes: list[str] = field(default_factory=list)


def collect(found: list[VbgError], check, *args, **kw):
    """``check(*args, **kw)``'s result; a :class:`VbgError` it raises is added to ``found`` (result None)."""
    try:
        return check(*args, **kw)
    except VbgError as e:
        found.append(e)
        return None


def check_background(background: str | None) -> None:
    """The background file exists and (for an image) reads; a bundled name counts."""
    if background is None:
        return
    from .compositing import background_from_options
    from .compositing.backgrounds import VIDEO_SUFFIXES
    from .media.open import is_url

    if not str(background).strip():  # --background "" (a config's empty value): it was taken for "."
        raise InputError("--background is empty: give an image or video file, or use --color or --blur")
    if is_url(background):  # it was taken for a path ("http:/host/bg.jpg does not exist")
        raise InputError(f"background {background} is a URL: vbg reads a background from this computer: "
                         "download it, then pass its path")
    if str(background).lower().endswith(VIDEO_SUFFIXES):
        path = Path(background).expanduser()
        from .media.open import special_file

        kind = special_file(path)
        if kind is not None:
            raise InputError(f"background video {background} is {kind}, not a file: pass a video file")
        if not path.is_file():
            raise InputError(f"background video {background} does not exist: check the path")
        return
    background_from_options(background=background).close()  # reads the image: cheap next to a model


def check_source(text: str) -> None:
    """A file source exists; a camera's device node is there. The camera itself is not opened."""
    from .capture import parse_source

    src = parse_source(text)
    if isinstance(src, str) and "://" in src:
        return  # a stream URL: only opening it tells
    if isinstance(src, str) and not src.startswith("/dev/"):
        from .capture import is_demo

        if is_demo(src):
            return
        path = Path(src).expanduser()
        if not path.exists():
            raise SourceError(f"--source {src}: no such file, camera index or URL; "
                              "without a webcam, try --source demo")
        if path.is_dir():
            raise SourceError(f"--source {src} is a folder: give a video file, a camera index or a URL")
        from .media.open import special_file

        kind = special_file(path)
        if kind is not None:  # a FIFO would block the open until some program writes to it
            raise SourceError(f"--source {src} is {kind}, not a file: give a video file, a camera index or a URL")
        return
    from .capture.camera import camera_problem

    missing = camera_problem(src)
    if missing is not None:
        raise missing


def check_record(record: str | None, overwrite: bool, inputs=()) -> None:
    if record is None:
        return
    from .sinks.recorder import FORMATS

    path = Path(record).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"--record {record}: unknown file type, use one of {', '.join(FORMATS)}")  # as the recorder
    check_output_path(path, overwrite, "--record", inputs)


def check_not_an_input(path: Path, inputs, option: str = "-o") -> None:
    """``path`` is not one of the files the run reads (the same file by device and inode:
    the same name, a hard link or a symlink): writing it would destroy the input, and
    --overwrite does not change that."""
    from .fsutil import same_file

    for src in inputs:
        if isinstance(src, (str, Path)) and same_file(path, Path(src).expanduser()):
            same = "" if Path(src) == path else f" ({src} and {path} are one file)"
            raise OutputError(f"{option} {path} is the input {src}{same}: vbg would overwrite what it reads: "
                              f"choose another {option}")


def check_not_busy(path: Path, option: str = "-o") -> None:
    """No other vbg run is writing ``path`` now (see ``vbg.fsutil.busy_writer``)."""
    from .fsutil import busy_message, busy_writer

    pid = busy_writer(path)
    if pid is not None:
        raise OutputError(busy_message(path, pid).replace("another -o", f"another {option}"))


def check_output_folder(folder: Path, option: str = "-o", shown: object = None) -> None:
    """No file stands where ``folder`` or a folder above it should be (``-o notes.txt/out.mp4``,
    a batch's ``-o notes.txt``): said at start, not as "File exists" once the model has loaded.
    ``shown``: the output as the message names it (default ``folder``)."""
    folder = Path(folder)
    for f in (folder, *folder.parents):
        if os.path.lexists(f):
            if not f.is_dir():
                raise OutputError(f"{option} {folder if shown is None else shown}: {f} is a file, not a folder: "
                                  f"choose another {option}")
            return


def check_folder_writable(folder: Path, option: str = "-o", shown: object = None) -> None:
    """Files can be made in ``folder`` (or, where it is not there yet, in the nearest folder above
    it, where it will be made): a read-only disk or another user's folder is said once at start,
    not once per input after the model has loaded. A probe file, made under a fresh name and
    removed at once, is the only test that holds for root (who passes every permission check)."""
    import tempfile

    from .fsutil import write_error_hint

    folder = Path(folder)
    here = next((f for f in (folder, *folder.parents) if os.path.lexists(f)), None)
    if here is None or not here.is_dir():
        return  # nothing there at all, or a file in the way: check_output_folder's to say
    try:
        fd, probe = tempfile.mkstemp(prefix=".vbg-can-write-", dir=here)
    except OSError as e:
        raise OutputError(f"{option} {folder if shown is None else shown}: cannot write in {here} "
                          f"({e.strerror or e}): {write_error_hint(e)}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_path(path: Path, overwrite: bool, option: str = "-o", inputs=()) -> None:
    """The output's folder exists, it is not an input, no other run writes it, and it is
    not there already (unless --overwrite)."""
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder: give a file name")
    check_output_folder(path.parent, option, path)
    check_not_an_input(path, inputs, option)
    check_not_busy(path, option)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists: pass --overwrite to replace it, or choose another name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: cannot write there (no folder {parent}): create the folder first, "
                          "or choose another path")


def check_display() -> None:
    from .sinks.preview import NO_DISPLAY, display_available

    if not display_available():
        raise SinkError(NO_DISPLAY)


def settle_model(cfg, found: list[VbgError], notes: list[str]):
    """``auto`` -> a concrete model (a fallback note when it is the selfie model); a named hub
    model that cannot be had now, or a model file that is not there, is a problem."""
    from .models.resolve import AUTO, choose_model, hub_variant
    from .models.spec import MODELS

    if cfg.model == AUTO:
        choice = choose_model(AUTO, variant=cfg.variant, backend=cfg.backend)
        if choice.note:
            notes.append(choice.note)
            return replace(cfg, model=choice.model, size=None)  # --size was meant for RMBG-1.4
        return replace(cfg, model=choice.model)
    spec = MODELS.get(cfg.model)
    if spec is not None and spec.hub_repo is not None:
        from .models import hub

        try:
            missing = hub.availability(spec, hub_variant(cfg.variant, cfg.backend))
        except VbgError as e:  # an unknown variant
            found.append(e)
            return cfg
        if missing is not None:
            found.append(missing.error)
        return cfg
    if spec is None:  # a path: the same cheap checks resolve_model makes (suffix, exists, not empty)
        from .models.resolve import resolve_model

        collect(found, resolve_model, cfg.model, variant=cfg.variant, backend=cfg.backend)
    return cfg


def check_backgrounds_dir(folder: str | None) -> None:
    """``--backgrounds-dir`` is a folder, or not there yet (the control page lists none then)."""
    path = None if folder is None else Path(folder).expanduser()
    if path is not None and path.exists() and not path.is_dir():
        raise ConfigError(f"--backgrounds-dir {folder} is a file, not a folder: give the folder your "
                          "background pictures and videos are in")


def check_gpu_index(index: int) -> None:
    """``--gpu N`` names a GPU that is there (index 0 is the default: never refused here)."""
    if index:
        from .inference.cuda import gpu_index_problem, list_gpus

        problem = gpu_index_problem(index, list_gpus())
        if problem is not None:
            raise problem


def live(cfg: LiveConfig, *, own_source: bool = False, own_sinks: bool = False) -> Plan:
    """Check everything cheap about a live run; raise :class:`Problems` listing each problem.
    ``own_source``/``own_sinks``: the caller hands the pipeline a source / sinks of its own (the
    Python API): ``cfg.source`` is then not checked, and no output of ``cfg`` is required."""
    found: list[VbgError] = list(config_problems(cfg, own_sinks=own_sinks))
    notes: list[str] = []
    b, o = cfg.background, cfg.output
    collect(found, check_background, b.background)
    source = None if own_source else cfg.source.source
    collect(found, check_record, o.record, o.overwrite, (source, b.background))
    from .encoders import choose_encoder
    from .ranges import ENCODERS

    if o.record and o.encoder in ENCODERS:  # every --record format is H.264: NVENC probed now, before anything opens
        collect(found, choose_encoder, o.encoder, cfg.model.gpu)
    if o.preview:
        collect(found, check_display)
    if o.vcam:
        from .sinks.virtual_camera import choose_backend, virtual_camera_problem

        missing = virtual_camera_problem(o.vcam_device, o.vcam_backend, recording=bool(o.record))
        if missing is not None and o.preview:
            # The window is a sink of its own: run with it alone, and say how to get the camera too.
            notes.append(f"no virtual camera: showing the preview window only ({missing})")
            cfg = replace(cfg, output=replace(o, vcam=False))
        elif missing is not None:
            found.append(missing)
        elif o.vcam_backend in (None, "auto") and choose_backend(o.vcam_device, o.vcam_backend) == "pipewire":
            notes.append("no v4l2loopback device: the virtual camera is a PipeWire camera, 'vbg virtual camera' "
                         "(browsers and apps that take cameras from PipeWire list it)")
            cfg = replace(cfg, output=replace(o, vcam_backend="pipewire"))
    if not own_source:
        collect(found, check_source, cfg.source.source)
    c = cfg.control
    if c.control:
        collect(found, check_backgrounds_dir, c.backgrounds_dir)
    elif c.ui:  # often from a config file, with --no-control for one run: said, not refused
        notes.append("--ui has no page to open: --no-control turns the control server off")
    collect(found, check_gpu_index, cfg.model.gpu)
    model = settle_model(cfg.model, found, notes)
    if found:
        raise Problems(found)
    return Plan(replace(cfg, model=model), notes)
