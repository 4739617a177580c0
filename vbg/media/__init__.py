"""Media files: everything vbg reads from or writes to a video file, in one place.

===============  ==================================================================
``open``         opening a file or URL: network time-outs, FIFOs refused, cover art
                 told from video (``open_media``, ``picture_stream``, ``NetworkFrames``)
``info``         ``probe`` -> ``VideoInfo``, display rotation, pixel aspect (square
                 sizes), ``open_input`` (one-line errors for what is no video), the
                 smallest frame size segmented
``reader``       ``VideoReader``: every frame as RGB with its original pts (``vbg
                 process``; the live file source paces and loops it), alpha videos
``tonemap``      HDR (HLG, PQ) frames as SDR RGB (BT.2390 roll-off, BT.2020 to BT.709);
                 SDR in BT.2020 colours as BT.709
``deinterlace``  interlaced frames made whole (FFmpeg's bwdif), one out per one in
``timeline``     recordings joined end to end (MPEG-TS/PS parts whose clock starts
                 over): one file-wide offset per part, for every stream alike
``sequence``     image sequences (a folder of frames, ``frame_%05d.png``) read as video
``encode``       codec and container tables, odd-size padding, colour tags, the
                 PyAV file backend (``AvFile``), the live recorder's H.264 stream
``audio``        the source's audio, copied or re-encoded, muxed as video advances;
                 subtitles (text converted where needed), chapters, metadata, cover
``png``          PNG sequences (one folder per run)
``writer``       ``VideoWriter``: the path picks the format; abort keeps a playable partial
``join``         parts joined by stream copy (``vbg process --ray``); a finished
                 fragmented recording rewritten unfragmented (``remux_video``)
``leftovers``    what runs killed outright left hidden in an output folder, named
===============  ==================================================================

Every output is created through :mod:`vbg.fsutil` (fresh hidden name, renamed into place).
Nothing here imports the pipeline, ``vbg.offline``, ``vbg.cli`` or ``vbg.evaluation``.
"""
