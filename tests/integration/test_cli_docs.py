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


def _sub_parsers(parser: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    """Each command under ``parser`` by its path ("process", "ctl status"), at any depth."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[f"{path} {name}".strip()] = sub
                out.update(_sub_parsers(sub, f"{path} {name}".strip()))
    return out


def real_parsers() -> dict[str, argparse.ArgumentParser]:
    """What vbg parses, read from vbg.cli itself: "" the live filter, then every command and every
    sub-verb of one ("config show", "ctl status")."""
    from vbg.cli import build_live_parser, build_parser

    return {"": build_live_parser(), **_sub_parsers(build_parser())}


def verbs_of(parser: argparse.ArgumentParser) -> list[str]:
    return [name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices]


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
    # the exit codes in the page itself (it sent the reader to the README, which a pip install lacks),
    # the same codes as the README's table
    from vbg.cli_docs import EXIT_STATUS

    status = page.split("EXIT STATUS", 1)[1].split("SEE ALSO", 1)[0]
    assert [int(c) for c in re.findall(r"^ {7}(\d+)\s", status, re.M)] == [c for c, _ in EXIT_STATUS], status
    readme = (ROOT / "README.md").read_text().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    assert [int(c) for c in re.findall(r"^\| (\d+) \|", readme, re.M)] == [c for c, _ in EXIT_STATUS]


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
    # --blur's strength may be left out: another option follows it (it offered nothing there)
    assert _bash_complete(script, "vbg", "--blur", "--mir") == ["--mirror"]
    assert _bash_complete(script, "vbg", "process", "--blur", "--wor") == ["--workers"]
    assert _bash_complete(script, "vbg", "--blur", "") == []  # its strength: a number of the user's
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


# --- sub-verbs: vbg config show, vbg service install, vbg ctl status ... ---------------------------


def test_bash_completes_each_sub_verb_then_its_options_and_choices(generated, tmp_path):
    assert shutil.which("bash"), "bash must be installed for these tests"
    script = generated["bash"]
    parents = {name: verbs_of(p) for name, p in real_parsers().items() if verbs_of(p)}
    assert {"config", "service", "ctl"} <= set(parents), parents
    for name, verbs in parents.items():  # every command with sub-verbs, found from the parsers
        assert _bash_complete(script, "vbg", *name.split(), "") == verbs, name
    assert _bash_complete(script, "vbg", "config", "") == ["path", "show", "edit"]
    assert _bash_complete(script, "vbg", "config", "sh") == ["show"]
    assert _bash_complete(script, "vbg", "-v", "service", "-q", "") == ["install", "uninstall", "status"]
    assert _bash_complete(script, "vbg", "ctl", "status", "--") == ["--help", "--json"]
    assert _bash_complete(script, "vbg", "ctl", "page", "--pr") == ["--print"]
    assert _bash_complete(script, "vbg", "config", "show", "--pro") == ["--process"]
    assert _bash_complete(script, "vbg", "ctl", "effect", "") == ["on", "off", "toggle"]
    assert _bash_complete(script, "vbg", "ctl", "mirror", "t") == ["toggle"]
    assert "--json" not in _bash_complete(script, "vbg", "ctl", "page", "--")  # each verb its own
    (tmp_path / "live.toml").write_bytes(b"")
    assert _bash_complete(script, "vbg", "service", "install", "--config", str(tmp_path / "li")) == [
        str(tmp_path / "live.toml")]
    assert _bash_complete(script, "vbg", "service", "install", f"--config={tmp_path / 'li'}") == [
        str(tmp_path / "live.toml")]


def _zsh_complete(zsh: str, script: Path, folder: Path, line: str) -> list[str]:
    """What zsh's own completion system offers for ``line`` + TAB, the script installed as _vbg:
    an interactive zsh on a pseudo-terminal (zsh/zpty), compadd wrapped to print each match."""
    fpath = folder / "zfunc"
    fpath.mkdir(exist_ok=True)
    (fpath / "_vbg").write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
    driver = folder / "drive.zsh"
    driver.write_text("\n".join([
        "zmodload zsh/zpty || exit 3",
        "zpty z zsh -f -i",
        f"zpty -w z \"PROMPT=; fpath=({fpath} \\$fpath); autoload -U compinit; compinit -u -D\"",
        "zpty -w z \"zstyle ':completion:*' list-grouped false; zstyle ':completion:*' insert-tab false\"",
        "zpty -w z 'compadd () { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\\ * ]]; then builtin compadd \"$@\"; "
        "return $?; fi; typeset -a hits; builtin compadd -A hits \"$@\"; local ret=$?; "
        "(( $#hits )) && print -rl -- \"<H\"\"IT>\"${^hits}; return $ret }'",
        "zpty -w z \"comppostfuncs=(finish); finish() { print -r -- '<E''ND>'; exit }\"",
        "zpty -w z \"$1\"$'\\t'",
        "zpty -r z out '*<END>*'",
        "print -r -- \"$out\"",
        "zpty -d z",
        ""]), encoding="utf-8")
    proc = subprocess.run([zsh, "-f", str(driver), line], capture_output=True, text=True, timeout=60)
    if proc.returncode == 3:
        pytest.skip("zsh has no zsh/zpty module to drive its completion with")
    assert proc.returncode == 0, proc.stderr
    return sorted(set(re.findall(r"<HIT>([^\s<]+)", proc.stdout)))


def test_zsh_completes_each_sub_verb_then_its_options_and_choices(generated, tmp_path):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed (apt install zsh)")
    script = generated["zsh"]
    assert _zsh_complete(zsh, script, tmp_path, "vbg pro") == ["process"]  # the harness itself works
    assert _zsh_complete(zsh, script, tmp_path, "vbg config ") == ["edit", "path", "show"]
    assert _zsh_complete(zsh, script, tmp_path, "vbg -v service ") == ["install", "status", "uninstall"]
    assert {"effect", "status", "page"} <= set(_zsh_complete(zsh, script, tmp_path, "vbg ctl "))
    assert "--json" in _zsh_complete(zsh, script, tmp_path, "vbg ctl status --")
    assert "--print" in _zsh_complete(zsh, script, tmp_path, "vbg ctl page --")
    assert "--config" in _zsh_complete(zsh, script, tmp_path, "vbg service install --")
    assert _zsh_complete(zsh, script, tmp_path, "vbg ctl effect ") == ["off", "on", "toggle"]
    assert _zsh_complete(zsh, script, tmp_path, "vbg completion ") == ["bash", "fish", "zsh"]


def _fish_complete(fish: str, script: Path, cwd: Path, line: str) -> list[str]:
    code = f"source '{script}'; complete -C '{line}'"
    proc = subprocess.run([fish, "--no-config", "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return sorted(entry.split("\t")[0] for entry in proc.stdout.splitlines())


def test_fish_completes_each_sub_verb_then_its_options_and_choices(generated, tmp_path):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed (apt install fish)")
    script = generated["fish"]
    (tmp_path / "talk.mp4").write_bytes(b"")  # a file name that must not be offered for a verb
    assert _fish_complete(fish, script, tmp_path, "vbg config ") == ["edit", "path", "show"]
    assert _fish_complete(fish, script, tmp_path, "vbg -v service ") == ["install", "status", "uninstall"]
    ctl = _fish_complete(fish, script, tmp_path, "vbg ctl ")
    assert {"effect", "status", "page"} <= set(ctl) and "talk.mp4" not in ctl
    assert _fish_complete(fish, script, tmp_path, "vbg completion ") == ["bash", "fish", "zsh"]
    assert "--json" in _fish_complete(fish, script, tmp_path, "vbg ctl status --")
    assert "--json" not in _fish_complete(fish, script, tmp_path, "vbg ctl page --")
    assert "--print" in _fish_complete(fish, script, tmp_path, "vbg ctl page --")
    assert "--config" in _fish_complete(fish, script, tmp_path, "vbg service install --")
    assert _fish_complete(fish, script, tmp_path, "vbg ctl effect ") == ["off", "on", "toggle"]
    assert _fish_complete(fish, script, tmp_path, "vbg service install --config ") == ["talk.mp4"]
    assert _fish_complete(fish, script, tmp_path, "vbg ctl background ") == ["talk.mp4"]


def test_a_new_sub_verb_completes_without_a_line_of_docs(monkeypatch, tmp_path):
    """Sub-verbs come from the parsers: a new one (and an option that takes a value before it) works."""
    from vbg import cli, cli_docs

    real = cli.build_parser

    def with_extra():
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        deep = sub.choices["doctor"].add_subparsers(dest="deep_verb")
        deep.add_parser("deeper", help="a new verb").add_argument("--brand-new", choices=("one", "two"))
        sub.choices["ctl"].add_argument("--socket", metavar="ADDRESS", help="a new value-taking option")
        return p

    monkeypatch.setattr(cli, "build_parser", with_extra)
    script = tmp_path / "vbg.bash"
    script.write_text(cli_docs.render("bash"), encoding="utf-8")
    assert _bash_complete(script, "vbg", "doctor", "") == ["deeper"]
    assert _bash_complete(script, "vbg", "doctor", "deeper", "--brand-new", "") == ["one", "two"]
    assert _bash_complete(script, "vbg", "ctl", "--socket", "status", "st") == ["status"]  # its value
    assert _bash_complete(script, "vbg", "ctl", "--socket", "x", "status", "--j") == ["--json"]
    assert _bash_complete(script, "vbg", "ctl", "--socket=x", "status", "--j") == ["--json"]
    for kind in cli_docs.KINDS:
        text = cli_docs.render(kind)
        assert "deeper" in text and re.search(r"brand\\?-new", text), kind


def test_docs_reliability_is_the_readme_s_reliability_section():
    """docs/reliability.md is the README's Reliability section as it is (it had drifted: 29 rows
    missing, a doctor check said to fail that warns, messages quoted as they no longer read)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")
    start = next(i for i, line in enumerate(readme) if line.startswith("## Reliability"))
    end = next(i for i in range(start + 1, len(readme)) if readme[i].startswith("## "))
    doc = (ROOT / "docs/reliability.md").read_text(encoding="utf-8").split("\n")
    assert doc[0] == "# " + readme[start][3:]
    assert "\n".join(doc[3:]).rstrip("\n") == "\n".join(readme[start + 3:end]).rstrip("\n"), \
        "copy the README's Reliability section (after its first three lines) into docs/reliability.md"
