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


def test_process_config_file_sets_its_sections_and_flags_override(tmp_path):
    """vbg process --config: the model, temporal and background sections, its own settings under
    [output]; a flag wins over the file, a live-only key is unknown, a range is the flag's."""
    from vbg import cli
    from vbg.config import ProcessConfig

    f = tmp_path / "p.toml"
    f.write_text('[model]\nmodel = "selfie"\n[temporal]\nwindow = 3\nsmoothing = 0.5\n'
                 '[background]\ncolor = "#00ff00"\n[output]\nquality = "best"\nmemory = 1024\n')
    parse = cli.build_parser().parse_args
    cfg = cli.process_config(parse(["process", "in.mp4", "-o", "out.mp4", "--config", str(f)]))
    assert isinstance(cfg, ProcessConfig) and cfg.model.model == "selfie" and cfg.model.default_size == 512
    assert (cfg.temporal.window, cfg.temporal.smoothing, cfg.background.color) == (3, 0.5, "#00ff00")
    assert (cfg.quality, cfg.memory, cfg.mode) == ("best", 1024, "rgb")
    cfg = cli.process_config(parse(["process", "in.mp4", "-o", "out.mov", "--config", str(f),
                                    "--window", "1", "--quality", "fast", "--size", "320", "--alpha"]))
    assert (cfg.temporal.window, cfg.quality, cfg.model.size, cfg.mode) == (1, "fast", 320, "rgba")
    assert cfg.temporal.smoothing == 0.5 and cfg.model.model == "selfie"
    assert cli.process_config(parse(["process", "in.mp4", "-o", "out.mp4"])) == ProcessConfig()
    f.write_text("[temporal]\nskip = 2\n")
    with pytest.raises(ConfigError, match=r"^--config \S*p\.toml: unknown setting \[temporal\] skip: known are smoothing, window, upsample"):
        cli.process_config(parse(["process", "in.mp4", "-o", "out.mp4", "--config", str(f)]))
    f.write_text("[output]\nmemory = 10\n")
    with pytest.raises(ConfigError, match=r"^\[output\] memory = 10 is out of range: use 64\.\.1048576 MB"):
        from_toml(f, ProcessConfig())


@pytest.mark.parametrize("text,needle", [
    ('[model]\nmodle = "selfie"\n', "unknown setting [model] modle"),
    ('[modle]\nmodel = "selfie"\n', "unknown config section [modle]"),
    ('[output]\nframes = "ten"\n', "[output] frames = 'ten' must be a whole number"),
    ('[output]\nvcam = "yes"\n', "must be true or false"),
    ('[temporal]\nsmoothing = 4.5\n', "[temporal] smoothing = 4.5 is out of range: use 0..4 (0 = off)"),
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


# ---------------------------------------------------------------------------- ranges
def _numeric_flags():
    """(argv before the flag, the flag, its dest) for every int/float option of every command."""
    import argparse

    from vbg import cli

    live = ["--source", "demo", "--no-vcam"]  # refused anyway should the flag pass
    before = {"process": ["process", "no-such.mp4", "-o", "o.mp4"], "segment": ["segment", "x.png", "-o", "o"],
              "export": ["export", "-o", "o.onnx", "--random-init"]}
    parsers = [(live, cli.build_live_parser())]
    for action in cli.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += [(before.get(name, [name]), sub) for name, sub in action.choices.items()]
    for argv, parser in parsers:
        for action in parser._actions:
            if action.type in (int, float) and action.option_strings:
                yield argv, action.option_strings[-1], action.dest, action.type


def _outside(rng, kind):
    low = rng.lo if rng.lo_open else rng.lo - 1
    high = rng.hi if rng.hi_open else rng.hi + 1
    return [kind(low), kind(high)]


def test_every_numeric_setting_declares_its_range():
    """One declared range per option: every numeric flag of every command and every numeric
    config key has one (a new option without one fails here)."""
    from dataclasses import fields

    from vbg.cli import flag_ranges
    from vbg.config import SECTIONS

    ranges = flag_ranges()
    flags = list(_numeric_flags())
    assert {"threads", "window", "fps", "frames", "feather", "seed"} <= {dest for _, _, dest, _ in flags}
    for _, flag, dest, _ in flags:
        assert dest in ranges, f"{flag} has no declared range"
    for name in SECTIONS:
        for f in fields(type(getattr(LiveConfig(), name))):
            # size is N or HxW, parsed (and its N checked against ranges.SIZE) by parse_size
            if set(f.type.replace(" ", "").split("|")) in ({"int"}, {"float"}, {"int", "None"}, {"float", "None"}):
                assert "range" in f.metadata, f"[{name}] {f.name} has no declared range"


@pytest.mark.parametrize("argv,flag,dest,kind", list(_numeric_flags()),
                         ids=[f"{a[0]}{f}" for a, f, _, _ in _numeric_flags()])
def test_numeric_flags_out_of_range_are_refused(capsys, argv, flag, dest, kind):
    from vbg import cli

    for value in _outside(cli.flag_ranges()[dest], kind):
        rc = cli.main([*argv, flag, str(value)])
        err = capsys.readouterr().err.splitlines()
        assert rc == 2, (flag, value, err)
        assert err[0].startswith(f"vbg: error: {flag} {value} is out of range: use "), (flag, value, err)


def _config_fields():
    from dataclasses import fields

    from vbg.config import SECTIONS

    for name in SECTIONS:
        for f in fields(type(getattr(LiveConfig(), name))):
            if "range" in f.metadata:
                yield name, f.name, f.metadata["range"], int if f.type.startswith("int") else float


@pytest.mark.parametrize("section,key,rng,kind", list(_config_fields()),
                         ids=[f"{s}.{k}" for s, k, _, _ in _config_fields()])
def test_config_keys_out_of_range_are_refused(tmp_path, section, key, rng, kind):
    """``[model] threads = 100000`` started ~32,000 threads: a config key meets the same range as
    its flag."""
    f = tmp_path / "c.toml"
    for value in _outside(rng, kind):
        f.write_text(f"[{section}]\n{key} = {value!r}\n")
        with pytest.raises(ConfigError) as err:
            from_toml(f)
        assert str(err.value).startswith(f"[{section}] {key} = {value!r} is out of range: use {rng.describe()}")
    inside = kind(rng.hi) if not rng.hi_open else kind(rng.lo + (rng.hi - rng.lo) / 2)
    f.write_text(f"[{section}]\n{key} = {inside!r}\n")
    assert from_toml(f) is not None  # the bound itself (or a value inside an open range) is taken


@pytest.mark.parametrize("threads", [-3, 100000])
def test_threads_in_a_config_file_stop_the_live_filter_before_it_starts(tmp_path, capsys, threads):
    from vbg import cli

    f = tmp_path / "c.toml"
    f.write_text(f"[model]\nmodel = \"selfie\"\nthreads = {threads}\n")
    rc = cli.main(["--config", str(f), "--source", "demo", "--no-vcam", "--record", str(tmp_path / "o.mp4"),
                   "--frames", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and f"vbg: error: [model] threads = {threads} is out of range: use 1..256" in err, err
    assert not (tmp_path / "o.mp4").exists()
