"""Hand-over slots and the live configuration (TOML + CLI)."""

from __future__ import annotations

import threading

import pytest

from vbg.buffers import Closed, FrameQueue, LatestSlot
from vbg.config import LiveConfig, apply, from_toml
from vbg.errors import ConfigError


def test_latest_slot_keeps_the_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(timeout=0) == 4
    assert slot.drops == 4 and slot.puts == 5
    assert slot.get(timeout=0.01) is None  # empty: a time-out, not a stale item


def test_latest_slot_wakes_a_waiting_reader_and_closes():
    slot: LatestSlot[str] = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(timeout=5)))
    t.start()
    slot.put("frame")
    t.join(60)  # a guard against a hang; the put wakes it at once
    assert got == ["frame"]
    slot.close()
    with pytest.raises(Closed):
        slot.get(timeout=1)


def test_frame_queue_drops_nothing_and_ends():
    q: FrameQueue[int] = FrameQueue(4)
    out = []

    def consume():
        while True:
            try:
                out.append(q.get(timeout=5))
            except Closed:
                return

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        q.put(i, timeout=5)
    q.end()
    t.join(60)
    assert out == list(range(50))


def test_toml_sets_fields_and_cli_values_override(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[model]\nmodel = "selfie"\nsize = 320\n[temporal]\nskip = 3\n[background]\ncolor = "#00ff00"\n')
    cfg = from_toml(f)
    assert cfg.model.model == "selfie" and cfg.model.size == 320 and cfg.temporal.skip == "3"
    cfg2 = apply(cfg, {"model": {"size": "144x256"}})
    assert cfg2.model.size == (144, 256) and cfg2.background.color == "#00ff00"


@pytest.mark.parametrize("text,needle", [
    ('[model]\nmodle = "selfie"\n', "unknown setting [model] modle"),
    ('[modle]\nmodel = "selfie"\n', "unknown config section [modle]"),
    ('[output]\nframes = "ten"\n', "[output] frames = 'ten' must be a whole number"),
    ('[output]\nvcam = "yes"\n', "must be true or false"),
    ('[temporal]\nsmoothing = 4.5\n', "--smoothing 4.5 is out of range: use 0 (off) .. 4"),
    ('[background]\ncolor = "red"\nblur = 2\n', "pick one background"),
    ("[model\n", "not valid TOML"),
])
def test_bad_config_files_name_the_key(tmp_path, text, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        from_toml(f)
    assert needle in str(err.value)


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))
    assert {c.name for c in configs} >= {"default.toml", "cpu.toml", "gpu.toml"}
    for c in configs:
        assert isinstance(from_toml(c), LiveConfig)
