"""Record composites to a video file: H.264 (libx264 or NVENC, yuv420p) through PyAV and
``vbg.media.encode`` (the padding, colour tags, stream set-up and write-error handling that
``vbg process``'s files use too).

In: ``send(composite)`` with RGB uint8 composites of the recorder's size, from
the pipeline's render thread. ``send()`` converts to I420 into one of a few
preallocated buffers and returns: the caller may reuse its image at once;
every composite is written (when the encoder falls behind, ``send()`` waits,
it never drops). Out: the file at ``path`` (``frame_size`` = the size padded
to even), presentation times from the capture times; created under a fresh
hidden name (``vbg.fsutil.NewFile``) and renamed into place when finalized;
after an interrupt the frames so far are still a playable file, after a failed
write nothing is kept, a recording with no frames is not created, an existing
target is replaced (checking is the caller's job). MP4 and MOV are written as
fragments (one a second) while recording, so a run killed outright (``kill -9``,
a crash) leaves a temporary that plays up to its last second, and rewritten
unfragmented when finished (where the disk has room: else kept fragmented, with
a line); a Matroska file plays as it is. A new recording first gives what
killed runs left in its folder a visible name (``vbg.media.leftovers``). Thread: encoding and
muxing run on the recorder's own writer thread; its failure surfaces once,
by ``send()``, ``check()`` or ``close()``.

``encoder``: x264 (the default here), nvenc or auto (NVENC when it opens:
``vbg.encoders``, which probes it once per process); chosen before the file is
created, ``self.encoder`` says which. NVENC runs with ``-tune ll`` (low
latency), the x264 ``preset`` mapped to p1..p7 and ``crf`` as its
constant-quality ``cq``.

Why: docs/design/output-files.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from vbg.encoders import choose_encoder
from vbg.errors import ConfigError, DependencyError, OutputError, one_line
from vbg.fsutil import NewFile, OutputBusy, cannot_write, write_error_hint
from vbg.media.encode import (NVENC_PRESETS, PRESETS, RECORD_FORMATS, Padder, add_video_stream, live_h264_options,
                              padded_size, write_errors)
from vbg.media.join import remux_video
from vbg.media.leftovers import rescue_killed
from vbg.sinks import SinkBase, SinkStats, check_geometry, check_image
from vbg.types import Composite

log = logging.getLogger("vbg")

TIME_BASE = Fraction(1, 90000)
FORMATS = RECORD_FORMATS
__all__ = ["FORMATS", "NVENC_PRESETS", "PRESETS", "TIME_BASE", "Recorder"]
_END = None
_WAIT_S = 0.1  # how often a blocked send() looks whether the writer died
# MP4 and MOV while recording: a fragment (its own index) each second after an empty header, so
# that all but the last second plays after a kill (the muxer hands each fragment to the file
# whole); rewritten unfragmented when finished.
FRAGMENTED = {"mp4", "mov"}
FRAGMENT_OPTIONS = {"movflags": "empty_moov+default_base_moof", "frag_duration": "1000000"}


class Recorder(SinkBase):
    """Write every composite sent to ``path`` (``.mp4``, ``.mov``, ``.mkv``).

    ``queue_size`` frames may wait for the encoder before ``send()`` blocks;
    ``threads`` is libx264's thread count (1 keeps the encoder off the model's
    cores on small machines; 0 lets FFmpeg choose). ``encoder``/``gpu``: see
    the module docstring.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float, *, preset: str = "veryfast",
                 crf: int = 20, threads: int = 1, queue_size: int = 8, encoder: str = "x264",
                 gpu: int = 0, overwrite: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.overwrite = overwrite  # False: a file that appears at ``path`` meanwhile is kept
        fmt = FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise ConfigError(f"--record {self.path}: unknown file type, use one of {', '.join(FORMATS)}")
        if preset not in PRESETS:
            raise ConfigError(f"record preset {preset!r} is unknown: use one of {', '.join(PRESETS)}")
        if not 0 <= crf <= 51:
            raise ConfigError(f"record crf {crf} is out of range: use 0..51 (lower is better, 18-23 usual)")
        width, height, fps = check_geometry("record", width, height, fps)
        if queue_size < 1:
            raise ConfigError(f"record queue_size {queue_size} is invalid: use 1 or more")
        self.width, self.height, self.fps = width, height, fps
        self.frame_size = padded_size(width, height)  # (w, h) in the file

        fw, fh = self.frame_size
        self._pad = Padder()
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(queue_size):
            self._free.put(np.empty((fh * 3 // 2, fw), np.uint8))
        self._work: queue.Queue = queue.Queue()  # bounded by the buffer count

        self._fmt = fmt
        rescue_killed(self.path.parent, avoid=[self.path])
        self._open_file(fmt, encoder, gpu, threads, preset, crf)

        self._t0: float | None = None
        self._last_pts = -1
        self._closed = False
        self._close_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._received = 0
        self._written = 0  # frames handed to the encoder, by the writer thread
        self._finalized: BaseException | None = None  # set by the writer when finalizing failed
        self._writer_done = threading.Event()  # set by the writer thread as its last act
        self._thread = threading.Thread(target=self._run, name="vbg-recorder", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self._container.close()
            self._new.discard()
            raise

    def _open_file(self, fmt: str, encoder: str, gpu: int, threads: int, preset: str, crf: int) -> None:
        """Choose the encoder, then open the file under a temporary name with its video stream;
        on any failure (an interrupt too) the temporary file goes."""
        fw, fh = self.frame_size
        try:
            import av
        except ImportError as e:
            raise DependencyError(f"recording needs PyAV: pip install av ({e})") from e
        self.encoder = choose_encoder(encoder, gpu, self.frame_size)  # probes NVENC (once) before the file exists
        try:
            self._new = NewFile(self.path, replace=self.overwrite)
        except OutputBusy as e:
            raise OutputError(f"--record {e.strerror}".replace("another -o", "another --record file")) from e
        except OSError as e:
            raise cannot_write(f"--record {self.path}", e) from e
        try:
            self._container = av.open(self._new.sink, "w", format=fmt,
                                      options=dict(FRAGMENT_OPTIONS) if fmt in FRAGMENTED else None)
            self._stream = add_video_stream(self._container, self.encoder.name,
                                            rate=Fraction(self.fps).limit_denominator(1001), size=(fw, fh),
                                            pix_fmt="yuv420p", time_base=TIME_BASE, threads=threads,
                                            options=live_h264_options(self.encoder, preset, crf))
            self._container.start_encoding()  # opens the encoder: a setting NVENC refuses fails here
        except BaseException as e:  # an interrupt here too: the temporary file goes
            if getattr(self, "_container", None) is not None:
                with contextlib.suppress(Exception):
                    self._container.close()
            self._new.discard()
            if not isinstance(e, Exception):
                raise
            fix = "use --encoder x264" if self.encoder.nvenc else write_error_hint(e)
            raise OutputError(f"--record {self.path}: cannot write it ({one_line(e)}): {fix}") from e

    # ------------------------------------------------------------------ caller side
    def send(self, composite: Composite) -> None:
        """Convert and queue one composite; waits only while the encoder is ``queue_size`` behind."""
        if self._closed:
            raise ValueError("send() on a closed Recorder")
        self.check()
        image = composite.image
        check_image(image, self.width, self.height)
        with self._send_lock:
            buf = self._take_buffer()
            fw, fh = self.frame_size
            cv2.cvtColor(self._pad(image, (fh, fw)), cv2.COLOR_RGB2YUV_I420, dst=buf)
            if self._t0 is None:
                self._t0 = composite.t_capture
            pts = max(round((composite.t_capture - self._t0) / TIME_BASE), self._last_pts + 1)
            self._last_pts = pts
            self._received += 1
            self._work.put((buf, pts))

    def _take_buffer(self) -> np.ndarray:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        while True:
            try:
                return self._free.get(timeout=_WAIT_S)
            except queue.Empty:
                self.check()  # the writer died: its buffers will never come back

    def stats(self) -> SinkStats:
        return SinkStats(received=self._received, written=self._written, errors=int(self._failure is not None))

    def close(self) -> None:
        """Flush and finalize the file, rename it into place; then raise a writer
        failure not yet raised by ``send``/``check``. Idempotent."""
        interrupted: BaseException | None = None
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._work.put(_END)
                interrupted = self._wait_writer()
                self._stream = self._container = None  # the encoder's threads go with its last reference
                if self._finalized is not None or self._written == 0 or self._new.sink.error is not None:
                    self._new.discard()  # removes the partial file
                else:
                    try:
                        self._commit()
                    except OSError as e:
                        self._fail(OutputError(f"--record {self.path}: cannot move it into place ({one_line(e)}): "
                                               f"{write_error_hint(e)}"))
        if interrupted is not None:
            raise interrupted
        self._raise_unreported()

    def _commit(self) -> None:
        """Rename the finished file into place; without ``overwrite``, a file that appeared at its
        name during the run (another program's, a copy the user made) is kept, and the recording
        goes beside it under a free name, said in one line (it was replaced, unsaid)."""
        try:
            self._new.commit()
        except FileExistsError:
            kept = self._new.keep(self.path)
            log.warning("--record %s: a file of that name appeared during the run and is kept; the recording is %s",
                        self.path, kept)
            self.path = kept

    def _wait_writer(self) -> BaseException | None:
        """Wait for the writer to finish the file. An interrupt meanwhile (an impatient second
        Ctrl-C: the first asked for this stop) is held until the file is finished and in place, and
        returned to be raised then (it lost the whole recording); a further one drops the file."""
        held: BaseException | None = None
        while True:
            try:
                # An Event, not Thread.join(): an interrupted join() marks the thread as ended while it
                # still writes (Python's _wait_for_tstate_lock), and the next join() returns at once.
                while not self._writer_done.wait(0.1):
                    pass
                self._thread.join()
                return held
            except KeyboardInterrupt as e:
                if held is not None:
                    raise
                held = e
                log.warning("finishing the recording %s first (a few frames to encode; Ctrl-C again drops it)",
                            self.path)

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        try:
            self._write()
        finally:
            self._writer_done.set()  # the file is whole (or given up): close() may move it

    def _write(self) -> None:
        import av

        stream, container = self._stream, self._container
        try:
            while True:
                item = self._work.get()
                if item is _END:
                    break
                buf, pts = item
                frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")  # copies: buf is free again
                self._free.put(buf)
                frame.pts = pts
                frame.time_base = TIME_BASE
                with write_errors(self._new.sink):  # a failed write stops here, with its errno
                    for packet in stream.encode(frame):
                        container.mux(packet)
                self._written += 1
        except Exception as e:
            err = OutputError(f"--record {self.path}: writing failed after {self._written} frames "
                              f"({one_line(e)}): {write_error_hint(e)}")
            err.__cause__ = e
            self._fail(err)
            self._drain()
        finally:
            try:  # finalize what was written, whatever happened above
                if self._new.sink.error is not None:
                    raise self._new.sink.error  # nothing more can be written: no flush
                for packet in stream.encode(None):
                    container.mux(packet)
            except Exception as e:
                self._finalized = e
            try:
                container.close()
            except Exception as e:
                self._finalized = self._finalized or e
            self._finalized = self._finalized or self._new.sink.error  # a write FFmpeg did not report
            if self._finalized is not None and self._written:
                err = OutputError(f"--record {self.path}: cannot finalize it ({one_line(self._finalized)}): "
                                  f"{write_error_hint(self._finalized)}")
                err.__cause__ = self._finalized
                self._fail(err)
            elif self._written and self._fmt in FRAGMENTED:
                try:
                    self._unfragment()
                except Exception as e:  # whatever it is, the fragmented file plays: it stays the recording
                    self._kept_fragmented(one_line(e))

    def _unfragment(self) -> None:
        """Rewrite the finished fragmented file unfragmented (one index, at the end, as editors
        expect) beside it, and take the new one as the recording. Where the disk lacks the room
        or the rewrite fails, the fragmented file stays the recording (it plays everywhere; a few
        editors want it rewritten), with one line saying so."""
        import av

        fragmented = self._new
        if not os.path.lexists(fragmented.tmp):  # its folder removed meanwhile: close() says so
            return
        size = os.fstat(fragmented.fd).st_size
        try:
            free = shutil.disk_usage(self.path.parent).free
        except (OSError, AttributeError):  # (no disk_usage where os.statvfs is missing and it is not Windows)
            free = None
        if free is not None and free < size + _ROOM_BYTES:
            self._kept_fragmented(f"the disk has {free / 1e6:.0f} MB free, it needs {size / 1e6:.0f} MB")
            return
        try:
            # our own fragmented temporary is the busy one; made under the folder's lock all the same
            plain = NewFile(self.path, check_busy=False, lock_folder=True)
        except OSError as e:
            self._kept_fragmented(one_line(e))
            return
        plain.replace = fragmented.replace
        if size >= _SAY_REWRITE_BYTES:  # seconds of disk work: the run's end waits for it
            log.info("--record %s: rewriting the %.1f GB recording unfragmented, for editors", self.path, size / 1e9)
        try:
            with os.fdopen(os.dup(fragmented.fd), "rb") as src:
                src.seek(0)
                remux_video(src, plain.sink, self._fmt)
        except (av.FFmpegError, OSError, ValueError) as e:
            plain.discard()
            self._kept_fragmented(one_line(e))
            return
        except BaseException:
            plain.discard()
            raise
        self._new = plain
        fragmented.discard()

    def _kept_fragmented(self, why: str) -> None:
        log.warning("--record %s: kept as written while recording, fragmented (it plays; an editor that "
                    "refuses it takes ffmpeg -i FILE -c copy NEW.mp4): not rewritten (%s)", self.path, why)

    def _drain(self) -> None:
        """After a failure: hand queued buffers back so a waiting send() wakes to the error."""
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                return
            if item is not _END:
                self._free.put(item[0])


_ROOM_BYTES = 64 << 20  # kept free on the disk beyond the rewritten copy
_SAY_REWRITE_BYTES = 256 << 20  # a rewrite of this much or more is said (seconds: python -m benchmarks.record_finish)
