"""Command line: the one place that turns vbg errors into messages and exit codes.

In: ``main(argv)`` (the console script ``vbg``, and ``python -m vbg``): the
subcommand and its flags, mapped onto the config dataclasses (flags over a
``--config`` TOML file). Out: the exit code, returned; each ``VbgError``
becomes one line on stderr and its code, never a traceback for a user
mistake. Nothing else in the product ends the process: the console script
and ``__main__`` exit with the code ``main`` returns. Thread: the main
thread, which holds the signal handlers (Ctrl-C, SIGTERM, SIGHUP stop a run
the same way; while the live filter runs, SIGUSR1 toggles its effect and, with
``--config``, SIGHUP reloads that file instead, unless it comes because the
terminal closed: ``_live_signals``); what a handler asks for runs on
:mod:`vbg.sigwork`'s thread, never inside the handler. ``vbg ctl``
talks to a running filter through :mod:`vbg.control`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import __version__, streams
from .errors import ConfigError, InputError, Problems, VbgError

log = logging.getLogger("vbg")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def add_setting_options(group, section, *, defaults: bool = True, fill: dict | None = None, skip=()) -> None:
    """One option per setting of config dataclass ``section`` that declares a flag (``vbg.config.setting``):
    its flag, help, metavar and choices, its type from the field's (a bool is a switch). ``defaults``
    false: an option not given is left out of the namespace (SUPPRESS), so it does not override a
    config file. ``fill``: the help's ``{placeholders}``; ``skip``: settings left out."""
    from dataclasses import MISSING, fields

    from .config import flag_of

    for f in fields(section):
        flag = flag_of(f)
        if flag is None or f.name in skip:
            continue
        meta = f.metadata
        help_text = meta["help"]
        for key, value in (fill or {}).items():
            help_text = help_text.replace("{" + key + "}", value)
        kw: dict = {"dest": f.name, "help": help_text}
        kw["default"] = (f.default if f.default is not MISSING else f.default_factory()) if defaults \
            else argparse.SUPPRESS
        kinds = set(str(f.type).replace(" ", "").split("|")) - {"None"}
        if kinds == {"bool"}:
            kw["action"] = "store_false" if flag.startswith("--no-") else "store_true"
        else:
            if kinds == {"int"}:
                kw["type"] = int
            elif kinds == {"float"}:
                kw["type"] = float
            if meta.get("metavar"):
                kw["metavar"] = meta["metavar"]
            if meta.get("choices"):
                kw["choices"] = meta["choices"]
            if meta.get("const") is not None:
                kw["nargs"], kw["const"] = "?", meta["const"]
        group.add_argument(flag, **kw)


def _add_model_options(p: argparse.ArgumentParser, default_size_help: str, *, defaults: bool = True) -> None:
    from .config import SegmenterConfig
    from .models.spec import MODELS

    # the live parser (defaults false) keeps only what the user typed: it overrides the config
    add_setting_options(p.add_argument_group("model"), SegmenterConfig, defaults=defaults,
                        fill={"models": ", ".join(MODELS), "size_default": default_size_help})


BACKGROUND_TITLE = "background (pick one; default: blur)"


def _add_background_options(p, *, defaults: bool) -> None:
    """The background options, the same for the live filter and ``vbg process``."""
    from .config import BackgroundConfig

    add_setting_options(p.add_argument_group(BACKGROUND_TITLE), BackgroundConfig, defaults=defaults)


def _segmenter_config(args):
    from dataclasses import fields

    from .config import SegmenterConfig, flag_of, parse_size

    given = {f.name: getattr(args, f.name) for f in fields(SegmenterConfig) if flag_of(f)}
    return SegmenterConfig(**{**given, "size": parse_size(args.size)})


def _parser_segment(sub) -> None:
    p = sub.add_parser("segment", help="write a mask (or RGBA cut-out) for each image",
                       description="Segment still images: one mask PNG (or RGBA cut-out) per input.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, a folder of them, or a quoted pattern such as 'shots/*.jpg'")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (one image) or folder (<name>.png per image)")
    p.add_argument("--cutout", action="store_true", help="write the person over transparency (RGBA) instead of the mask")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    _add_model_options(p, "default: the model's reference size (1024x1024 for RMBG-1.4)")
    p.set_defaults(func=cmd_segment)


def _parser_export(sub) -> None:
    p = sub.add_parser("export", help="export RMBG-1.4 to a single-output ONNX graph",
                       description="Export RMBG-1.4 (d1 only) to ONNX: input 'input' float32 [N,3,H,W] "
                                   "(RGB/255 - 0.5), output 'output' float32 [N,1,H,W] in [0,1].")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="PATH", help="model.safetensors, model.pth or pytorch_model.bin")
    src.add_argument("--random-init", action="store_true",
                     help="seeded random weights: the exact compute cost without the licensed weights")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--size", metavar="HxW", help="fixed input size (default 1024x1024); N means NxN")
    shape.add_argument("--dynamic", action="store_true", help="batch, height and width left free")
    p.add_argument("--fp16", action="store_true", help="half-precision weights and I/O (for GPUs)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_export)


def _parser_process(sub) -> None:
    p = sub.add_parser("process", help="render video files: every frame, audio kept, alpha outputs",
                       description="Replace or remove the background of video files. The output format "
                                   "follows -o: .mp4 (H.264), .mov (ProRes 4444 with --alpha), .webm (VP9, "
                                   "alpha with --alpha), or a name without a suffix (PNG sequence).",
                       epilog=OUTPUT_RULE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, glob patterns, a folder of videos (each processed), or image sequences: "
                        "a folder of frames, or a numbered pattern such as shots/frame_%%05d.png (read at --fps)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="one input: the output file, or a name without a suffix for a PNG sequence; "
                        "several inputs: the folder they go to (see below)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--alpha", action="store_true", help="the person over transparency (.mov, .webm or PNGs)")
    mode.add_argument("--matte", action="store_true", help="write the mask alone as a grey video")
    p.add_argument("--format", choices=tuple(VIDEO_SUFFIXES),
                   help="the format of each output of several inputs (default: mp4, or mov with --alpha); "
                        "with one input -o says it, and --format must agree")
    p.add_argument("--config", metavar="FILE.toml",
                   help="read settings from a TOML file: [model], [temporal], [background] and [output] "
                        "(quality, encoder, memory, mode); flags override it")
    _add_default_config_option(p)
    from .config import ProcessConfig, ProcessTemporalConfig
    from .config import LOOKAHEAD_MB, MEMORY_MB

    # The settings a config file can hold default to SUPPRESS: one not given leaves the file's value.
    add_setting_options(p, ProcessConfig, defaults=False, skip=("memory",))
    p.add_argument("--workers", default="auto", metavar="N|auto",
                   help="model sessions running frames in parallel, each on its share of the cores "
                        "(default auto: on a CPU, 2 when two measured at least 15%% faster than one and the "
                        "memory for the second is free, else 1; measured once per model and frame size; "
                        "1 on a GPU)")
    _add_background_options(p, defaults=False)
    add_setting_options(p.add_argument_group("temporal"), ProcessTemporalConfig, defaults=False)
    add_setting_options(p, ProcessConfig, defaults=False, skip=("quality", "encoder", "fps"),
                        fill={"lookahead_mb": str(LOOKAHEAD_MB), "memory_mb": str(MEMORY_MB),
                              "lookahead_frames": str(MEMORY_MB // LOOKAHEAD_MB)})
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON-lines progress and results on stdout, for scripts")
    out.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                     help="no progress bar: one summary line per file")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave the inputs whose output is already there (one line names them): run an "
                        "interrupted batch's command again with it to do the rest")
    ray = p.add_argument_group("Ray (pip install 'vbg[ray]')")
    ray.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run the job on Ray: alone, a local Ray runtime on this machine; auto, ray://HOST:PORT or "
                          "HOST:PORT: the cluster there (inputs and outputs on storage every node sees). "
                          "--workers N: N Ray workers (default: one per GPU, else per core or 4 cores)")
    ray.add_argument("--ray-segment", type=float, default=None, metavar="SECONDS",
                     help="--ray: files at least twice this long are cut at keyframes into parts this long, "
                          "processed apart and joined (default 60)")
    _add_model_options(p, "default: 512 (offline: quality over speed)", defaults=False)
    p.set_defaults(func=cmd_process)


def _parser_models(sub) -> None:
    from .ranges import VARIANTS

    p = sub.add_parser("models", help="list the models, their licences and cache state; --download one",
                       description="The models vbg knows, their licences and whether they are on this machine. "
                                   "--download fetches a hub model now (under its licence, checked against its "
                                   "checksum), e.g. before going offline; otherwise it is fetched on first use.")
    p.add_argument("--download", metavar="NAME", nargs="?", const="rmbg-1.4",
                   help="fetch this model now (default: rmbg-1.4) and print where it is kept")
    p.add_argument("--variant", choices=VARIANTS, default="fp32",
                   help="with --download: which RMBG-1.4 file (as vbg --variant; export = the safetensors "
                        "weights vbg exports from, which --backend torch also uses)")
    p.set_defaults(func=cmd_models)


def _parser_backgrounds(sub) -> None:
    p = sub.add_parser("backgrounds", help="list the backgrounds that come with vbg",
                       description="The backgrounds bundled with vbg: --background NAME uses one when there is "
                                   "no file of that name where you are (your own file always wins).")
    p.set_defaults(func=cmd_backgrounds)


def _parser_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check what the live filter needs, each problem with its fix",
                       description="Check packages, ONNX Runtime providers, GPU, the virtual camera (v4l2loopback "
                                   "or PipeWire), cameras, the model cache and the display. Exit code 0 only when the live "
                                   "filter can start; 1 when a check failed.")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout, for scripts")
    p.set_defaults(func=cmd_doctor)


def _parser_docs(sub) -> None:
    p = sub.add_parser("completion", help="print the shell completion script (bash, zsh or fish)",
                       description="Print vbg's completion script for SHELL, generated from this vbg's options: "
                                   "vbg completion bash > ~/.local/share/bash-completion/completions/vbg")
    p.add_argument("shell", choices=("bash", "zsh", "fish"), metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(func=lambda args: _print_docs(args.shell))
    p = sub.add_parser("man", help="print the man page (roff)",
                       description="Print vbg's man page, generated from this vbg's options: "
                                   "vbg man > ~/.local/share/man/man1/vbg.1")
    p.set_defaults(func=lambda args: _print_docs("man"))


def _print_docs(kind: str) -> int:
    from .cli_docs import render

    sys.stdout.write(render(kind))
    return 0


CTL_EPILOG = """\
examples:
  vbg ctl background beach        a bundled picture, or a picture or video in your backgrounds folder, by name
  vbg ctl background ~/me/bg.jpg  a picture of yours: read here and sent to the filter
  vbg ctl background ~/waves.mp4  a video of yours: sent, kept and played in a loop for the filter's run
  vbg ctl color green             vbg ctl color '#00b140'
  vbg ctl blur 0.7                blur the real background (strength 0.1-5)
  vbg ctl effect off              the camera as it is; effect on / toggle
  vbg ctl mirror on               a selfie view
  vbg ctl model selfie            switch models without dropping the camera
  vbg ctl status [--json]         what the status line shows
  vbg ctl page [--print]          open the control page (its address, with the token, printed)
The filter is found through its runtime file ($XDG_RUNTIME_DIR/vbg); the newest one when several run."""


def _parser_ctl(sub) -> None:
    p = sub.add_parser("ctl", help="control the running live filter: background, blur, effect, model, status, page",
                       description="Change what the running live filter (vbg ...) does, without restarting it.",
                       epilog=CTL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = p.add_subparsers(dest="ctl", metavar="ACTION", required=True)
    c = cmds.add_parser("background",
                        help="a picture or video: a bundled or backgrounds-folder NAME, or a FILE of yours")
    c.add_argument("what", metavar="FILE|NAME")
    c = cmds.add_parser("color", help="a plain colour behind the person")
    c.add_argument("what", metavar="NAME|#RRGGBB")
    c = cmds.add_parser("blur", help="blur the real background (strength 0.1-5)")
    c.add_argument("what", metavar="STRENGTH", type=float)
    for name, helptext in (("effect", "the effect on or off (off: the camera as it is)"),
                           ("mirror", "mirror the output like a selfie view")):
        c = cmds.add_parser(name, help=helptext)
        c.add_argument("what", choices=("on", "off", "toggle"))
    c = cmds.add_parser("model", help="switch to another model (loaded while the camera keeps running)")
    c.add_argument("what", metavar="NAME")
    c = cmds.add_parser("status", help="the live figures, one line (or --json)")
    c.add_argument("--json", action="store_true", help="the whole status as JSON")
    c = cmds.add_parser("page", help="open the control page in your web browser, and print its address")
    c.add_argument("--print", action="store_true", dest="print_only", help="only print its address")
    p.set_defaults(func=cmd_ctl)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vbg", description="Real-time virtual background and video matting. "
                                "Without a COMMAND, vbg runs the live filter (vbg --help).")
    p.add_argument("--version", action="version", version=f"vbg {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _parser_segment(sub)
    _parser_export(sub)
    _parser_process(sub)
    _parser_models(sub)
    _parser_backgrounds(sub)
    _parser_doctor(sub)
    _parser_config(sub)
    _parser_service(sub)
    _parser_ctl(sub)
    _parser_docs(sub)
    # -q / -v also after the command (vbg process in.mp4 -o out.mp4 -v); SUPPRESS keeps a
    # flag given before the command when it is not repeated after it.
    for cmd in sub.choices.values():
        have = {o for a in cmd._actions for o in a.option_strings}
        if "-v" not in have:
            cmd.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug messages")
        if "-q" not in have:
            cmd.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="only warnings and errors")
    return p


def _refuse_existing(path: Path, overwrite: bool) -> None:
    from .errors import OutputError

    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists: pass --overwrite to replace it, or choose another -o")


def _output_arg(raw: str) -> Path:
    """``-o`` as a path: ``~`` is the home folder ("~/masks" in quotes, as --record takes it), and
    ``.`` or ``..`` the folder it names, so that its outputs and their partial files have a name."""
    if not raw.strip():
        raise ConfigError("-o is empty: give an output file or folder name")
    if raw == "-":  # the usual spelling of standard output: vbg writes files it can finalize and rename
        raise ConfigError("-o - (standard output) is not supported: name an output file or folder, "
                          "such as -o out.mp4 (-o ./- for a folder named -)")
    out = Path(os.path.expanduser(raw))
    return Path(os.path.abspath(out)) if out.name in ("", "..") else out


def _written_as_folder(raw: str) -> bool:
    """``-o`` as typed names a folder whatever its name holds: a trailing slash (``shots.v2/``,
    ``x.mp4/``), ``.`` or ``..`` (the working folder may be ``release-1.0``)."""
    return raw.endswith(("/", os.sep)) or Path(raw).name in ("", ".", "..")


def _names_a_folder(raw: str, out: Path) -> bool:
    """``vbg segment``'s ``-o`` is a folder: written as one, or one that exists."""
    return _written_as_folder(raw) or out.is_dir()


def cmd_segment(args) -> int:
    import numpy as np

    from .images import icc_profile, read_rgb, write_image
    from .inference import create_segmenter
    from .inference.crop import CroppedSegmenter
    from .models.preprocess import alpha_to_u8

    out = _output_arg(args.output)
    images = [Path(i) for i in _expand_inputs(args.images, photos=True)]  # a pattern or folder too, as vbg process
    folder = _names_a_folder(args.output, out)  # "masks.v2/", or a folder named mask.png: its images go in it
    single_file = len(images) == 1 and not folder and out.suffix.lower() in IMAGE_SUFFIXES
    if not single_file and not folder and out.suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(f"-o {out} names one file but {len(images)} images were given: pass a folder")
    if args.cutout and single_file and out.suffix.lower() not in (".png", ".webp", ".tif", ".tiff"):
        raise ConfigError(f"-o {out}: a cut-out needs transparency: use a .png output")
    if len(images) == 1 and out.suffix and not single_file and not folder:
        raise ConfigError(f"-o {args.output}: vbg does not write {out.suffix} images: name the mask "
                          f"{out.with_suffix('.png').name} (or .jpg, .webp, .bmp, .tif), or give a folder")
    targets = [out if single_file else out / (i.stem + ".png") for i in images]
    _same_names(images, targets, "segment")
    from . import preflight

    preflight.check_output_folder(out.parent if single_file else out, "-o", args.output)
    for t in targets:
        preflight.check_not_an_input(t, images)
        _refuse_existing(t, args.overwrite)

    found: list[VbgError] = []
    notes: list[str] = []
    cfg = preflight.settle_model(_segmenter_config(args), found, notes)
    preflight.collect(found, preflight.check_gpu_index, args.gpu)
    if found:
        raise Problems(found)
    for note in notes:
        log.warning("%s", note)
    failed = 0
    seg = None  # the model opens with the first image that reads: none does, none loads
    still: Callable[[np.ndarray], np.ndarray] | None = None
    try:
        for image, target in zip(images, targets):
            if streams.broken():  # stdout or stderr closed: stop like Ctrl-C (written images kept)
                break
            try:
                rgb = read_rgb(image)
            except VbgError as e:
                if len(images) == 1:
                    raise  # one image: its own exit code
                _error(e)
                failed += 1
                continue
            fresh = seg is None
            if seg is None:
                seg = create_segmenter(cfg)
                # --crop auto: a small person is looked at again, closer (the whole frame's look joined)
                still = CroppedSegmenter(seg).segment_still if cfg.crop == "auto" else seg.segment_full
            assert still is not None
            alpha = alpha_to_u8(still(rgb))
            if fresh:  # said once its session is open: a .safetensors/.pth model's opens at the first image
                log.info("model %s on %s", seg.source.label, ", ".join(seg.providers))
            # a cut-out keeps nothing of the room where it is transparent (an app that drops alpha,
            # or reads the file as a background, showed the whole photo again), and its soft edge
            # the person's own colour, not the room's (a fringe of the old background in an editor)
            if args.cutout:
                from .compositing.foreground import ForegroundEstimator

                result = np.dstack([ForegroundEstimator().estimate(rgb, alpha), alpha])
            else:
                result = alpha
            # a cut-out is the photo's own pixels: its colour profile (a phone's Display P3) goes with them
            write_image(target, result, icc=icc_profile(image) if args.cutout else None)
            log.info("%s -> %s", image, target)
    finally:
        if seg is not None:
            seg.close()
    return 1 if failed else 0


def cmd_export(args) -> int:
    from .models.export import build_rmbg, export_onnx, weights_fingerprint

    out = _output_arg(args.output)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"-o {out}: the output of vbg export is an .onnx file")
    from . import preflight

    preflight.check_not_an_input(out, [args.weights])
    _refuse_existing(out, args.overwrite)
    size_hw = None
    if not args.dynamic:
        text = args.size or "1024x1024"
        try:
            size_hw = tuple(int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text),) * 2
        except ValueError:
            raise ConfigError(f"--size {text!r} is not HxW (e.g. 256x256) or N") from None
        if len(size_hw) != 2 or not all(16 <= v <= 4096 for v in size_hw):
            raise ConfigError(f"--size {text!r} is out of range: H and W must be 16..4096")
    meta = {"vbg.random_init": "1" if args.random_init else "0"}
    if args.weights:
        meta["vbg.weights_sha256"] = weights_fingerprint(Path(args.weights)) if Path(args.weights).is_file() else ""
    net = build_rmbg(None if args.random_init else Path(args.weights), seed=args.seed)
    export_onnx(net, out, size_hw=size_hw, dynamic=args.dynamic, fp16=args.fp16, metadata=meta)
    shape = "dynamic N x 3 x H x W" if args.dynamic else f"1 x 3 x {size_hw[0]} x {size_hw[1]}"
    log.info("wrote %s (input 'input' %s, output 'output')", out, shape)
    return 0


VIDEO_SUFFIXES = {"mp4": ".mp4", "mov": ".mov", "webm": ".webm", "png": ""}


def _is_pattern(arg: str) -> bool:
    """A glob to expand; an existing file named like one ('talk [1080p].mp4') is taken as it is."""
    return any(c in arg for c in "*?[") and not Path(arg).exists()


def _expand_inputs(patterns: list[str], *, photos: bool = False) -> list[Path | str]:
    """Paths, globs and a leading ``~`` expanded (as ``--source``, ``--background`` and
    ``--record`` take it: "~/clips/*.mp4" in quotes); a folder of recordings (videos, no image
    frames) as its videos, or with ``photos`` (vbg segment) a folder as its images; a URL stays
    as it is (a Path would fold its '//')."""
    import glob

    from .media.open import is_url, local_path
    from .media.sequence import photos_in, videos_in

    in_folder = photos_in if photos else videos_in

    out: list[Path | str] = []
    for pat in patterns:
        if is_url(pat):
            out.append(pat)
            continue
        pat = local_path(pat)  # file:///x/talk.mp4, as the live --source takes it
        pat = os.path.expanduser(pat)
        if _is_pattern(pat):
            matches = [Path(m) for m in sorted(glob.glob(pat))]
            if not matches:
                raise ConfigError(f"{pat!r} matches no file: check the pattern")
            # a folder the pattern matches is an input only as a sequence's frames (an earlier run's
            # -o folder of videos beside the recordings stopped the batch as "no images in it")
            folders = [m for m in matches if m.is_dir() and not photos_in(m)]
            if folders and len(folders) < len(matches):
                log.info("%s: left out: %s (%s; name a folder to process the videos in it)", pat,
                         ", ".join(map(str, folders)), "a folder" if len(folders) == 1 else "folders")
                matches = [m for m in matches if m not in folders]
            out.extend(matches)
        elif Path(pat).is_dir() and (files := in_folder(Path(pat))):
            out.extend(files)
        elif photos and Path(pat).is_dir():
            raise InputError(f"{pat} holds videos, not photos: for them, vbg process {shlex.quote(pat)} -o OUT"
                             if videos_in(Path(pat))
                             else f"{pat} is a folder with no images in it: give image files (PNG, JPEG, WebP, HEIC, "
                                  "AVIF, BMP or TIFF) or a folder of them")
        else:
            out.append(Path(pat))
    return _once(out)


def _once(inputs: list[Path | str]) -> list[Path | str]:
    """``inputs`` each once (the same file named twice, by a pattern and by name: it was refused as
    two inputs "both written to" one output), said in one line."""
    seen: set[str] = set()
    kept: list[Path | str] = []
    twice: list[str] = []
    for src in inputs:
        key = src if isinstance(src, str) else os.path.realpath(src)
        if key in seen:
            twice.append(str(src))
            continue
        seen.add(key)
        kept.append(src)
    if twice:
        log.info("given more than once, processed once: %s", ", ".join(dict.fromkeys(twice)))
    return kept


def _is_batch(args: list[str]) -> bool:
    """Several inputs, a pattern, or a folder of recordings: -o is a folder of outputs."""
    from .media.open import is_url
    from .media.sequence import videos_in

    return len(args) > 1 or any(not is_url(a) and (_is_pattern(a) or videos_in(Path(os.path.expanduser(a))))
                                for a in args)  # a URL's "?" starts its query, not a pattern


OUTPUT_RULE = """\
what -o means (the same on every run, whatever exists there):
  one input       -o is the output itself: NAME.mp4/.m4v/.mkv (H.264), NAME.mov (ProRes),
                  NAME.webm (VP9), or a name without a suffix (or ending in /): a folder
                  of PNG frames.
                  --format can be left out; given, it must agree with -o.
  several inputs  -o is a folder; each input gives FOLDER/<input name>.<format>, with
  (a glob, or a   --format mp4 (default), mov (default with --alpha), webm, or png
  folder of       (FOLDER/<input name>/ holding its frames).
  videos)
  --overwrite replaces an existing output; a PNG folder only when it holds nothing but the
  frame_NNNNNN.png files of an earlier run. An output that is one of the inputs (the same
  file, a hard link or a symlink) is never written."""

def _format_agrees(fmt: str, suffix: str) -> bool:
    return VIDEO_SUFFIXES[fmt] == suffix or (fmt == "mp4" and suffix == ".m4v")


def _process_targets(inputs: list[Path], output: Path, fmt: str | None, alpha: bool, batch: bool,
                     raw: str | None = None) -> list[tuple[Path, bool]]:
    """(target, is a PNG sequence) per input, by ``OUTPUT_RULE``: from the names
    alone, so a second run writes what the first did. ``raw``: -o as typed
    (a trailing slash shown back in messages)."""
    from .media.encode import FORMATS as KNOWN_VIDEO_SUFFIXES  # suffix -> container: the files vbg writes

    raw = raw or str(output)
    suffix = "" if _written_as_folder(raw) else output.suffix.lower()
    if not batch:
        if suffix in KNOWN_VIDEO_SUFFIXES:
            if fmt and not _format_agrees(fmt, suffix):
                fix = (f"-o {output.with_suffix(VIDEO_SUFFIXES[fmt])}" if fmt != "png"
                       else f"-o {output.with_suffix('')}")
                raise ConfigError(f"-o {raw} is an {suffix} file but --format {fmt} asks for "
                                  f"{'a PNG folder' if fmt == 'png' else fmt}: drop --format, or name it {fix}")
            return [(output, False)]
        if suffix:
            raise ConfigError(f"-o {raw}: unknown output type {output.suffix!r}: use {', '.join(KNOWN_VIDEO_SUFFIXES)}, "
                              "or a name without a suffix (or ending in /) for a folder of PNG frames")
        if fmt and fmt != "png":
            name = Path(inputs[0]).stem if inputs else "out"
            raise ConfigError(f"-o {raw} (one input, no suffix) is a folder of PNG frames but --format {fmt} asks "
                              f"for a video file: name the file, -o {output / (name + VIDEO_SUFFIXES[fmt])}")
        return [(output, True)]
    if suffix in KNOWN_VIDEO_SUFFIXES:
        given = f"{len(inputs)} inputs were given" if len(inputs) != 1 else "the input is a pattern or a folder of videos"
        raise ConfigError(f"-o {raw} names one file but {given}: pass a folder, such as -o {output.with_suffix('')}")
    fmt = fmt or ("mov" if alpha else "mp4")
    targets = [(output / (_input_stem(i) + VIDEO_SUFFIXES[fmt]), fmt == "png") for i in inputs]
    _same_names(inputs, [t for t, _ in targets], "process")
    return targets


def _input_stem(src) -> str:
    """What an input's output is named after: a video's stem, a folder of frames' name, a frame
    pattern's folder's name (``shots/frame_%05d.png`` -> ``shots``)."""
    from .media.sequence import is_pattern

    p = Path(src)
    return (p.parent.resolve().name or "frames") if is_pattern(p) else p.stem


def _same_names(inputs: list, targets: list[Path], verb: str) -> None:
    """Two inputs whose outputs would be one file (``a/x.jpg`` and ``b/x.png`` both give
    ``OUT/x.png``): refused, naming them, before anything is written (the second would replace
    the first's output)."""
    fold = sys.platform in ("darwin", "win32")  # their usual file systems: Talk.mp4 and talk.mp4 are one file
    seen: dict[str, object] = {}
    for src, dst in zip(inputs, targets):
        key = str(dst).casefold() if fold else str(dst)
        if key in seen:
            raise ConfigError(f"{seen[key]} and {src} would both be written to {dst}: {verb} them into different "
                              "folders, or rename one")
        seen[key] = src


def _check_process_target(dst: Path, sequence: bool, inputs: list, overwrite: bool) -> None:
    """An output is not an input, not being written by another run, not there already
    (unless --overwrite), and a PNG folder to replace holds nothing but frames."""
    from . import preflight
    from .errors import OutputError
    from .fsutil import foreign_files, not_a_sequence_message

    preflight.check_not_an_input(dst, inputs)
    preflight.check_not_busy(dst)
    if not os.path.lexists(dst):
        return
    if not overwrite:
        raise OutputError(f"{dst} already exists: pass --overwrite to replace it, or choose another -o")
    if sequence:
        foreign = foreign_files(dst)
        if foreign:
            raise OutputError(not_a_sequence_message(dst, foreign))
    elif dst.is_dir():
        raise OutputError(f"-o {dst} is a folder: name the output file, or remove the folder")


def _auto_workers(seg_cfg, cfg, first_info) -> tuple[list, str]:
    """``--workers auto`` on a CPU: one session or two, by what they measure on this machine
    at the first readable input's frame size (``vbg.offline.workers``); the segmenters and
    ``: why``. ``first_info``: that input's ``VideoInfo`` from the start-up checks, None for a
    stream (not opened twice)."""
    from .models.hub import cache_dir
    from .models.resolve import resolve_model
    from .offline.process import plan_buffers
    from .offline.workers import CACHE_NAME, open_auto

    frame_hw = (720, 1280)
    if first_info is not None:
        info = first_info.upright()
        frame_hw = (info.height, info.width)
    log.debug("--workers auto: timed on %dx%d frames", frame_hw[1], frame_hw[0])
    frames = plan_buffers(frame_hw, cfg.mode, cfg.temporal.window, 2, cfg.memory << 20).bytes
    source = resolve_model(seg_cfg.model, variant=seg_cfg.variant, backend=seg_cfg.backend)
    segs, choice = open_auto(seg_cfg, source, frame_hw, frames, cache_file=cache_dir() / CACHE_NAME)
    return segs, f" (--workers auto: {choice.reason})"


def process_config(args, found: list[VbgError] | None = None):
    """vbg process's config: the default file, the ``--config`` file, the environment
    (``vbg.userconfig``), then the flags given, with ``--alpha`` / ``--matte``. A bad ``--size``
    goes to ``found`` (model settings left as the layers below have them), so that it is reported
    with every other start-up problem; a bad config file or variable raises at once."""
    from . import config as cfgmod
    from .userconfig import Layer, settle

    root = cfgmod.ProcessConfig()
    updates = _flag_updates(args, root)
    if args.alpha or args.matte:
        updates.setdefault(cfgmod.OWN_SECTION, {})["mode"] = "rgba" if args.alpha else "matte"
    size = updates.get("model", {}).pop("size", None)
    cfg = settle(root, [*_lower_layers(args, root), Layer.of(updates, "flags")]).cfg
    if size is not None:
        try:
            cfg = cfgmod.apply(cfg, {"model": {"size": size}}, check=False)
        except ConfigError as e:
            if found is None:
                raise
            found.append(e)
    return cfg


@dataclass(frozen=True)
class _ProcessPlan:
    """vbg process once its start-up checks passed."""

    cfg: object  # ProcessConfig, its model settled
    inputs: list  # Path or URL per input
    planned: list  # (output path, is a PNG sequence) per input
    batch: bool  # several inputs, or a pattern: the exit code is 1 when any failed
    workers: int | None  # None: --workers auto
    first_info: object = None  # the first readable input's VideoInfo (probed once, at the checks); None: a URL
    skipped: tuple = ()  # (input, its output already there) per input --skip-existing left


def _check_process(args) -> _ProcessPlan:
    """Every cheap check of vbg process first, all reported at once (``Problems``): nothing is
    loaded or encoded before."""
    from . import preflight

    size_problem: list[VbgError] = []
    cfg = process_config(args, size_problem)  # a bad config file: its error alone, at once
    found: list[VbgError] = []
    inputs = preflight.collect(found, _expand_inputs, args.inputs) or []
    batch = _is_batch(args.inputs)
    skip = getattr(args, "skip_existing", False)
    if skip and args.overwrite:
        found.append(ConfigError("--skip-existing leaves the outputs already there and --overwrite replaces them: "
                                 "give one of the two"))
    return plan_process(cfg, inputs, _output_arg(args.output), fmt=args.format, batch=batch, overwrite=args.overwrite,
                        workers=args.workers, raw_output=args.output, found=found, size_problem=size_problem,
                        skip_existing=skip and not args.overwrite)


def plan_process(cfg, inputs: list, output: Path, *, fmt: str | None = None, batch: bool = False,
                 overwrite: bool = False, workers: str = "auto", raw_output: str | None = None,
                 found: list[VbgError] | None = None, size_problem: tuple | list = (),
                 skip_existing: bool = False) -> _ProcessPlan:
    """vbg process's checks of ``cfg`` (a ``ProcessConfig``), its inputs and ``-o``, added to the
    problems already ``found`` and raised together (``Problems``); also ``vbg.process_file``'s.
    ``skip_existing``: an input whose output is there already is left out (``skipped``), unchecked."""
    from dataclasses import replace

    from . import preflight
    from .config import problems as config_problems
    from .media.encode import encoder_for, output_format
    from .media.open import is_url, special_file
    from .media.sequence import find_sequence
    from .offline.workers import parse_workers

    found = [] if found is None else found
    bg = cfg.background
    mode = cfg.mode
    planned = preflight.collect(found, _process_targets, inputs, output, fmt, mode == "rgba",
                                 batch, raw_output) or []
    skipped: list = []
    if skip_existing and len(planned) == len(inputs):
        # an output that is an input is never "done": it is refused below, whatever the flags
        there = [os.path.lexists(dst) and not _is_an_input(dst, [*inputs, bg.background]) for dst, _ in planned]
        skipped = [(src, dst) for src, (dst, _), t in zip(inputs, planned, there) if t]
        inputs = [src for src, t in zip(inputs, there) if not t]
        planned = [p for p, t in zip(planned, there) if not t]
    sequences = []  # inputs that are image sequences (vbg.media.sequence), with the folder they read
    for src in inputs:
        if is_url(src) or src.is_file():
            continue
        try:
            seq = find_sequence(src)
        except InputError as e:
            found.append(e)
            continue
        if seq is not None:
            sequences.append((src, seq.files[0].parent))
            continue
        kind = special_file(src)
        found.append(InputError(f"{src}: {f'is {kind}, not a file' if kind else 'no such file'}: "
                                "give a video file"))
    if cfg.fps is not None and not sequences and inputs and not found:
        found.append(ConfigError(f"--fps sets the frame rate of an image sequence, and {inputs[0]} is a video with its "
                                 "own: drop --fps"))
    first_info = _no_input_readable(inputs, found, cfg.fps, {src for src, _ in sequences})
    for folder in dict.fromkeys(dst.parent for dst, _ in planned):  # a batch's: -o itself, once
        preflight.collect(found, preflight.check_output_folder, folder, "-o", raw_output or output)
        preflight.collect(found, preflight.check_folder_writable, folder, "-o", raw_output or output)
    read = [*inputs, *(folder for _, folder in sequences), bg.background]  # a sequence's frames' folder too
    for dst, sequence in planned:
        preflight.collect(found, _check_process_target, dst, sequence, read, overwrite)
    from .ranges import OUTPUT_MODES

    # an unknown mode is said by config_problems alone (output_format took it for an alpha one)
    planned_known = planned if mode in OUTPUT_MODES else []
    for dst in {t.suffix.lower(): t for t, seq in planned_known if not seq}.values():  # a batch shares one format
        preflight.collect(found, output_format, dst, mode)
    one_per_format = {(t.suffix.lower(), seq): (t, seq) for t, seq in planned_known}.values()
    encoders = [preflight.collect(found, encoder_for, dst, mode, cfg.encoder, cfg.model.gpu, sequence=seq)
                for dst, seq in one_per_format]  # NVENC probed once
    encoder = next((e for e in encoders if e is not None), None)  # None: no H.264 output
    found += config_problems(cfg)
    if mode == "rgb":  # --alpha and --matte use none: said below, not refused
        preflight.collect(found, preflight.check_background, bg.background)
    found += size_problem
    seg_cfg = None if size_problem else cfg.model
    preflight.collect(found, preflight.check_gpu_index, cfg.model.gpu)
    workers = preflight.collect(found, parse_workers, workers, seg_cfg) if seg_cfg else None
    notes: list[str] = []
    if seg_cfg is not None:
        seg_cfg = preflight.settle_model(seg_cfg, found, notes)
    unused = next((f"{name} {value}" for name, value in (("image", bg.background), ("colour", bg.color),
                                                         ("blur", bg.blur)) if value is not None), None)
    if mode != "rgb" and unused is not None:  # from a config file, often: said, not refused
        notes.append(f"{'--alpha' if mode == 'rgba' else '--matte'} writes "
                     f"{'the person over transparency' if mode == 'rgba' else 'the mask alone'}: the background "
                     f"{unused} is not used")
    if found:
        raise Problems(found)
    for note in notes:
        log.warning("%s", note)
    if encoder is not None:
        log.info("%s", encoder.describe())
    if workers is not None and workers > 1 and seg_cfg.threads is None:
        seg_cfg = replace(seg_cfg, threads=max(1, (os.cpu_count() or 1) // workers))
    return _ProcessPlan(replace(cfg, model=seg_cfg), inputs, planned, batch, workers, first_info, tuple(skipped))


def _name_leftovers(plan: _ProcessPlan) -> None:
    """What killed runs left in the output folders, named (``vbg.media.leftovers``)."""
    from .media.leftovers import rescue_killed

    outputs = [dst for dst, _ in plan.planned]
    for folder in dict.fromkeys(dst.parent for dst in outputs):
        rescue_killed(folder, avoid=outputs)


def _is_an_input(dst: Path, read: list) -> bool:
    from . import preflight

    try:
        preflight.check_not_an_input(dst, read)
    except VbgError:
        return True
    return False


def _say_skipped(plan: _ProcessPlan, args) -> None:
    """--skip-existing: the inputs left, in one line (a JSON ``skipped`` event each)."""
    if not plan.skipped:
        return
    if args.json:
        from .progress import Progress

        for src, dst in plan.skipped:
            Progress(str(src), None, mode="json", stream=sys.stdout).emit("skipped", output=str(dst))
        return
    names = ", ".join(str(src) for src, _ in plan.skipped[:5]) + (
        f" and {len(plan.skipped) - 5} more" if len(plan.skipped) > 5 else "")
    left = f"; {len(plan.inputs)} to do" if plan.inputs else ": nothing left to do"
    log.warning("skipping %d input(s) whose output is already there (--overwrite redoes them): %s%s",
                len(plan.skipped), names, left)  # a warning: -q, one line per file, says it too


def _no_input_readable(inputs: list, found: list, fps: float | None = None, sequences=frozenset()):
    """When not one input can be read as a video, each one's reason goes to ``found``: said before
    the model loads. Inputs are probed until one reads (one probe for most runs); a batch with a
    readable file goes on, and the others fail in their turn. A URL is not opened twice. Returns
    the first readable input's ``VideoInfo`` (``--workers auto`` sizes its timing by it), or None.
    ``sequences``: the inputs that are image sequences, read at ``fps``."""
    from .errors import InputError
    from .media.info import probe
    from .media.open import is_url

    why: list[VbgError] = []
    for src in inputs:
        if is_url(src):
            return None
        if not (src.is_file() or src in sequences):  # reported already
            continue
        try:
            return probe(src, fps=fps)
        except InputError as e:
            why.append(e)
    found.extend(why)
    return None


def open_segmenters(plan: _ProcessPlan, segs: list) -> None:
    """One segmenter per worker (``--workers auto``: as many as were measured best), appended
    to the caller's ``segs`` as each opens, so the caller closes those open when a later one fails.
    Two or more CPU sessions of one model share one copy of its weights."""
    from .inference import create_segmenter
    from .inference.onnx_backend import weights_shared
    from .models.hub import cache_dir

    seg_cfg = plan.cfg.model
    why = ""
    if plan.workers is None:
        segs[:], why = _auto_workers(seg_cfg, plan.cfg, plan.first_info)
        seg = segs[0]
    else:
        with weights_shared(cache_dir()) if plan.workers > 1 else contextlib.nullcontext():
            seg = create_segmenter(seg_cfg)
            segs.append(seg)
            for _ in range(plan.workers - 1):
                segs.append(create_segmenter(seg_cfg, seg.source))
    on = ", ".join(seg.providers) or "the device its session opens on at the first frame"  # weights: exported then
    log.info("model %s on %s, %d worker(s) of %s thread(s)%s", seg.source.label, on,
             len(segs), getattr(seg, "threads", None) or "all", why)


def _ray_address(args) -> str | None:
    """``--ray``'s address: None for a local runtime; a word that is no address is refused (most
    likely an input that followed a bare --ray)."""
    addr = args.ray
    if addr == "":
        return None
    if addr == "auto" or addr.startswith("ray://") or (":" in addr and addr.rpartition(":")[2].isdigit()):
        return addr
    raise ConfigError(f"--ray {addr!r} is no cluster address: use auto, ray://HOST:PORT or HOST:PORT, or put a bare "
                      "--ray after the inputs")


def cmd_process(args) -> int:
    from .offline.process import FileProcessor

    if getattr(args, "ray", None) is None and getattr(args, "ray_segment", None) is not None:
        raise ConfigError("--ray-segment applies to --ray runs only: add --ray, or drop it")
    if getattr(args, "ray", None) is not None:
        address = _ray_address(args)
        if args.ray_segment is not None:
            from .ranges import RAY_SEGMENT

            RAY_SEGMENT.check("--ray-segment", args.ray_segment)
        from .offline.distributed import import_ray

        import_ray()  # Ray missing: its one line before any other check
        from .offline.workers import parse_workers

        # --workers counts Ray actors here, each with its own CPUs: the local plan is made for one
        # session, so that the model's threads are left to the actors' share.
        workers = parse_workers(args.workers, None)  # None for auto
        local = argparse.Namespace(**{**vars(args), "workers": "1"})
        plan = _check_process(local)
        _say_skipped(plan, args)
        if not plan.inputs:
            return 0
        _name_leftovers(plan)
        return _process_on_ray(plan, args, address, workers)
    plan = _check_process(args)
    _say_skipped(plan, args)
    if not plan.inputs:
        return 0
    _name_leftovers(plan)
    proc = None

    def stop() -> None:  # finish the frames in flight, keep a playable partial file
        if proc is not None:
            proc.stop.set()

    # Before any file is open there is nothing to finish: the first signal stops at once.
    segs: list = []
    with _stop_on_signals(stop, ready=lambda: proc is not None):
        try:
            open_segmenters(plan, segs)
            proc = FileProcessor(plan.cfg, *segs)
            rc = _process_files(proc, plan, args)
        finally:
            for one in segs:
                one.close()
    return rc


_INTERRUPTED = 130


def _process_on_ray(plan: _ProcessPlan, args, address: str | None, workers: int | None) -> int:
    """vbg process --ray: the batch on a Ray cluster (``vbg.offline.distributed``); the exit code
    as a local batch's."""
    from dataclasses import replace

    from .errors import OutputError
    from .media.open import is_url
    from .media.sequence import find_sequence
    from .models.resolve import resolve_model
    from .offline.distributed import SEGMENT_S, RayRunner, import_ray, plan_workers, ray_runtime
    from .progress import Progress

    for src in plan.inputs:  # checked already: find_sequence raises nothing here
        if not is_url(src) and find_sequence(src) is not None:
            raise ConfigError(f"--ray takes video files, and {src} is an image sequence: process it without --ray")
    seg_cfg = plan.cfg.model
    source = resolve_model(seg_cfg.model, variant=seg_cfg.variant, backend=seg_cfg.backend)  # once, here
    pmode = "json" if args.json else "quiet" if args.quiet else "bar"
    stream = sys.stdout if args.json else sys.stderr
    files, codes = [], []
    for src, (dst, sequence) in zip(plan.inputs, plan.planned):
        if dst.exists() and not args.overwrite:
            progress = Progress(str(src), None, mode=pmode, stream=stream)
            msg = f"{dst} already exists: pass --overwrite to replace it, or choose another -o"
            progress.fail(msg)
            _error(f"{src}: {msg}")
            codes.append(OutputError.exit_code)
            continue
        files.append((src, dst, sequence))
    runner = None

    def stop() -> None:
        if runner is not None:
            runner.stop.set()

    def progress_for(src) -> Progress:  # per file: its events and its summary line; the bar is the job's
        return Progress(str(src), None, mode="json" if args.json else "quiet", stream=stream)

    def on_done(f, res, error) -> None:
        if error is not None:
            f.progress.fail(str(error))
            _error(str(error) if str(error).startswith(f"{f.src}:") else f"{f.src}: {error}")
            codes.append(error.exit_code)
            return
        for w in res.warnings:
            log.info("%s: %s", f.src, w)
        f.progress.done = res.frames
        if job_bar is not None and job_bar.tty:
            job_bar.clear_line()
        f.progress.finish(f"{f.src} -> {res.output}: {_frames_word(res.frames)} in {res.seconds:.1f} s "
                          f"({res.fps:.1f} fps, model {res.infer_ms_p50:.0f} ms/frame, Ray)", output=res.output,
                          interrupted=False)
        codes.append(0)

    job_bar = Progress(f"{len(files)} file(s) on Ray", None, mode="bar", stream=stream) if pmode == "bar" else None
    with _stop_on_signals(stop, ready=lambda: runner is not None):
        with ray_runtime(address) as dashboard:
            if dashboard:
                log.info("Ray dashboard: %s", dashboard)
            job = plan_workers(import_ray(), plan.cfg, workers)
            job = replace(job, segment_s=args.ray_segment or SEGMENT_S)
            log.info("model %s, %d Ray worker(s) of %g CPU(s)%s", source.label, job.workers, job.num_cpus,
                     f" and {job.num_gpus:g} GPU(s)" if job.num_gpus else "")
            runner = RayRunner(plan.cfg, source, job)
            try:
                results = runner.run(files, progress_for, job_bar, on_done)
            finally:
                if job_bar is not None and job_bar.tty:  # the bar's row goes: the summaries stay
                    job_bar.clear_line()
    if runner.stop.is_set() or any(r.interrupted for r in results):
        unfinished = [r.input for r in results if r.interrupted]
        if unfinished:
            _error(f"interrupted: {len(unfinished)} file(s) not written (a --ray run keeps no partial file): "
                   + ", ".join(unfinished[:5]) + (" ..." if len(unfinished) > 5 else ""))
        return _INTERRUPTED
    failed = [c for c in codes if c]
    if failed and not plan.batch:
        return failed[-1]
    return 1 if failed else 0


def _process_files(proc, plan: _ProcessPlan, args) -> int:
    """Each input in turn (a failed one reported, the next one started); the exit code."""
    failed = 0
    last_code = 1
    todo = list(zip(plan.inputs, plan.planned))
    for k, (src, (dst, sequence)) in enumerate(todo):
        if streams.broken() or proc.stop.is_set():  # Ctrl-C between two files: the next one is not begun
            _say_not_begun([s for s, _ in todo[k:]], args.overwrite)
            return _INTERRUPTED
        code = _process_file(proc, src, dst, sequence, args)
        if code == _INTERRUPTED:
            _say_not_begun([s for s, _ in todo[k + 1:]], args.overwrite)
            return code
        if code:
            failed += 1
            last_code = code
    if failed and not plan.batch:
        return last_code  # one input: the exit code says why it failed
    return 1 if failed else 0


def _say_not_begun(left: list, overwrite: bool = False) -> None:
    """The inputs an interrupted batch did not begin, named (they went unsaid: the same command
    run again stops at the first output already there)."""
    if left:
        names = ", ".join(map(str, left[:5])) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        how = "with --skip-existing in place of --overwrite" if overwrite else "with --skip-existing"
        _error(f"interrupted: {len(left)} file(s) not begun: {names} (the same command {how} does them, leaving "
               "the outputs done)")


def _frames_word(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _process_file(proc, src, dst: Path, sequence: bool, args) -> int:
    """One input to its output, with its progress line: 0, the failure's exit code, or 130 (interrupted)."""
    from .errors import OutputError
    from .progress import Progress

    pmode = "json" if args.json else "quiet" if args.quiet else "bar"
    progress = Progress(str(src), None, mode=pmode, stream=sys.stdout if args.json else sys.stderr)
    if dst.exists() and not args.overwrite:
        msg = f"{dst} already exists: pass --overwrite to replace it, or choose another -o"
        progress.fail(msg)
        _error(f"{src}: {msg}")
        return OutputError.exit_code
    try:
        res = proc.process(src, dst, progress, sequence=sequence, overwrite=args.overwrite)
    except VbgError as e:
        progress.fail(str(e))
        # the input is named once (the reader's own messages start with it: "zero.mp4: ...", "zero.mp4 has ...")
        _error(str(e) if str(e).startswith((f"{src}:", f"{src} ")) else f"{src}: {e}")
        return e.exit_code
    for w in res.warnings:
        log.info("%s: %s", src, w)
    progress.done = res.frames
    summary = (f"{src} -> {res.output}: {_frames_word(res.frames)} in {res.seconds:.1f} s "
               f"({res.fps:.1f} fps, model {res.infer_ms_p50:.0f} ms/frame)")
    if res.interrupted:
        summary = (f"interrupted: {summary} (a playable partial file)" if res.output is not None
                   else f"interrupted: {src}: nothing written")  # stopped before its first frame
    progress.finish(summary, output=res.output, interrupted=res.interrupted)
    return _INTERRUPTED if res.interrupted else 0


def cmd_models(args) -> int:
    from .models import hub
    from .models.spec import MODELS

    if args.download is not None:
        from .models.resolve import hub_variant
        from .models.spec import get_spec

        spec = get_spec(args.download)
        if spec.bundled is not None:
            print(f"{spec.name} comes with vbg: nothing to download ({spec.bundled_path()})")
            return 0
        path = hub.fetch(spec, hub_variant(args.variant, "onnx"))
        print(path)
        log.info("%s (%s) is on this machine: vbg runs it without a network", spec.name, args.variant)
        return 0

    for spec in MODELS.values():
        if spec.bundled:
            state = "bundled"
        else:
            cached = [v for v in spec.hub_files if hub.cached_path(spec, v) is not None]
            state = f"cached: {', '.join(cached)}" if cached else f"downloaded on first use from {spec.hub_repo}"
        print(f"{spec.name:18} {spec.description}\n{'':18} licence: {spec.license} ({spec.license_url}); {state}")
    return 0


def cmd_backgrounds(args) -> int:
    from .compositing.bundled import describe_bundled

    for bg in describe_bundled():
        print(f"{bg.name:18} {bg.width}x{bg.height}, {bg.nbytes / 1000:.0f} kB")
    print("use one with --background NAME (e.g. vbg --background beach.jpg); a file of yours with that name wins")
    return 0


def cmd_doctor(args) -> int:
    import json

    from .doctor import format_report, run_checks

    report = run_checks()
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.ok else 1


SUBCOMMANDS = ("segment", "export", "process", "models", "backgrounds", "doctor", "config", "service",
               "ctl", "completion", "man")


def _background_id(client, what: str) -> str:
    """``vbg ctl background WHAT``'s id: a video file in the filter's backgrounds folder by its
    id, any other picture or video file of the user's uploaded (a video the filter does not play
    refused here, before it is sent), else a bundled or backgrounds-folder background by file name
    or stem (any case)."""
    from .media.sequence import VIDEO_FILES

    path = Path(os.path.expanduser(what))
    if path.is_file() and path.suffix.lower() in VIDEO_FILES:
        from .compositing.backgrounds import OWN_DEMUXERS

        folder = Path(client.request("GET", "/api/backgrounds")["folder"])
        if path.suffix.lower() in OWN_DEMUXERS and path.resolve().parent == folder.resolve():
            return f"folder:{path.name}"  # played from where it is: not copied
    if path.is_file():
        return client.upload_file(path)
    if os.sep in what or (os.altsep and os.altsep in what):
        from .errors import InputError

        if path.is_dir():
            raise InputError(f"background {what} is a folder, not a file: give a picture or video file in it")
        raise InputError(f"background {what}: no such file: check the path")
    listing = client.request("GET", "/api/backgrounds")
    key = what.lower()
    for item in listing["items"]:
        kind, _, name = item["id"].partition(":")
        if kind in ("folder", "bundled") and key in (name.lower(), item["label"].lower()):
            return item["id"]  # the user's folder first: it is listed first
    names = sorted({i["label"] for i in listing["items"] if i["kind"] in ("bundled", "folder")})
    raise ConfigError(f"background {what!r} is neither a file nor a picture of vbg's or of {listing['folder']}: "
                      f"use a file path or one of {', '.join(names)}")


def cmd_ctl(args) -> int:
    import json

    from .control.client import Client, format_status
    from .streams import printable

    client = Client()
    what = getattr(args, "what", None)
    if args.ctl == "status":
        s = client.status()
        print(json.dumps(s, indent=2) if args.json else format_status(s))
        return 0
    if args.ctl == "page":
        client.status()  # the filter answers: else one line saying it does not
        url = client.page_url()
        print(url)
        if not args.print_only:
            streams.flush()
            open_url(client.ticket_url(), lasting=url)
        return 0
    if args.ctl in ("effect", "mirror"):
        on = {"on": True, "off": False}.get(what)
        if on is None:
            on = not client.status()[args.ctl]
        ans = client.post(f"/api/{args.ctl}", {"on": on})
        print(f"{args.ctl} {'on' if ans[args.ctl] else 'off'}")
        return 0
    if args.ctl == "model":
        ans = client.post("/api/model", {"name": what})
        print(f"model {printable(str(ans['model']))}: " + ("loading; vbg ctl status shows when it runs"
                                                          if ans.get("loading") else "already running"))
        return 0
    if args.ctl == "background":
        body = {"id": _background_id(client, what)}
    elif args.ctl == "color":
        body = {"color": what}
    else:
        body = {"blur": what}
    ans = client.post("/api/background", body)
    print(f"background {printable(ans['background']['label'])}")  # a file name's newline or escape code
    return 0

def build_live_parser() -> argparse.ArgumentParser:
    S = argparse.SUPPRESS
    p = argparse.ArgumentParser(
        prog="vbg", argument_default=S,
        description="Live virtual background: camera -> person segmentation -> new background -> virtual camera. "
                    "Other commands: vbg ctl (control this filter while it runs), vbg segment, vbg process, vbg export, "
                    "vbg models, vbg backgrounds, vbg doctor, vbg config, vbg service, vbg completion, vbg man "
                    "(vbg COMMAND --help).")
    p.add_argument("--version", action="version", version=f"vbg {__version__}")
    p.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file (flags and VBG_* "
                   "environment variables override it; it overrides the default config file)")
    _add_default_config_option(p)
    p.add_argument("-q", "--quiet", action="store_true", default=False, help="no status line, only warnings")
    p.add_argument("-v", "--verbose", action="store_true", default=False, help="debug messages")
    from .config import LiveConfig, sections

    for name, section in sections(LiveConfig).items():
        if name == "model":
            _add_model_options(p, "default: 256 (live)", defaults=False)
        else:
            add_setting_options(p.add_argument_group(BACKGROUND_TITLE if name == "background" else name), section,
                                defaults=False)
    return p


def _flag_updates(args, root) -> dict[str, dict]:
    """``{section: {setting: value}}`` of the options given on the command line (the parser
    leaves the others out), for ``vbg.config.apply``."""
    from dataclasses import fields

    from .config import flag_of, sections

    updates: dict[str, dict] = {}
    for name, section in sections(root).items():
        for f in fields(section):
            if flag_of(f) is not None and hasattr(args, f.name):
                updates.setdefault(name, {})[f.name] = getattr(args, f.name)
    return updates


def live_config(args):
    from . import config as cfgmod
    from .userconfig import Layer, settle

    root = cfgmod.LiveConfig()
    # unchecked: the start-up checks (preflight.live) report every problem at once
    return settle(root, [*_lower_layers(args, root), Layer.of(_flag_updates(args, root), "flags")]).cfg


def open_url(url: str, lasting: str | None = None) -> None:
    """The control page in the user's browser: ``url``, a one-time address (the browser's command
    line is every local user's to read); the warning when none opens names ``lasting``, the page's
    address with its token (shown on a terminal only)."""
    import webbrowser

    try:
        opened = webbrowser.open(url)
    except Exception:  # webbrowser's own errors (a broken BROWSER setting)
        opened = False
    if not opened:
        log.warning("no web browser could be opened: open %s yourself", lasting or url, extra=_token_shown())


def _announce(cfg, opener: Callable[[str], None] | None = None):
    """What the live filter does once its control server listens: the page's address in one line
    and, with ``--ui``, the page in a browser (``opener``: tests' stand-in for ``open_url``)."""
    def on_control(server) -> None:
        # The token shows on a terminal (the page opens only with it); a log file, a pipe or the
        # journal, which others may read, get ?token=***, and vbg ctl page opens the page instead.
        log.info("control: %s  (vbg ctl --help)", server.url, extra=_token_shown())
        if cfg.control.ui:
            if opener is not None:
                opener(server.ticket_url())
            else:
                open_url(server.ticket_url(), lasting=server.url)
    return on_control


def _reloadable(args) -> str | None:
    """What SIGHUP reads again, named for its log line: ``--config FILE`` and/or the default
    config file when it is read and there; None when neither (SIGHUP then stops the run)."""
    from .userconfig import default_path

    names = []
    if not getattr(args, "no_default_config", False):
        home = default_path()
        if home.is_file():
            names.append(f"the default config {home}")
    if getattr(args, "config", None):
        names.append(f"--config {args.config}")
    return " and ".join(names) or None


def reload_config(args, pipeline) -> str:
    """SIGHUP: the config files (the default one, ``--config``) read again and checked as at
    start, with the environment and the flags on top; what can change while live applied. The
    one line to log: what changed, what needs a restart, or why a file was refused (the running
    settings kept)."""
    from . import preflight
    from .config import problems as config_problems

    what = _reloadable(args) or "the config"

    try:
        cfg = live_config(args)
        found: list[VbgError] = list(config_problems(cfg))
        preflight.collect(found, preflight.check_background, cfg.background.background)
        notes: list[str] = []
        from dataclasses import replace

        cfg = replace(cfg, model=preflight.settle_model(cfg.model, found, notes))
        if found:
            raise Problems(found)
        applied, restart = pipeline.reconfigure(cfg)
    except VbgError as e:
        return f"{what} not reloaded, the running settings kept: {e}"
    parts = [f"{what} reloaded: "
             + (f"applied {', '.join(applied)}" if applied else "nothing to change while live")]
    if restart:
        parts.append(f"needs a restart: {', '.join(restart)}")
    return "; ".join(parts)


def _has_terminal() -> bool:
    """Whether this process has a controlling terminal now: none for a service, and none any more
    once its terminal hung up (the kernel takes it from the whole session before the SIGHUP)."""
    if not hasattr(os, "O_NOCTTY"):  # no controlling terminals (Windows), no hang-up to tell apart
        return False
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


@contextlib.contextmanager
def _live_signals(args, pipeline):
    """While the live filter runs: SIGUSR1 toggles the effect; SIGHUP reloads the config files
    (``--config``, the default config file) when there are any (without them it stops the run,
    as a closed terminal's hang-up does). A SIGHUP that comes because the terminal vbg was
    started in went away (the window closed, the ssh session dropped) stops the run all the
    same: nobody is left to see it, and the camera would stay on. ``kill -HUP`` from elsewhere,
    with the terminal still there, or to a service, which never had one, reloads."""
    import signal

    from .sigwork import SignalWork

    old = {}
    had_terminal = _has_terminal()
    work = SignalWork()  # the toggle and the reload take locks: never inside the handler (vbg.sigwork)

    def toggle() -> None:
        if pipeline.toggle_effect():
            log.info("SIGUSR1: effect %s", "on" if pipeline.control.view.effect else "off")

    def reload() -> None:
        try:
            line = reload_config(args, pipeline)
        except Exception as e:  # never into the run: a reload that fails keeps it going
            line = f"{_reloadable(args) or 'the config'} not reloaded ({type(e).__name__}: {e})"
        log.warning("%s", line) if "not reloaded" in line else log.info("%s", line)

    def on_usr1(signum, frame):
        work.post(toggle)

    def on_hup(signum, frame):
        if had_terminal and not _has_terminal():  # a hang-up: stop as without a config
            stop = old.get(signum)
            if callable(stop):
                stop(signum, frame)
                return
            _interrupt(signum, frame)
            return
        _DEFERRED.clear()  # (a hang-up put off during start-up is this reload: a later Ctrl-C stops cleanly)
        work.post(reload)

    if threading.current_thread() is threading.main_thread():
        if hasattr(signal, "SIGUSR1"):
            old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_usr1)
        hup = getattr(signal, "SIGHUP", None)
        if _reloadable(args) and hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
            old[hup] = signal.signal(hup, on_hup)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        work.close()


def cmd_live(args, *, opener: Callable[[str], None] | None = None) -> int:
    from . import preflight
    from .pipeline import LivePipeline

    plan = preflight.live(live_config(args))
    for note in plan.notes:
        log.warning("%s", note)
    pipeline = LivePipeline(plan.cfg, on_control=_announce(plan.cfg, opener))
    interactive = sys.stderr.isatty()
    to_systemd = _service_status()

    def on_status(line: str) -> None:
        if to_systemd(line) or args.quiet:
            return
        if interactive:
            # one row rewritten in place: it must not wrap (the next "\r" returns to the start of its
            # last row only), and spaces clear what a longer line before it left
            from .stats import fit_status_line

            width = max(1, streams.columns(sys.stderr) - 1)
            text = fit_status_line(line, width)
            with streams.ROW_LOCK:
                print("\r" + text + " " * (width - streams.cells(text)), end="", file=sys.stderr, flush=True)
                streams.row_drawn(width)
        else:
            log.info("%s", line)

    try:
        # Still starting (a model download, a camera opening): nothing is flowing yet, so the
        # first signal stops at once; what was opened is closed as the set-up unwinds (exit 130).
        with _stop_on_signals(pipeline.stop, ready=pipeline.started.is_set), _live_signals(args, pipeline):
            stats = pipeline.run(on_status=on_status)
    finally:
        to_systemd(None)
        if interactive and not args.quiet:
            with streams.ROW_LOCK:
                print(file=sys.stderr)
                streams.row_drawn(None)
    log.info("%s", stopped_line(stats))
    return 0


def stopped_line(stats) -> str:
    """The live filter's last line: frames out (and camera frames dropped, where any were), the
    whole run's output rate (the status line's is the last 120 frames'), the model's time, latency."""
    snap = stats.snapshot()
    n, dropped = snap["out_frames"], snap["dropped"]
    head = f"stopped after {n} frames" + (f" ({dropped} camera frames dropped: the render fell behind)"
                                          if dropped else "")
    rate = f": {stats.run_fps():.1f} fps out, " if n > 1 else ": "
    return (head + rate + f"model {snap['infer_ms_p50']:.1f} ms p50, latency {snap['latency_ms_p50']:.0f}/"
            f"{snap['latency_ms_p95']:.0f} ms p50/p95")


_JOURNAL = [False]  # stderr goes to the journal (a systemd service): no "vbg: " prefix, a priority instead


def _error(problem) -> None:
    """The one line of an error (a newline in a file name shown escaped, on the same line)."""
    with streams.ROW_LOCK:
        streams.clear_row(sys.stderr)
        print(f"{'<3>' if _JOURNAL[0] else 'vbg: '}error: {streams.printable(str(problem))}", file=sys.stderr)


class _JournalLine(logging.Formatter):
    """A log line as journald reads it from stderr: ``<N>`` (the syslog priority) first, no time
    stamp or colour (journald adds its own), on one line."""

    PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

    def format(self, record) -> str:
        prio = next((p for level, p in self.PRIORITIES if record.levelno >= level), 7)
        return f"<{prio}>" + streams.printable(super().format(record))


class _OneLine(logging.Formatter):
    """Each message on one line: control characters (a file name's newline) escaped, and the
    secrets of URLs hidden, except in a record logged with ``extra=SHOWS_TOKEN`` (the control
    page's address on a terminal, whose token the user needs: ``_token_shown``)."""

    def formatMessage(self, record) -> str:
        return streams.printable(super().formatMessage(record), redact=not getattr(record, "shows_token", False))


SHOWS_TOKEN = {"shows_token": True}


def _token_shown() -> dict:
    """``extra=`` for a line with the control page's address: its token shown only on a terminal
    (a log file written with the usual umask would hand it, and the camera's picture, to any
    local user)."""
    return SHOWS_TOKEN if streams.is_terminal(sys.stderr) else {}


class _RowHandler(logging.StreamHandler):
    """A log line on a row of its own: the progress bar or status line being redrawn on the
    terminal is blanked first (the line ran on from the bar's end). It writes to ``sys.stderr``
    as it is at each line: a program that calls ``main`` and then swaps stderr (a test's captured
    stream, closed after it) gets its lines where stderr is now, not an error on a closed file."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler sets it: sys.stderr is looked up instead
        pass

    def emit(self, record) -> None:  # called under the handler's lock
        with streams.ROW_LOCK:  # not between a redraw and its row_drawn, nor beside another handler's line
            streams.clear_row(self.stream)
            super().emit(record)


def _setup_logging(args) -> None:
    from .service import journal_stderr

    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    _JOURNAL[0] = journal_stderr()
    handler = _RowHandler(sys.stderr)
    handler.setFormatter(_JournalLine("%(message)s") if _JOURNAL[0] else _OneLine("vbg: %(message)s"))
    root = logging.getLogger("vbg")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    from . import liblogs

    libs = _RowHandler(sys.stderr)  # other libraries' messages, only with -v, named
    libs.setFormatter(_JournalLine("%(name)s: %(message)s") if _JOURNAL[0]
                      else _OneLine("vbg: %(name)s: %(message)s"))
    # a model download's bar on a terminal: 176 MB with nothing moving looks like a hang
    liblogs.configure(args.verbose, libs, bars=not getattr(args, "quiet", False) and streams.is_terminal(sys.stderr))


class _Flag:
    """A flag a signal handler may set: a plain attribute. (``threading.Event.set`` takes the
    event's lock, and a second signal landing inside the first one's ``set`` would wait for
    that lock forever: ``vbg.sigwork``.)"""

    __slots__ = ("_on",)

    def __init__(self) -> None:
        self._on = False

    def set(self) -> None:
        self._on = True

    def clear(self) -> None:
        self._on = False

    def is_set(self) -> bool:
        return self._on


_SIGNALLED = _Flag()  # a signal was turned into KeyboardInterrupt during this run
_DEFERRED = _Flag()  # a signal put off (it landed inside an import): when it comes again, it stops at once
_RESEND: list = [None]  # main()'s SignalWork while it runs: _send_again posts to it


def stop_signals() -> tuple:
    """The signals that stop a run as Ctrl-C does: SIGINT, SIGTERM, SIGBREAK (Windows: Ctrl-Break),
    and SIGHUP (the terminal closed, an ssh session dropped) unless vbg was started with it ignored
    (``nohup``: the user asked to keep running without a terminal)."""
    import signal

    sigs: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    brk = getattr(signal, "SIGBREAK", None)  # Windows only
    if brk is not None:
        sigs += (brk,)
    hup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        sigs += (hup,)
    return sigs


@contextlib.contextmanager
def _stop_on_signals(stop: Callable[[], None], ready: Callable[[], bool]):
    """While the block runs, SIGINT, SIGTERM and SIGHUP (``stop_signals``) stop it in two steps,
    for the live filter and ``vbg process`` alike: the first calls ``stop`` (finish cleanly: the
    recording or the partial file finalized) once ``ready()``, and before that stops at once;
    a second one, of any kind, stops at once, as a KeyboardInterrupt (``_interrupt``), so that
    what was opened is still closed and a temporary output removed (SIG_DFL would leave it
    behind). A closed stdout or stderr (``| head``) calls ``stop`` like the first signal."""
    import signal

    from .sigwork import SignalWork

    stopping = False
    hup = getattr(signal, "SIGHUP", None)
    # The stop itself (an Event's set) runs off the handler: the main thread may be inside that
    # same Event's lock when the signal lands (vbg.sigwork); the handler only decides.
    work = SignalWork()

    def on_signal(signum, frame):
        nonlocal stopping
        if stopping and signum == hup:
            # A hang-up comes more than once (to the session leader and to the foreground group,
            # and again when the terminal's other end goes): nobody asked twice, so the first
            # one's clean stop goes on and the recording or partial file is still finalized.
            _DEFERRED.clear()
            return
        # A signal put off while the live filter started (start-up's imports) was sent before it ran:
        # it stops at once too, though the filter runs by the time it comes again (it recorded a
        # few frames and ended with exit 0, a second later than asked)
        if stopping or not ready() or _DEFERRED.is_set():
            _interrupt(signum, frame)
            return  # put off (an import was running): the same signal comes again
        stopping = True
        work.post(stop)

    old = {sig: signal.signal(sig, on_signal) for sig in stop_signals()}
    old_hook = streams.on_broken(lambda: work.post(stop))
    try:
        yield
    finally:
        streams.on_broken(old_hook)
        for sig, handler in old.items():
            signal.signal(sig, handler)
        work.close()


def _importing(frame) -> bool:
    """Whether ``frame`` (where a signal found the main thread) is inside an import, or inside a
    file write that FFmpeg called back into (``fsutil``'s sink for PyAV): C code that cannot pass
    an exception on, and prints it as a traceback instead."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib"):
            return True
        if code.co_filename.endswith(("fsutil.py",)) and getattr(code, "co_qualname", "").startswith("_Sink."):
            return True
        frame = frame.f_back
    return False


_LAST_SIGNAL: list = [None]  # the signal _interrupt last turned into KeyboardInterrupt
_WINDOWS = os.name == "nt"


def _deliver(signum) -> None:
    """``signum`` to this process again. Not by ``os.kill`` on Windows: there every signal number
    but the console's two terminates the process at once, nothing finalized."""
    if _WINDOWS:
        import signal

        signal.raise_signal(signum)
    else:
        os.kill(os.getpid(), signum)


def _send_again(signum) -> None:
    """Deliver ``signum`` to this process again in 50 ms, while main() still runs.

    Called from a signal handler, which must not start a thread (``Thread.start`` takes locks
    the interrupted main thread may hold: ``vbg.sigwork``): the resend is posted to the
    SignalWork main() started beforehand. Outside main() (a caller's own handlers), a timer
    thread."""
    work = _RESEND[0]
    if work is None:
        t = threading.Timer(0.05, _deliver, (signum,))
        t.daemon = True
        t.start()
        return

    def again() -> None:
        import time

        time.sleep(0.05)
        if _RESEND[0] is work:  # main() has not returned meanwhile: its handlers are still the ones
            _deliver(signum)

    work.post(again)


def _interrupt(signum=None, frame=None):
    """Stop at once: the KeyboardInterrupt unwinds whatever runs, closing what was opened.

    Except inside an import or a PyAV file write: C code that imports (numpy's ``import_array``
    in OpenCV, PyAV, ONNX Runtime) or calls back to write (FFmpeg through ``fsutil``'s sink)
    prints an interrupt there as a traceback before vbg can catch it, so the signal is sent
    again a moment later, once that is done."""
    _SIGNALLED.set()
    if signum is not None and _importing(frame):
        _DEFERRED.set()
        _send_again(signum)
        return
    _DEFERRED.clear()
    _LAST_SIGNAL[0] = signum
    raise KeyboardInterrupt


def _unraisable(u) -> None:
    """``sys.unraisablehook`` while vbg runs: an interrupt that landed where Python cannot raise it
    (a weakref callback, such as a ``WeakSet``'s clean-up, a ``__del__``, the garbage collector)
    would be printed as "Exception ignored ... Traceback" and lost; it is sent again instead, to
    stop the run a moment later where it can (seen in a loaded run, as a second Ctrl-C stopped
    ``vbg process``). Anything else goes to Python's own hook."""
    if issubclass(u.exc_type, KeyboardInterrupt) and _LAST_SIGNAL[0] is not None:
        _DEFERRED.set()  # it was to stop the run at once: so it does when it comes again
        _send_again(_LAST_SIGNAL[0])
        return
    sys.__unraisablehook__(u)


def main(argv: list[str] | None = None) -> int:
    import signal

    # SIGINT, SIGTERM and SIGHUP stop a run from the first moment on: outputs finalized, no traceback.
    # (The live filter and vbg process install their own handlers while they run.)
    _SIGNALLED.clear()
    _DEFERRED.clear()
    _LAST_SIGNAL[0] = None
    old = {}
    old_unraisable = sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        sys.unraisablehook = _unraisable
        old = {sig: signal.signal(sig, _interrupt) for sig in stop_signals()}
    # A closed stdout/stderr (| head, > /dev/full) stops the run like Ctrl-C, without a
    # traceback; the process's own run keeps the guard through the interpreter's exit flush.
    undo_streams = None
    env: dict | None = None
    rc = 1
    try:
        try:
            undo_streams = streams.install()
            if old:  # after streams.install: with fd 0, 1 or 2 closed, its pipe must not take that number
                from .sigwork import SignalWork

                _RESEND[0] = SignalWork("vbg-resend")  # before the imports a handler may have to wait out
            from . import liblogs

            env = {k: os.environ.get(k) for k in liblogs.ENV_KEYS}  # set for libraries by _setup_logging
            from . import fsutil

            with fsutil.swept():  # an interrupt between a temporary output's creation and its owner's clean-up
                rc = _main(argv)
        except KeyboardInterrupt:  # a signal before _main's own handling (while the guard is set up)
            rc = _interrupted()
        except SystemExit as e:  # argparse: --help, --version, a usage error
            rc = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        rc = _streams_exit_code(rc)
        return rc
    finally:
        work, _RESEND[0] = _RESEND[0], None
        if work is not None:
            work.close()  # a resend still pending finds main() done and sends nothing
        if argv is not None:  # called in-process: leave the caller's streams and environment alone
            sys.unraisablehook = old_unraisable
            if undo_streams is not None:
                undo_streams()
            if env is not None:
                from . import liblogs

                liblogs.restore_env(env)
        for sig, handler in old.items():
            if argv is None:
                # The process's own run (console script, python -m vbg): once the work is done, a
                # signal during the interpreter's exit ends it with the run's own exit code, not
                # killed by the signal (outputs are finalized by now).
                signal.signal(sig, lambda *_: _exit_now(rc))
            else:
                signal.signal(sig, handler)
        if old and argv is None:
            import atexit

            # Late in its exit (tearing down modules) Python puts its own handlers back to the
            # default, which kills the process: there, the signal is ignored instead.
            atexit.register(_ignore_signals)


def _main(argv: list[str] | None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        return _interrupted()
    except Exception:
        # A KeyboardInterrupt that lands inside an import (numpy's, ONNX Runtime's) comes out as
        # an ImportError, or as vbg's "not installed" error: after a signal, it is the signal.
        if _SIGNALLED.is_set():
            return _interrupted()
        raise


def _ignore_signals() -> None:
    import signal

    for sig in stop_signals():
        signal.signal(sig, signal.SIG_IGN)


def _streams_exit_code(rc: int) -> int:
    """The exit code once stdout and stderr are flushed: 141 (128 + SIGPIPE, the shell's
    code for a program a closed pipe ended) when a reader went away, the output error's
    code when a stream could not be written (a full disk), else (also when the terminal
    hung up) the run's own."""
    from .errors import OutputError

    streams.flush()
    broken = streams.broken()
    if broken is None:
        return rc
    if broken.pipe:
        return streams.EXIT_BROKEN_PIPE
    if broken.hangup:  # the terminal closed: its SIGHUP ended the run (130), or the run was done
        return rc
    if broken.name == "stdout":
        from .fsutil import write_error_hint

        print(f"vbg: error: cannot write to stdout ({broken.error.strerror or broken.error}): "
              f"{write_error_hint(broken.error)}", file=sys.stderr)
        streams.flush()
    return OutputError.exit_code


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: the signal came inside that stream's own flush
            pass
    os._exit(code)


def _interrupted() -> int:
    print(f"{'<5>' if _JOURNAL[0] else 'vbg: '}interrupted", file=sys.stderr)
    return 130


GLOBAL_FLAGS = ("-q", "--quiet", "-v", "--verbose")


def flag_ranges() -> dict:
    """CLI dest -> its declared range (``vbg.ranges``): the fields' own, as the config files
    use them, and the few flags that are no config field."""
    from dataclasses import fields

    from . import ranges
    from .config import LiveConfig, ProcessConfig, sections

    out = {"seed": ranges.SEED, "ray_segment": ranges.RAY_SEGMENT}
    for root in (LiveConfig, ProcessConfig):
        for cls in sections(root).values():
            for f in fields(cls):
                if "range" in f.metadata:
                    out[f.name] = f.metadata["range"]
    return out


def _check_flag_ranges(args) -> None:
    """Every numeric flag against its declared range, before anything is opened; the
    config file's keys meet the same ranges in ``vbg.config.problems``."""
    found: list[VbgError] = []
    for dest, rng in flag_ranges().items():
        value = getattr(args, dest, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                rng.check("--" + dest.replace("_", "-"), value)
            except ConfigError as e:
                found.append(e)
    if len(found) == 1:
        raise found[0]
    if found:
        raise Problems(found)


def _run(argv: list[str]) -> int:
    first = next((a for a in argv if a not in GLOBAL_FLAGS), None)  # vbg -v process ... too
    if first in SUBCOMMANDS:
        args = build_parser().parse_args(argv)
    else:
        args = build_live_parser().parse_args(argv)
        args.func = cmd_live
    _setup_logging(args)
    try:
        _check_flag_ranges(args)
        return args.func(args)
    except MemoryError as e:
        if _SIGNALLED.is_set():
            return _interrupted()
        if not isinstance(e, VbgError):
            from .errors import OutOfMemory, one_line

            detail = one_line(e, "an allocation failed")
            e = OutOfMemory(f"out of memory ({detail}): close other programs, or lower --size (and for vbg process "
                            "--memory or --window)")
        _error(e)
        return e.exit_code
    except VbgError as e:
        if _SIGNALLED.is_set():
            return _interrupted()
        if isinstance(e, Problems):
            from .preflight import DOCTOR_HINT, is_setup_problem

            for one in e.errors:
                _error(one)
            if any(is_setup_problem(one) for one in e.errors):  # not for a file or a flag alone
                print(f"{'<6>' if _JOURNAL[0] else 'vbg: '}{DOCTOR_HINT}", file=sys.stderr)
        else:
            _error(e)
        return e.exit_code


# --- The default config file, the VBG_* environment (vbg.userconfig) and vbg config.


def _add_default_config_option(p) -> None:
    p.add_argument("--no-default-config", action="store_true", default=False,
                   help="do not read the default config file (vbg config path)")


def _lower_layers(args, root) -> list:
    """The layers under the flags: default file, ``--config``, ``VBG_*`` environment."""
    from .userconfig import layers_of

    return layers_of(root, config=getattr(args, "config", None),
                     use_default=not getattr(args, "no_default_config", False))


CONFIG_EPILOG = """\
where each setting comes from, the first that sets it wins:
  1. the flags                          vbg --blur 0.5
  2. the environment                    VBG_<KEY> for each option: VBG_MODEL=selfie, VBG_SIZE=320,
                                        VBG_VCAM_DEVICE=/dev/video10, VBG_VCAM=false (--no-vcam)
  3. --config FILE.toml
  4. the default config file            vbg config path
  5. vbg's built-in defaults"""


def _parser_config(sub) -> None:
    p = sub.add_parser("config", help="the default config file: where it is, what is in effect, edit it",
                       description="The default config file, read by the live filter and by vbg process (the "
                                   "settings each has).", epilog=CONFIG_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    path = verbs.add_parser("path", help="print the default config file's path (and whether it exists)")
    path.set_defaults(func=cmd_config_path)
    show = verbs.add_parser("show", help="print the settings in effect, as TOML, each with where it came from",
                            epilog=CONFIG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("--process", action="store_true", help="vbg process's settings (default: the live filter's)")
    show.add_argument("--config", metavar="FILE.toml", help="as the command would be given it")
    _add_default_config_option(show)
    show.set_defaults(func=cmd_config_show)
    edit = verbs.add_parser("edit", help="open the default config file in $VISUAL / $EDITOR (made from the "
                                         "commented defaults when there is none), then check it")
    edit.set_defaults(func=cmd_config_edit)


def cmd_config_path(args) -> int:
    from .userconfig import default_path

    path = default_path()
    print(path)
    log.info("%s", "it exists" if path.is_file() else "it does not exist yet: vbg config edit makes one")
    return 0


def cmd_config_show(args) -> int:
    from . import config as cfgmod
    from .userconfig import default_path, render, settle

    root = cfgmod.ProcessConfig() if args.process else cfgmod.LiveConfig()
    settled = settle(root, _lower_layers(args, root))
    path = default_path()
    state = ("not read: --no-default-config" if args.no_default_config else "read" if path.is_file()
             else "not there")
    print(f"# the settings {'vbg process' if args.process else 'the live filter'} starts with (flags override "
          f"them)\n# default config {path}: {state}\n")
    print(render(settled), end="")
    for problem in cfgmod.problems(settled.cfg):
        log.warning("%s", problem)
    return 0


def cmd_config_edit(args) -> int:
    import subprocess

    from . import userconfig

    path = userconfig.default_path()
    if not os.path.lexists(path):
        try:
            made = userconfig.create_default(path)
        except OSError as e:  # a read-only home, XDG_CONFIG_HOME naming a file
            from .errors import OutputError, one_line

            raise OutputError(f"{path}: cannot write there ({one_line(e)}): set XDG_CONFIG_HOME to a folder you can "
                              "write to, or keep your settings in a file of your own and pass it with --config FILE"
                              ) from None
        if made:
            log.info("made %s from the defaults, every setting commented out", path)
    editor = userconfig.editor_command()
    if editor is None:
        raise ConfigError(f"no editor found: set VISUAL or EDITOR (e.g. export EDITOR=nano), or edit {path} "
                          "with any editor")
    try:
        rc = subprocess.call([*editor, str(path)])
    except OSError as e:
        raise ConfigError(f"the editor {editor[0]!r} cannot be started ({e.strerror}): set VISUAL or EDITOR to "
                          "an installed one") from None
    if rc != 0:
        log.warning("the editor exited with status %d", rc)
    found = userconfig.file_problems(path)
    for problem in found:
        _error(problem if str(problem).startswith("the default config") else f"{path}: {problem}")
    if found:
        print("vbg: vbg config edit opens it again (--no-default-config runs vbg without it)", file=sys.stderr)
        return found[0].exit_code
    log.info("%s: every setting is valid", path)
    return 0


# --- vbg service: the live filter as a systemd user service (vbg.service).


def _parser_service(sub) -> None:
    p = sub.add_parser("service", help="run the live filter at login: a systemd user service (Linux)",
                       description="Install, remove or show vbg's systemd user unit "
                                   "(~/.config/systemd/user/vbg.service). It runs the live filter with the "
                                   "default config file (vbg config path), or --config FILE.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    install = verbs.add_parser("install", help="write the unit for this vbg, then enable and start it")
    install.add_argument("--config", metavar="FILE.toml", help="the config file the service runs with "
                                                               "(default: the default config file)")
    install.set_defaults(func=cmd_service)
    verbs.add_parser("uninstall", help="stop, disable and remove the unit vbg wrote").set_defaults(func=cmd_service)
    verbs.add_parser("status", help="systemctl --user status vbg").set_defaults(func=cmd_service)


SERVICE_ELSEWHERE = {
    "win32": "on Windows, put a shortcut to `vbg --background ...` in the Startup folder (Win+R, "
             "shell:startup)",
    "darwin": "on macOS, add `vbg --background ...` as a Login Item, or as a LaunchAgent in "
              "~/Library/LaunchAgents",
}


def cmd_service(args) -> int:
    from . import service

    if not sys.platform.startswith("linux"):
        how = SERVICE_ELSEWHERE.get(sys.platform, "start `vbg --background ...` from your desktop's autostart")
        raise ConfigError(f"vbg service sets vbg up as a systemd user service, which only Linux has: {how}")
    if args.verb == "status":
        text, rc = service.status()
        print(text)
        return rc
    if args.verb == "install":
        if args.config:
            from .config import LiveConfig
            from .userconfig import file_layer

            file_layer(args.config, LiveConfig())  # a file the service could not start with: refused now
        done = service.install(args.config)
        log.info("wrote %s", done.path)
    else:
        done = service.uninstall()
        if done is None:
            log.info("vbg service is not installed (%s is not there)", service.unit_path())
            return 0
        log.info("removed %s", done.path)
    for step in done.ran:
        log.info("ran: %s", step)
    if done.why_not:
        log.warning("%s: run these yourself once it does:", done.why_not)
        print("\n".join(done.todo))
    return 0


JOURNAL_STATUS_EVERY = 60  # under systemd the status line goes to the journal once a minute, not every second


def _service_status() -> Callable[[str | None], bool]:
    """``on(line)`` for the live filter's status lines under systemd: the first that reaches it says
    the service is ready (``READY=1``), each one is its ``STATUS=`` (``systemctl --user status vbg``);
    ``on(None)`` says it is stopping. True: keep the line out of the log (under the journal only one
    a minute goes there)."""
    from .service import notify

    seen, ready = [0], [False]

    def on(line: str | None) -> bool:
        if line is None:
            if ready[0]:
                notify("STOPPING=1")
            return True
        seen[0] += 1
        if notify(("" if ready[0] else "READY=1\n") + f"STATUS={line.strip()}"):
            ready[0] = True
        return _JOURNAL[0] and (seen[0] - 1) % JOURNAL_STATUS_EVERY != 0

    return on
