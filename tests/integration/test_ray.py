"""`vbg process --ray` on a real Ray cluster of two nodes on this machine (``ray.cluster_utils``):
the same mattes as a local run, byte for byte, on a file cut into parts; a worker killed mid-job;
a damaged file in a batch; Ctrl-C. The CLI runs in this process (``vbg.cli.main``), so it joins the
cluster the fixture started instead of starting a Ray runtime of its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from media import interlace, person_clip_frames, write_talk_clip
from procstatus import comm_and_parent
from test_offline_media import make_png_mov
from vbg.cli import main

ray = pytest.importorskip("ray", reason="the Ray tests need Ray: pip install 'vbg[ray]' (the README's test command installs it)")
# A Ray cluster on two cores takes a while to start (16-50 s for the module): CI runs these in its
# first stage; the lowest-dependencies stage (not slow) would only repeat them on the same Ray.
pytestmark = pytest.mark.slow

FPS = 10
GOP = 10  # a keyframe a second: a 6 s clip with --ray-segment 1 is cut into 6 parts
COMMON = ("--model", "selfie", "--device", "cpu", "--size", "256", "--quiet")


def make_clip(path: Path, n: int = 60, size: tuple[int, int] = (144, 256)) -> Path:
    """The person clip as H.264 with B-frames and a keyframe every ``GOP`` frames, and an AAC tone."""
    return write_talk_clip(path, (rgb for rgb, _ in person_clip_frames(n, size)), n, FPS, gop=GOP)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes of one CPU each on this machine, small object stores, no dashboard."""
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 1, "object_store_memory": 80 << 20}
    c = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    c.add_node(**small)
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("ray") / "talk.mp4")


@pytest.fixture(scope="module")
def local_matte(clip, tmp_path_factory):
    """The matte PNGs of a local run (no Ray)."""
    out = tmp_path_factory.mktemp("local") / "matte"
    assert main(["process", str(clip), "-o", str(out), "--matte", "--workers", "1", *COMMON]) == 0
    return out


def same_pngs(a: Path, b: Path) -> None:
    names = sorted(os.listdir(a))
    assert sorted(os.listdir(b)) == names
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def leftovers(folder: Path) -> list[str]:
    """Hidden names (staging folders, temporary files) left in ``folder``."""
    return [n for n in os.listdir(folder) if n.startswith(".")]


def test_parts_start_at_keyframes_with_the_window_around_them_and_short_files_stay_whole(clip):
    from vbg.offline.distributed import plan_spans

    spans = plan_spans(clip, 2, 1.0)
    assert [(s.first, s.count) for s in spans] == [(i, GOP) for i in range(0, 60, GOP)]  # every keyframe
    assert [(s.before, s.after) for s in spans] == [(0, 2)] + [(2, 2)] * 4 + [(2, 0)]
    assert [(s.start_pts, s.first_pts) for s in spans[1:2]] == [(8 * 1024, 10 * 1024)]  # the mp4's 1/10240 s
    assert [s.count for s in plan_spans(clip, 2, 2.5)] == [30, 30]  # the first keyframe >= 2.5 s on
    assert plan_spans(clip, 2, 3.5) is None  # under two parts' length: one unit


def test_a_file_cut_into_parts_gives_the_local_mattes_byte_for_byte(cluster, clip, local_matte, tmp_path):
    from vbg.offline.distributed import plan_spans

    assert len(plan_spans(clip, 3, 1.0)) == 6  # the run below is really cut into parts
    out = tmp_path / "matte"
    assert main(["process", str(clip), "-o", str(out), "--matte", "--ray", "--ray-segment", "1", *COMMON]) == 0
    same_pngs(local_matte, out)
    assert leftovers(tmp_path) == []


def test_a_video_background_runs_on_across_the_parts_as_in_a_local_run(cluster, clip, tmp_path):
    """A 0.7 s background loop behind a file cut into 1 s parts: each part shows the background
    frames a local run shows at its frames' times (PNG frames: byte for byte). Each part started
    the background from its first frame, and the background jumped back at every cut."""
    import numpy as np

    from media import write_clip

    bg = write_clip(tmp_path / "loop.mp4", [np.full((72, 128, 3), 30 + 25 * k, np.uint8) for k in range(7)], fps=FPS)
    local, out = tmp_path / "local", tmp_path / "ray"
    assert main(["process", str(clip), "-o", str(local), "--background", str(bg), "--workers", "1", *COMMON]) == 0
    assert main(["process", str(clip), "-o", str(out), "--background", str(bg), "--ray", "--ray-segment", "1",
                 *COMMON]) == 0
    assert len(os.listdir(out)) == 60
    same_pngs(local, out)


def test_the_joined_video_has_every_frame_its_timestamps_and_the_audio(cluster, clip, tmp_path):
    out = tmp_path / "talk.mp4"
    assert main(["process", str(clip), "-o", str(out), "--ray", "--ray-segment", "1", *COMMON]) == 0

    def pts_and_audio(path):
        with av.open(str(path)) as c:
            pts = [f.pts * f.time_base for f in c.decode(video=0)]
        with av.open(str(path)) as c:
            audio = [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]
        return pts, audio

    pts_in, audio_in = pts_and_audio(clip)
    pts_out, audio_out = pts_and_audio(out)
    assert len(pts_out) == 60 and pts_out == pts_in
    assert audio_out == audio_in  # copied once, whole
    assert leftovers(tmp_path) == []


def test_an_interlaced_file_cut_into_parts_gives_the_local_mattes_and_says_so_once(cluster, tmp_path, capsys):
    """Each part deinterlaces from the frames before its first (the window around it), so the
    parts' mattes are the local run's, byte for byte; the deinterlacing is said once for the
    file, by the driver (the workers' own lines stay in Ray's logs)."""
    fields = [rgb for rgb, _ in person_clip_frames(120, (144, 256))]
    clip = write_talk_clip(tmp_path / "camcorder.mp4", interlace(fields), 60, FPS, gop=GOP, interlaced=True)
    local, out = tmp_path / "local", tmp_path / "ray"
    assert main(["process", str(clip), "-o", str(local), "--matte", "--workers", "1", *COMMON[:-1]]) == 0
    capsys.readouterr()
    assert main(["process", str(clip), "-o", str(out), "--matte", "--ray", "--ray-segment", "1", *COMMON[:-1]]) == 0
    said = [ln for ln in capsys.readouterr().err.splitlines() if "interlaced video" in ln]
    assert said == [f"vbg: {clip}: interlaced video: deinterlaced (bwdif), one frame out per frame in"]
    assert len(os.listdir(out)) == 60
    same_pngs(local, out)


@pytest.mark.parametrize("change", ["fields", "size"])
def test_a_change_part_way_is_said_once_where_it_begins_as_a_local_run_says_it(cluster, tmp_path, capsys, change):
    """An MPEG-TS recording that turns interlaced part-way (a broadcast's programme change), or
    changes size (a joined file), cut into parts: the line a local run gives, naming the file's
    frame, once. The part that meets the change and its neighbour, whose window overlaps it, both
    see it; the parts after it begin changed and cannot tell where it began. Under --ray it was
    left in the workers, unsaid; and a part's seek landed on the frame at its start, not on the
    keyframe before: a part could not be decoded (a file whose coding changed) or did not hold
    its frames (every MPEG-TS file then ran whole, after a line saying so)."""
    from media import write_recoded_clip, write_turns_interlaced_clip

    frames = [rgb for rgb, _ in person_clip_frames(60, (144, 256))]
    if change == "fields":
        clip = write_turns_interlaced_clip(tmp_path / "broadcast.ts", frames[:25], interlace(frames[25:] * 2)[:35],
                                           fps=FPS, gop=GOP)
        wanted = [f"vbg: {clip}: its frames are interlaced from frame 26 on: deinterlaced (bwdif), one frame out "
                  "per frame in"]
    else:
        smaller = [rgb[::2, ::2] for rgb in frames[30:]]
        clip = write_recoded_clip(tmp_path / "joined.ts", frames[:30], smaller, fps=FPS, gop=GOP)
        wanted = [f"vbg: {clip}: its frames change size at frame 31 (128x72, the first ones 256x144): each is "
                  "scaled to 256x144"]
    from vbg.offline.distributed import plan_spans

    assert len(plan_spans(clip, 3, 1.0)) > 1  # the run below is really cut into parts
    runs = {}
    for how in (("--workers", "1"), ("--ray", "--ray-segment", "1")):
        out = tmp_path / how[0][2:]
        assert main(["process", str(clip), "-o", str(out), "--matte", *how, *COMMON[:-1]]) == 0
        runs[how[0]] = [ln for ln in capsys.readouterr().err.splitlines() if "frames change size" in ln
                        or "interlaced from" in ln or "whole instead" in ln]
        assert len(os.listdir(out)) == 60
    assert runs == {"--workers": wanted, "--ray": wanted}
    same_pngs(tmp_path / "workers", tmp_path / "ray")  # each part decoded from its keyframe


@pytest.mark.parametrize("damage", ["dropout", "garbled"])
def test_a_damaged_broadcast_recording_gives_a_local_runs_frames_and_one_line_of_its_damage(cluster, tmp_path, capsys,
                                                                                            damage):
    """A damaged MPEG-TS recording cut into parts. A dropout: packets lost to a weak signal, whose
    frames the decoder never gives, so every frame after them is one the packets did not plan:
    the part before the gap wrote its neighbour's first frame again (51 frames where a local run
    has 50); now that part sees it is not where its packets say, and the file runs whole, with a
    line naming it. Garbled packets (the timing whole): the parts hold their frames, and their
    counts of patched frames are said once for the file, as a local run says it."""
    from media import damage_ts

    src = tmp_path / "broadcast.ts"
    write_talk_clip(src, (rgb for rgb, _ in person_clip_frames(60, (144, 256))), 60, FPS, gop=GOP)
    clip = damage_ts(src, tmp_path / f"{damage}.ts", **({"drop": (0.4, 0.55)} if damage == "dropout" else {"garble": 8}))
    from vbg.offline.distributed import plan_spans

    assert len(plan_spans(clip, 3, 1.0)) > 1  # the run below is really cut into parts
    said = {}
    for how in (("--workers", "1"), ("--ray", "--ray-segment", "1")):
        out = tmp_path / how[0][2:]
        assert main(["process", str(clip), "-o", str(out), "--matte", *how, *COMMON[:-1]]) == 0
        said[how[0]] = [ln for ln in capsys.readouterr().err.splitlines()
                        if "the file is damaged" in ln or "whole instead" in ln]
    local, ray = said["--workers"], said["--ray"]
    assert len(local) == 1 and f"vbg: {clip}: the file is damaged " in local[0], local
    if damage == "dropout":
        assert "frames are missing" in local[0]
        assert ray[-1] == local[0] and len(ray) == 2, ray
        assert ray[0].startswith(f"vbg: {clip}: frame ") and ray[0].endswith(
            "the file cannot be split at its keyframes; processing it whole instead"), ray  # not a staging file's name
        same_pngs(tmp_path / "workers", tmp_path / "ray")
    else:  # each part counts what its own decoder patched: the counts are as its threads found them
        assert len(ray) == 1 and "came out patched by the decoder" in ray[0] and "missing" not in ray[0]
        assert len(os.listdir(tmp_path / "workers")) == len(os.listdir(tmp_path / "ray")) == 60


def _parent_of(pid: int) -> int:
    """The parent's PID (0 once the process is gone)."""
    got = comm_and_parent(pid)
    return got[1] if got else 0


def _actor_pids(title: str) -> list[int]:
    """PIDs of this test run's processes whose title starts with ``title`` (Ray names an actor's
    process ray::CLASS, and ray::CLASS.METHOD while it runs one). Only this process's
    descendants count (the cluster's raylets are its children, their workers theirs): another
    run's Ray workers on the same machine are neither waited for nor killed."""
    me = os.getpid()
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except OSError:
                continue
            if not cmd.startswith(title.encode()):
                continue
            ancestor = _parent_of(int(d))
            while ancestor > 1 and ancestor != me:
                ancestor = _parent_of(ancestor)
            if ancestor == me:
                pids.append(int(d))
    return pids


@contextlib.contextmanager
def _once_a_worker_is_at_work(act) -> Iterator[list[int]]:
    """Runs ``act(pid)`` once, on a thread, as soon as a worker actor is seen running a
    segment (its process title); yields the list that gets that pid."""
    acted: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            pids = _actor_pids("ray::Worker.run")
            if pids:
                act(pids[0])
                acted.append(pids[0])
                return
            done.wait(0.01)

    t = threading.Thread(target=watch)
    t.start()
    try:
        yield acted
    finally:
        done.set()
        t.join()


@pytest.mark.parametrize("workers", [(), ("--workers", "3")], ids=["workers-fit", "one-waits-for-room"])
def test_a_worker_killed_mid_job_is_replaced_and_the_output_is_complete(cluster, clip, local_matte, tmp_path, workers):
    """A worker's process killed while it runs a part: the part runs again, the output is whole.
    With a third worker waiting for room on the two CPUs, that one took the freed CPU, the killed
    one's restart waited for room for good, and the job hung with its part (Ray ran a dead
    worker's calls again on the same worker): the driver now gives them to whichever is free."""
    assert _no_worker_left() == []  # none of an earlier job's, still going away, is the one killed
    out = tmp_path / "matte"
    with _once_a_worker_is_at_work(lambda pid: os.kill(pid, signal.SIGKILL)) as killed:
        rc = main(["process", str(clip), "-o", str(out), "--matte", "--ray", "--ray-segment", "1", *workers, *COMMON])
    assert killed, "no worker was found at work to kill"
    assert rc == 0
    same_pngs(local_matte, out)  # every frame, each as a local run makes it
    assert leftovers(tmp_path) == []


def test_a_damaged_file_fails_alone_and_the_summary_names_it(cluster, clip, tmp_path, capsys):
    truncated = tmp_path / "truncated.mp4"
    data = clip.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # no index: fails when planned, on the driver
    broken = make_png_mov(tmp_path / "broken.mov")  # decodes 5 frames, then fails: in a worker
    raw = bytearray(broken.read_bytes())
    sig = b"\x89PNG\r\n\x1a\n"
    starts = [i for i in range(len(raw)) if raw.startswith(sig, i)]
    raw[starts[5]: starts[5] + 8] = b"garbage!"
    broken.write_bytes(bytes(raw))
    outdir = tmp_path / "out"
    rc = main(["process", str(clip), str(truncated), str(broken), "-o", str(outdir), "--matte", "--ray",
               "--ray-segment", "1", *COMMON])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("vbg: error:")]
    assert len(errors) == 2, err
    assert "truncated.mp4" in errors[0] or "truncated.mp4" in errors[1]
    assert any("broken.mov" in e and "after 5 frames" in e for e in errors), errors
    assert sorted(os.listdir(outdir)) == ["talk.mp4"]
    with av.open(str(outdir / "talk.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 60


def _no_worker_left() -> list[int]:
    """The worker actors' PIDs once none is left, or those still there after a minute: a job's
    actors are killed at its end, and on a busy machine their processes take a moment to go."""
    deadline = time.monotonic() + 60
    while _actor_pids("ray::Worker") and time.monotonic() < deadline:
        time.sleep(0.1)
    return _actor_pids("ray::Worker")


def test_ctrl_c_stops_the_job_and_leaves_no_partial_file(cluster, clip, tmp_path, capsys):
    # An earlier job's worker, still going away, would be taken for this job's at work: Ctrl-C
    # would come before the job had started (one plain "interrupted": nothing was under way).
    assert _no_worker_left() == []
    out = tmp_path / "matte"
    with _once_a_worker_is_at_work(lambda _pid: os.kill(os.getpid(), signal.SIGINT)) as interrupted:
        rc = main(["process", str(clip), "-o", str(out), "--matte", "--ray", "--ray-segment", "1", "--json",
                   *(a for a in COMMON if a != "--quiet")])
    assert interrupted, "no worker was found at work when Ctrl-C was to be pressed"
    assert rc == 130
    captured = capsys.readouterr()
    assert "not written" in captured.err
    # --json: the file's "start" has its "done", as a local run's interrupted file has (it had none)
    events = [json.loads(ln) for ln in captured.out.splitlines()]
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "done", events
    assert events[-1]["interrupted"] is True and events[-1]["output"] is None, events
    assert os.listdir(tmp_path) == []  # no output, no part, no staging folder
    assert _no_worker_left() == []  # the workers are gone: nothing is left running on the cluster


def test_without_ray_installed_one_line_says_how_to_get_it(clip, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # what an import of a missing package raises
    rc = main(["process", str(clip), "-o", str(tmp_path / "out.mp4"), "--ray", *COMMON])
    err = capsys.readouterr().err
    assert rc == 3
    assert err.count("\n") == 1 and "pip install 'vbg[ray]'" in err, err
    assert os.listdir(tmp_path) == []


def test_an_input_after_a_bare_ray_is_not_taken_for_an_address(clip, tmp_path, capsys):
    rc = main(["process", "--ray", str(clip), str(clip), "-o", str(tmp_path / "out"), *COMMON])
    assert rc == 2
    assert "put a bare --ray after the inputs" in capsys.readouterr().err


def test_more_workers_than_the_cluster_has_room_for_hold_no_part_back(cluster, clip, local_matte, tmp_path, capsys):
    out = tmp_path / "matte"
    # 3 workers of 1 CPU on 2 CPUs: the third waits for room for good; the parts go to the other two
    rc = main(["process", str(clip), "-o", str(out), "--matte", "--ray", "--ray-segment", "1", "--workers", "3",
               *COMMON[:-1]])
    assert rc == 0
    assert "3 Ray worker(s) of 1 CPU(s)" in capsys.readouterr().err
    same_pngs(local_matte, out)


def test_on_a_cluster_with_a_gpu_the_workers_ask_for_it_without_a_flag(cluster, clip, tmp_path, capsys):
    # A node that declares a GPU (Ray takes the count as given): the workers are planned onto it, one
    # per 4 CPUs with its share of the GPU. Without CUDA here the model itself falls back to the CPU.
    node = cluster.add_node(num_cpus=4, num_gpus=1, object_store_memory=80 << 20)
    try:
        cluster.wait_for_nodes()
        out = tmp_path / "talk.mp4"
        rc = main(["process", str(clip), "-o", str(out), "--ray", "--ray-segment", "1", "--model", "selfie",
                   "--size", "256"])
        assert rc == 0
        assert "1 Ray worker(s) of 4 CPU(s) and 1 GPU(s)" in capsys.readouterr().err
        with av.open(str(out)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 60
    finally:
        cluster.remove_node(node)


def test_json_lines_are_a_local_runs_for_the_whole_job(cluster, clip, tmp_path, capsys):
    import json

    missing = [str(clip), str(clip.with_name("missing.mp4")), "-o", str(tmp_path / "out"), "--json", *COMMON[:-1]]
    assert main(["process", *missing, "--ray"]) == main(["process", *missing]) == 9  # refused before anything starts
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    rc = main(["process", str(clip), "-o", str(tmp_path / "talk.mp4"), "--json", "--ray", "--ray-segment", "1",
               "--model", "selfie", "--device", "cpu", "--size", "256"])
    assert rc == 0
    events = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and events[0]["frames"] == 60
    assert kinds[-1] == "done" and events[-1]["frames"] == 60 and events[-1]["output"] == str(tmp_path / "talk.mp4")
    assert set(kinds[1:-1]) <= {"progress"}
    done = [e["done"] for e in events if e["event"] == "progress"]
    assert done == sorted(done) and all(0 <= d <= 60 for d in done)  # the parts' frames, context left out
