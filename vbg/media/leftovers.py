"""What runs killed outright left: naming the hidden temporaries of outputs no run will finish.

``kill -9``, a crash, the out-of-memory killer or the power going leave an output's temporary
(``.NAME.XXXXXXXX.partial``, ``vbg.fsutil``) where it was being written, hidden, for ever. A run
about to write into a folder (a ``--record`` file, ``vbg process``'s outputs) first calls
``rescue_killed``: each such video that plays (a live recording's fragmented MP4 or MOV, a
Matroska or WebM file) is renamed to ``NAME.partial.EXT`` (``-2``... where that exists, never the
run's own output: nothing is replaced), with one line; an MP4, MOV, Matroska or WebM file that
does not play (killed in its first second, an MP4 whose index is written at the end) is named
for the user to delete; any other file (another user of a shared folder can rename anything
there to such a name) is left, unsaid, and nothing's mode is changed. Candidates come from
``vbg.fsutil.left_by_killed_runs`` (this user's, unlocked, found under the folder's lock; none
where there are no locks). Thread: the caller's. Why: docs/design/output-files.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from pathlib import Path

from vbg.fsutil import Rescued, left_by_killed_runs, partial_name
from vbg.media.encode import FORMATS as VIDEO_SUFFIXES  # suffix -> container: what vbg writes videos as

log = logging.getLogger("vbg")

_WEBM_CODECS = {"vp8", "vp9", "av1"}


def rescue_killed(folder: Path, *, avoid: Collection[Path] = ()) -> list[Path]:
    """Name what killed runs left in ``folder`` (module docstring), one line each; the new names.
    ``avoid``: the caller's own outputs, never taken."""
    kept = []
    for path, name, cut in left_by_killed_runs(folder):
        suffix = "" if cut else Path(name).suffix.lower()  # a cut name has none (its dots are not one)
        if not cut and suffix not in VIDEO_SUFFIXES:
            continue  # another output's (a model export, a picture): not a video
        try:
            with Rescued(path) as left:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(left.stat.st_mtime))
                kind = _playable_kind(left.fd)
                if kind is None:
                    if _looks_like_a_video(left.fd):  # else not vbg's: nothing to say about it
                        log.warning("%s: a video a killed vbg run left (last written %s) holds no frame that plays "
                                    "(it ended before its first second was written, or it is an MP4 whose index "
                                    "comes at the end): delete it", path, when)
                    continue
                dest = left.keep(partial_name(path.parent / (name if suffix else name + kind)), avoid=avoid)
        except OSError as e:  # another run rescuing it, or the folder changed meanwhile: the next run tries again
            log.debug("could not rescue %s: %s", path, e)
            continue
        log.warning("a video cut short when vbg was killed (last written %s) is kept as %s: it plays up to "
                    "where it was cut", when, dest)
        kept.append(dest)
    return kept


def _looks_like_a_video(fd: int) -> bool:
    """The file open as ``fd`` starts as an MP4/MOV (an ``ftyp`` box) or a Matroska/WebM file does."""
    try:
        head = os.pread(fd, 12, 0)
    except OSError:
        return False
    return head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3")


def _playable_kind(fd: int) -> str | None:
    """The suffix of the video open as ``fd`` (``.mp4``, ``.mov``, ``.mkv``, ``.webm``) when it
    is one in a container vbg writes with a frame that decodes; else None (a photo renamed to a
    temporary's name is not one)."""
    import av

    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            f.seek(0)
            with av.open(f, "r") as c:
                video = c.streams.video
                if not video:
                    return None
                fmt = c.format.name
                if "matroska" in fmt:
                    kind = ".webm" if video[0].codec_context.name in _WEBM_CODECS else ".mkv"
                elif "mp4" in fmt:
                    kind = ".mov" if c.metadata.get("major_brand", "").strip() == "qt" else ".mp4"
                else:
                    return None
                return kind if next(iter(c.decode(video[0])), None) is not None else None
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
