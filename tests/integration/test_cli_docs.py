"""vbg completion bash|zsh|fish and vbg man: generated from the real parsers, complete, and accepted
by the shells and groff that read them (each skipped only where that program is not installed)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_vbg

ROOT = Path(__file__).resolve().parents[2]


def real_parsers() -> dict[str, argparse.ArgumentParser]:
    """What vbg parses, read from vbg.cli itself: "" the live filter, then every command."""
    from vbg.cli import build_live_parser, build_parser

    out = {"": build_live_parser()}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


def every_flag() -> dict[str, set[str]]:
    return {name: {f for a in p._actions for f in a.option_strings} for name, p in real_parsers().items()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """Each text as `vbg completion SHELL` / `vbg man` print it, in a file."""
    folder = tmp_path_factory.mktemp("docs")
    out = {}
    for kind, args in (("bash", ("completion", "bash")), ("zsh", ("completion", "zsh")),
                       ("fish", ("completion", "fish")), ("man", ("man",))):
        proc = run_vbg(*args, timeout=120)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        out[kind] = folder / f"vbg.{kind}"
        out[kind].write_text(proc.stdout, encoding="utf-8")
    return out


def test_the_commands_print_what_the_generator_makes(generated):
    from vbg.cli_docs import render

    for kind, path in generated.items():
        assert path.read_text(encoding="utf-8") == render(kind)
    proc = run_vbg("completion", "tcsh", timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'tcsh'" in proc.stderr


@pytest.mark.parametrize("kind", ["bash", "zsh", "fish"])
def test_every_command_option_and_choice_is_in_the_completion(generated, kind):
    text = generated[kind].read_text(encoding="utf-8")
    flags = every_flag()
    assert set(flags) - {""} >= {"segment", "process", "export", "doctor", "completion", "man"}
    for command, options in flags.items():
        if command:
            assert re.search(rf"(?<![\w-]){command}(?![\w-])", text), command
        for flag in options:
            word = flag.lstrip("-") if kind == "fish" else flag  # fish: -l background / -s o
            assert re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text), (command, flag)
    for p in real_parsers().values():
        for a in p._actions:
            for choice in a.choices or ():
                if not isinstance(a, argparse._SubParsersAction):
                    assert str(choice) in text, (a.dest, choice)


def test_every_command_and_option_is_in_the_man_page(generated):
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed (apt install groff-base)")
    proc = subprocess.run([groff, "-man", "-Tascii", "-P-c", "-P-b", "-P-u", "-P-o", "-ww", str(generated["man"])],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # -ww: any warning shows here
    page = proc.stdout
    for command, options in every_flag().items():
        if command:
            assert f"vbg {command}" in page
        for flag in options:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", page), (command, flag)
    assert "what -o means" in page  # vbg process's epilog, kept as written


def test_man_reads_the_page(generated):
    man = shutil.which("man")
    if man is None:
        pytest.skip("man is not installed (apt install man-db)")
    proc = subprocess.run([man, "-l", str(generated["man"])], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100"})
    assert proc.returncode == 0, proc.stderr
    assert "real-time virtual background" in proc.stdout.replace("\u2010", "-")


def _bash_complete(script: Path, *words: str) -> list[str]:
    """COMPREPLY after the script's function ran on ``words`` (the last one being completed),
    as bash calls it: COMP_WORDS split at '=' (bash's default COMP_WORDBREAKS) where a word has one."""
    split: list[str] = []
    for w in words:
        split += re.split(r"(=)", w) if w.startswith("--") and "=" in w else [w]
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in split)
    code = (f"source '{script}'\nCOMP_WORDS=({quoted})\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
            "_vbg\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_accepts_and_runs_the_script(generated, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = generated["bash"]
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, timeout=60).returncode == 0
    assert "--background" in _bash_complete(script, "vbg", "--back")
    assert _bash_complete(script, "vbg", "pro") == ["process"]
    assert set(_bash_complete(script, "vbg", "")) >= {"segment", "process", "doctor", "completion", "man"}
    assert _bash_complete(script, "vbg", "-q", "process", "--wor") == ["--workers"]  # after a global flag
    assert _bash_complete(script, "vbg", "process", "--quality", "") == ["fast", "balanced", "best"]
    assert _bash_complete(script, "vbg", "process", "--format=w") == ["webm"]
    assert _bash_complete(script, "vbg", "completion", "") == ["bash", "zsh", "fish"]
    assert "--cutout" in _bash_complete(script, "vbg", "segment", "--cu")
    assert "--cutout" not in _bash_complete(script, "vbg", "--cu")  # the live filter has none
    (tmp_path / "talk.mp4").write_bytes(b"")
    assert _bash_complete(script, "vbg", "--source", str(tmp_path / "ta")) == [str(tmp_path / "talk.mp4")]


def test_zsh_accepts_the_script_and_hands_each_command_its_options(generated):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (apt install zsh)")
    script = generated["zsh"]
    assert subprocess.run([zsh, "-n", str(script)], capture_output=True, timeout=60).returncode == 0
    # compsys's own functions need a terminal; these stand-ins print what the script hands them.
    code = (f"_arguments() {{ print -rl -- \"$@\" }}\n_describe() {{ :; }}\n"
            f"source '{script}' >/dev/null\n"
            "words=(vbg -v process --qu); CURRENT=4; _vbg\nprint -r -- '==='\n"
            "words=(vbg --back); CURRENT=2; _vbg\n")
    proc = subprocess.run([zsh, "-f", "-c", code], capture_output=True, text=True, timeout=60)
    process_specs, live_specs = proc.stdout.split("===\n")
    assert "--quality[" in process_specs and "--background" in process_specs and "--source" not in process_specs
    assert "--background[" in live_specs and "--source[" in live_specs and "--workers" not in live_specs


def test_fish_accepts_the_script_and_completes(generated):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed (apt install fish)")
    script = generated["fish"]
    code = f"source '{script}'; complete -C 'vbg --back'; echo ===; complete -C 'vbg process --quality '"
    proc = subprocess.run([fish, "--no-config", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    live, quality = proc.stdout.split("===\n")
    assert "--background" in [line.split("\t")[0] for line in live.splitlines()]
    assert sorted(line.split("\t")[0] for line in quality.splitlines()) == ["balanced", "best", "fast"]


def test_a_new_option_shows_up_without_a_line_of_docs(monkeypatch):
    """Nothing in cli_docs names an option: one added to a parser is in every output."""
    from vbg import cli, cli_docs

    real = cli.build_parser

    def with_extra():
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["process"].add_argument("--brand-new", choices=("one", "two"), help="a new option")
        return p

    monkeypatch.setattr(cli, "build_parser", with_extra)
    for kind in cli_docs.KINDS:
        text = cli_docs.render(kind)
        assert re.search(r"brand\\?-new", text) and "two" in text, kind
