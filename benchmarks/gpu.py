"""GPU sessions for the benchmarks: open a graph on CUDA or TensorRT and make
sure ONNX Runtime really computes there, or say in one line why not.

onnxruntime-gpu creates a session on a machine without a GPU (or without the
CUDA libraries) and silently runs it on the CPU, printing its own load errors
on stderr. Timing that session would put CPU numbers in a GPU table, so the
providers in use (``session.get_providers()``) are compared with the one asked
for, ONNX Runtime's own output is captured for the reason, and the caller gets
:class:`NoGpu` carrying the one-line note to print and record instead.
"""

from __future__ import annotations

from pathlib import Path

DEVICES = ("cpu", "cuda", "tensorrt")
GPU_TABLES = "GPU tables not produced"
_ASKED = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class NoGpu(Exception):
    """The GPU provider asked for is not the one in use; ``str(e)`` is the note."""


def parse_devices(text: str) -> list[str]:
    """``"cuda,tensorrt"`` -> ``["cuda", "tensorrt"]``; ValueError naming the bad one."""
    devices = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if d not in DEVICES]
    if bad or not devices:
        raise ValueError(f"--device {text!r}: use one or more of {', '.join(DEVICES)}, comma-separated")
    return list(dict.fromkeys(devices))


def unusable_note(device: str, active: list[str], ort_output: str = "", *,
                  gpu_present: bool | None = None, what: str = GPU_TABLES, missing: str | None = None) -> str | None:
    """None when ``device``'s provider is the first one in use; else the one-line note.

    A TensorRT session that fell back to CUDA still has a GPU: its note names
    TensorRT alone. Anything that ended on the CPU is "no usable CUDA GPU".
    ``missing`` is the lowest missing layer of the NVIDIA stack with its fix
    (:func:`vbg.inference.cuda.diagnose`), named in place of ONNX Runtime's reason.
    """
    asked = _ASKED[device]
    if active and active[0] == asked:
        return None
    if missing:
        reasons = [missing]
    else:
        if gpu_present is None:
            from vbg.inference.onnx_backend import gpu_present as probe

            gpu_present = probe()
        from vbg.inference.onnx_backend import load_failure

        reasons = [] if gpu_present else ["no NVIDIA driver found"]
        why = load_failure(ort_output)
        if why:
            reasons.append(why)
    detail = (f"ONNX Runtime was asked for {asked} and runs on {', '.join(active) or 'nothing'}"
              + (f" ({'; '.join(reasons)})" if reasons else ""))
    if device == "tensorrt" and "CUDAExecutionProvider" in active:
        return f"TensorRT not usable here: {detail}; {'TensorRT table not produced' if what == GPU_TABLES else what}"
    return f"no usable CUDA GPU here: {detail}; {what}"


def open_session(path: Path, device: str, *, threads: int | None = None, cache_dir: Path | None = None,
                 fp16: bool = True, what: str = GPU_TABLES):
    """``create_session`` on ``device`` with ONNX Runtime's output captured;
    the session when its provider is in use, else :class:`NoGpu`."""
    from vbg.doctor import captured_output
    from vbg.errors import VbgError
    from vbg.inference.onnx_backend import create_session

    try:
        with captured_output() as text:
            sess, active = create_session(path, device, threads=threads, cache_dir=cache_dir, fp16=fp16)
    except VbgError as e:
        cause = " ".join(str(e.__cause__ or e).split())[:200]
        raise NoGpu(f"{device} could not open {Path(path).name}: {cause}; {what}") from e
    if active and active[0] == _ASKED[device]:
        return sess
    from vbg.inference.cuda import diagnose

    found = diagnose(device)
    note = unusable_note(device, active, text[0] if text else "", what=what,
                         missing=str(found) if found is not None else None)
    if note is not None:
        raise NoGpu(note)
    return sess


def probe(device: str, *, cache_dir: Path | None = None, what: str = GPU_TABLES) -> str | None:
    """None when ``device`` really runs a session here (the bundled selfie
    model, a few kB); else the one-line note."""
    if device == "cpu":
        return None
    from vbg.models.spec import SELFIE

    try:
        open_session(SELFIE.bundled_path(), device, cache_dir=cache_dir, what=what)
    except NoGpu as e:
        return str(e)
    return None


def not_run_here(out: Path, name: str, device: str, title: str, what: str) -> bool:
    """For a part asked to run on ``device``: True (after writing ``name``.json/.md with the
    one-line reason in place of the table) when that device is not usable here."""
    from benchmarks.common import machine_info, write_results

    note = probe(device, what=what)
    if note is None:
        return False
    print(note, flush=True)
    js, mdp = write_results(out, name, {"machine": machine_info(), "device": device, "note": note},
                            f"# {title} on {device}\n\n**Not run**: {note}.\n")
    print(f"wrote {js} and {mdp}")
    return True
