"""Shell completion scripts and the man page, generated from the CLI's own argparse parsers.

In: the parsers of ``vbg.cli`` (``build_live_parser``: ``vbg [OPTIONS]``, the live filter;
``build_parser``: ``vbg COMMAND ...``), walked as they are, so a new option or command is in
every output without a line here. Out: text: ``render("bash" | "zsh" | "fish" | "man")``, printed
by ``vbg completion SHELL`` and ``vbg man`` (always the running vbg's). Nothing is written.

Which word is the command follows ``vbg.cli``'s rule: the first word that is not ``-q``,
``-v``, ``--quiet`` or ``--verbose``; when it is none of the commands, the whole line is the
live filter's. A command with subparsers of its own (vbg config, service, ctl) has sub-verbs,
walked the same way, at any depth: the first word after it that is not an option (nor an option's
value) is its verb, and the verb's own options, choices and positionals complete from there on.
An option's value completes to its ``choices`` when it has them, to file names
when its metavar names a file (``PATH``, ``FILE``, ``OUT``, ``IMAGE``, ``VIDEO``, ``DEV``...),
else to nothing.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass

KINDS = ("bash", "zsh", "fish", "man")
SHELLS = KINDS[:3]
_FILE_WORDS = ("PATH", "FILE", "OUT", "IMAGE", "VIDEO", "DEV", "INPUT", "OUTPUT", "DIR", "FOLDER")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str  # argparse's help, %-expanded, on one line
    takes_value: bool
    choices: tuple[str, ...]
    metavar: str  # "" for a switch
    files: bool  # the value is a file name
    group: str  # the parser group's title ("options" for the plain ones)
    optional: bool = False  # the value may be left out (--blur alone): another option may follow


@dataclass(frozen=True)
class Positional:
    metavar: str
    help: str
    many: bool
    choices: tuple[str, ...]
    files: bool


@dataclass(frozen=True)
class Command:
    name: str  # "" for the live filter, ``vbg [OPTIONS]``; a sub-verb's is its path: "ctl status"
    summary: str  # the one line of ``vbg --help``'s command list (or of its parent's verb list)
    description: str
    epilog: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]
    verbs: tuple[Command, ...] = ()  # the sub-commands of its subparsers (vbg config path|show|edit)

    @property
    def word(self) -> str:
        """What is typed for it: the last word of its path."""
        return self.name.rsplit(" ", 1)[-1]

    def value_flags(self) -> tuple[str, ...]:
        return tuple(f for o in self.options if o.takes_value for f in o.flags)


def every_command(cmds) -> list[Command]:
    """Each command and, after it, each of its sub-verbs (theirs after them), at any depth."""
    out: list[Command] = []
    for c in cmds:
        out += [c, *every_command(c.verbs)]
    return out


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _names_files(metavar: str) -> bool:
    words = re.split(r"[^A-Za-z]+", metavar.upper())
    return any(w.startswith(f) for w in words for f in _FILE_WORDS if w)


def _walk(parser: argparse.ArgumentParser, name: str, summary: str) -> Command:
    formatter = parser._get_formatter()
    group_of = {id(a): g.title or "options" for g in parser._action_groups for a in g._group_actions}
    options, positionals, verbs = [], [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: _one_line(a.help) for a in action._choices_actions}
            verbs += [_walk(p, f"{name} {verb}".strip(), summaries.get(verb, ""))
                      for verb, p in action.choices.items()]
            continue
        if action.help == argparse.SUPPRESS:
            continue
        help_text = _one_line(formatter._expand_help(action)) if action.help else ""
        choices = tuple(str(c) for c in action.choices) if action.choices else ()
        metavar = action.metavar if isinstance(action.metavar, str) else ""
        if action.option_strings:
            takes = action.nargs != 0
            metavar = metavar or (action.dest.upper() if takes else "")
            options.append(Option(tuple(action.option_strings), help_text, takes, choices, metavar,
                                  takes and not choices and _names_files(metavar), group_of.get(id(action), "options"),
                                  takes and action.nargs == "?"))
        else:
            metavar = metavar or action.dest.upper()
            positionals.append(Positional(metavar, help_text, action.nargs in ("+", "*", argparse.REMAINDER),
                                          choices, not choices and _names_files(metavar)))
    return Command(name, summary, _one_line(parser.description), parser.epilog or "", tuple(options),
                   tuple(positionals), tuple(verbs))


# The exit codes, as the README's "Exit codes" table gives them at more length (a test keeps the
# two to the same codes): the man page carries them, since a pip install has no README.
EXIT_STATUS = (
    (0, "success"),
    (1, "some inputs of a batch failed (each said on its own line); vbg service: a systemctl step failed; "
        "vbg ctl: no filter running, or it refused the request"),
    (2, "bad option or value"),
    (3, "a needed package is missing (the message has the pip install)"),
    (4, "model file unusable (missing, corrupt, wrong shape, unsafe pickle)"),
    (5, "model download failed (no network, hub error)"),
    (6, "model access refused (gated repository, no or bad HF_TOKEN)"),
    (7, "downloaded file failed its sha256 check"),
    (8, "asked-for GPU provider not usable with --strict-device, or --encoder nvenc where NVENC does not open"),
    (9, "unreadable input"),
    (10, "output cannot be written, exists without --overwrite, is an input, or another vbg run writes it"),
    (11, "video source cannot be opened or read"),
    (12, "virtual camera or preview unavailable (no v4l2loopback/OBS device, busy, no display)"),
    (13, "out of memory"),
    (130, "interrupted (Ctrl-C or SIGTERM; the live filter stops cleanly with 0)"),
    (141, "stdout or stderr was closed by its reader: the job stopped as on Ctrl-C"),
)


def commands() -> list[Command]:
    """The live filter first (name ""), then each command in ``vbg --help``'s order, each with its
    sub-verbs (``Command.verbs``, walked from its subparsers: vbg config show, vbg ctl status...)."""
    from .cli import build_live_parser, build_parser

    return [_walk(build_live_parser(), "", ""), *_walk(build_parser(), "", "").verbs]


def global_flags() -> tuple[str, ...]:
    from .cli import GLOBAL_FLAGS

    return tuple(GLOBAL_FLAGS)


def render(kind: str) -> str:
    """The bash, zsh or fish completion script, or the man page (roff)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    return {"bash": bash, "zsh": zsh, "fish": fish, "man": man}[kind](commands())


def _version() -> str:
    from . import __version__

    return __version__


# --- bash ----------------------------------------------------------------------------------------


def _words(items) -> str:
    return shlex.quote(" ".join(items))


def _bash_label(c: Command) -> str:
    return shlex.quote(c.name) if c.name else '""'


def bash(cmds: list[Command]) -> str:
    names = [c.name for c in cmds if c.name]
    nodes = every_command(cmds)
    parents = [c for c in nodes if c.verbs]
    lines = [
        f"# bash completion for vbg {_version()}: generated from vbg's own parser by `vbg completion bash`.",
        "# Install: vbg completion bash > ~/.local/share/bash-completion/completions/vbg",
        "_vbg_files() {",
        '    local IFS=$\'\\n\'',
        '    compopt -o filenames 2>/dev/null',
        '    COMPREPLY=($(compgen -f -- "$1"))',
        "}",
        "",
        "_vbg() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" at=0 i w',
        '    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    # the command: the first word that is not a global flag (as vbg reads its arguments)",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        "        case \"$w\" in",
        f"            {'|'.join(global_flags())}) ;;",
        '            *) cmd="$w"; at=$i; break ;;',
        "        esac",
        "    done",
        "    case \"$cmd\" in",
        f"        {'|'.join(names)}) ;;",
        '        *) cmd="" ;;',
        "    esac",
        "    # its sub-verbs (vbg config show, vbg ctl status): $cmd becomes the path, \"ctl status\"",
        '    while [[ -n "$cmd" ]] && (( ++i < COMP_CWORD )); do',
        '        w="${COMP_WORDS[i]}"',
    ]
    value_flags = [shlex.quote(f"{c.name} {f}") for c in parents for f in c.value_flags()]
    if value_flags:  # an option of a command with sub-verbs that takes a value: skip the value
        lines += ["        case \"$cmd $w\" in",
                  f"            {'|'.join(value_flags)})",
                  '                [[ "${COMP_WORDS[i+1]}" == "=" ]] && (( i++ )); (( i++ )); continue ;;',
                  "        esac"]
    verb_paths = [shlex.quote(v.name) for c in parents for v in c.verbs]
    lines += [
        '        [[ "$w" == -* || "$w" == "=" ]] && continue',
        "        case \"$cmd $w\" in",
        f'            {"|".join(verb_paths) or "__vbg_none__"}) cmd="$cmd $w"; at=$i ;;',
        "            *) break ;;",
        "        esac",
        "    done",
        "    # --opt=value: one word, or three where COMP_WORDBREAKS splits at '=' (bash's default)",
        '    if [[ "$cur" == "=" && "$prev" == --* ]]; then',
        '        cur=""',
        '    elif [[ "$prev" == "=" ]] && (( COMP_CWORD > 1 )); then',
        '        prev="${COMP_WORDS[COMP_CWORD-2]}"',
        '    elif [[ "$cur" == --*=* ]]; then',
        '        prev="${cur%%=*}"; cur="${cur#*=}"',
        '    elif [[ "$prev" == --*=* ]]; then',
        '        prev=""',
        "    fi",
        "    local opts",
        "    case \"$prev\" in -*)",
        "        case \"$cmd $prev\" in",
    ]
    for c in nodes:
        for o in c.options:
            if not o.takes_value:
                continue
            pattern = "|".join(shlex.quote(f"{c.name} {f}") for f in o.flags)
            if o.choices:
                action = f'COMPREPLY=($(compgen -W {_words(o.choices)} -- "$cur")); return 0'
            elif o.files:
                action = '_vbg_files "$cur"; return 0'
            else:
                action = "COMPREPLY=(); return 0"  # a value of the user's own: nothing to offer
            if o.optional:  # --blur --mir<TAB>: the options, as after a switch
                action = f'[[ "$cur" == -* ]] || {{ {action}; }}'
            lines.append(f"            {pattern}) {action} ;;")
    lines += ["        esac ;;", "    esac", "    case \"$cmd\" in"]
    for c in nodes:
        opts = [f for o in c.options for f in o.flags]
        lines.append(f"        {_bash_label(c)}) opts={_words(opts)} ;;")
    lines += ["    esac",
              '    if [[ "$cur" == -* ]]; then',
              '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
              '    elif [[ -z "$cmd" ]] && (( at == 0 )); then',
              f'        COMPREPLY=($(compgen -W {_words(names)} -- "$cur"))',
              "    else",
              "        case \"$cmd\" in"]
    for c in nodes:
        if not c.name:
            continue
        if c.verbs:  # no verb typed yet: the verbs
            words = _words(v.word for v in c.verbs)
            lines.append(f'            {_bash_label(c)}) COMPREPLY=($(compgen -W {words} -- "$cur")) ;;')
            continue
        for p in c.positionals:
            if p.choices:
                words = _words(p.choices)
                lines.append(f'            {_bash_label(c)}) COMPREPLY=($(compgen -W {words} -- "$cur")) ;;')
            elif p.files:
                lines.append(f'            {_bash_label(c)}) _vbg_files "$cur" ;;')
            break  # the first positional decides: vbg's commands have one kind each
    lines += ["            *) COMPREPLY=() ;;", "        esac", "    fi", "    return 0", "}",
              "complete -F _vbg vbg", ""]
    return "\n".join(lines)


# --- zsh -----------------------------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_desc(text: str) -> str:
    short = text if len(text) <= 90 else text[:87].rstrip() + "..."
    return re.sub(r"([\[\]\\])", r"\\\1", short)  # in [...]: brackets and backslashes escaped


def _zsh_spec(o: Option) -> str:
    desc = _zsh_desc(o.help)
    if o.takes_value:
        message = re.sub(r"([:\\])", r"\\\1", o.metavar or "value")
        if o.choices:
            action = "(" + " ".join(re.sub(r"([ ()\\])", r"\\\1", c) for c in o.choices) + ")"
        elif o.files:
            action = "_files"
        else:
            action = " "
        tail = f":{message}:{action}"
    else:
        tail = ""
    if len(o.flags) == 1:
        return _zsh_quote(f"{o.flags[0]}[{desc}]{tail}")
    excl = "(" + " ".join(o.flags) + ")"
    return _zsh_quote(excl) + "{" + ",".join(o.flags) + "}" + _zsh_quote(f"[{desc}]{tail}")


def zsh(cmds: list[Command]) -> str:
    names = [c for c in cmds if c.name]
    nodes = [c for c in every_command(cmds) if c.name]
    parents = [c for c in nodes if c.verbs]
    lines = [
        "#compdef vbg",
        f"# zsh completion for vbg {_version()}: generated from vbg's own parser by `vbg completion zsh`.",
        "# Install: vbg completion zsh > ~/.zfunc/_vbg  (with fpath=(~/.zfunc $fpath) before compinit)",
        "",
        "_vbg() {",
        f"  local -a global_flags=({' '.join(global_flags())})",
        "  local i j w cmd=''",
        "  for ((i = 2; i < CURRENT; i++)); do",
        "    if (( ! ${global_flags[(Ie)${words[i]}]} )); then cmd=${words[i]}; break; fi",
        "  done",
        "  # its sub-verbs (vbg config show, vbg ctl status): $cmd becomes the path, 'ctl status'",
        "  case $cmd in",
        f"    ({'|'.join(c.name for c in names)})",
        "      for ((j = i + 1; j < CURRENT; j++)); do",
        "        w=${words[j]}",
    ]
    value_flags = [_zsh_quote(f"{c.name} {f}") for c in parents for f in c.value_flags()]
    if value_flags:  # an option of a command with sub-verbs that takes a value: skip the value
        lines += ["        case \"$cmd $w\" in",
                  f"          ({'|'.join(value_flags)}) (( j++ )); continue ;;",
                  "        esac"]
    verb_paths = [_zsh_quote(v.name) for c in parents for v in c.verbs]
    lines += [
        "        [[ $w == -* ]] && continue",
        "        case \"$cmd $w\" in",
        f'          ({"|".join(verb_paths) or "__vbg_none__"}) cmd="$cmd $w"; i=$j ;;',
        "          (*) break ;;",
        "        esac",
        "      done",
        "      ;;",
        "  esac",
        "  case $cmd in",
    ]
    for c in nodes:
        specs = [_zsh_spec(o) for o in c.options]
        if c.verbs:
            verbs = " ".join(_zsh_quote(f"{v.word}:{_zsh_desc(v.summary)}") for v in c.verbs)
            specs.append(_zsh_quote("1: :{_describe verb vbg_verbs}"))
        else:
            verbs = ""
            for p in c.positionals:
                action = "_files" if p.files else "(" + " ".join(p.choices) + ")" if p.choices else " "
                specs.append(_zsh_quote(f"{'*' if p.many else ''}:{_zsh_desc(p.metavar)}:{action}"))
        lines.append(f"    ({_zsh_quote(c.name) if ' ' in c.name else c.name})")
        if verbs:
            lines.append(f"      local -a vbg_verbs=({verbs})")
        lines.append("      (( CURRENT -= i - 1 )); words=(\"${(@)words[i,-1]}\")")
        lines.append("      _arguments -s \\")
        lines += [f"        {s} \\" for s in specs]
        lines[-1] = lines[-1][:-2]
        lines.append("      ;;")
    live = cmds[0]
    commands_list = " ".join(_zsh_quote(f"{c.name}:{_zsh_desc(c.summary)}") for c in names)
    lines += ["    (*)",
              f"      local -a vbg_commands=({commands_list})",
              "      _arguments -s \\"]
    lines += [f"        {_zsh_spec(o)} \\" for o in live.options]
    lines += ["        '1: :{_describe command vbg_commands}'", "      ;;", "  esac", "}", "", '_vbg "$@"', ""]
    return "\n".join(lines)


# --- fish ----------------------------------------------------------------------------------------


def fish(cmds: list[Command]) -> str:
    names = [c.name for c in cmds if c.name]
    nodes = every_command(cmds)
    parents = [c for c in nodes if c.verbs]
    value_flags = [f"{c.name} {f}" for c in parents for f in c.value_flags()]
    lines = [f"# fish completion for vbg {_version()}: generated from vbg's own parser by `vbg completion fish`.",
             "# Install: vbg completion fish > ~/.config/fish/completions/vbg.fish",
             "complete -c vbg -e",
             "# the command and its sub-verbs so far, as one line: '' (the live filter), 'ctl', 'ctl status'",
             "function __vbg_path",
             "    set -l words (commandline -opc)",
             "    set -e words[1]",
             f"    while set -q words[1]; and contains -- $words[1] {' '.join(global_flags())}",
             "        set -e words[1]",
             "    end",
             f"    set -q words[1]; and contains -- $words[1] {' '.join(names)}; or return 0",
             "    set -l cmd $words[1]",
             "    set -e words[1]",
             "    while set -q words[1]",
             "        set -l w $words[1]",
             "        set -e words[1]",
             "        if contains -- \"$cmd $w\" " + " ".join(shlex.quote(v) for v in value_flags or ["__vbg_none__"]),
             "            set -e words[1]  # the option's value",
             "        else if string match -q -- '-*' $w",
             "            continue",
             "        else if contains -- \"$cmd $w\" "
             + " ".join([shlex.quote(v.name) for c in parents for v in c.verbs] or ["__vbg_none__"]),
             "            set cmd \"$cmd $w\"",
             "        else",
             "            break",
             "        end",
             "    end",
             "    echo $cmd",
             "end",
             "function __vbg_at  # the words of a path: __vbg_at ctl status; none: the live filter",
             "    set -l at (__vbg_path)",
             '    test "$at" = "$argv"',
             "end"]

    def cond(c: Command) -> str:
        return shlex.quote(f"__vbg_at {c.name}".strip())

    for c in cmds:
        if c.name:
            lines.append(f"complete -c vbg -f -n {cond(cmds[0])} -a {c.name} -d {shlex.quote(c.summary)}")
    for c in nodes:
        for o in c.options:
            parts = [f"complete -c vbg -n {cond(c)}"]
            for f in o.flags:
                parts.append(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}")
            if o.takes_value:
                parts.append("-rF" if o.files else "-x")
                if o.choices:
                    parts.append(f"-a {shlex.quote(' '.join(o.choices))}")
            if o.help:
                parts.append(f"-d {shlex.quote(o.help[:90])}")
            lines.append(" ".join(parts))
        if not c.name:
            continue
        if c.verbs:
            lines += [f"complete -c vbg -f -n {cond(c)} -a {v.word} -d {shlex.quote(v.summary[:90])}" for v in c.verbs]
        elif c.positionals and c.positionals[0].choices:
            lines.append(f"complete -c vbg -f -n {cond(c)} -a {shlex.quote(' '.join(c.positionals[0].choices))}")
        elif c.positionals and c.positionals[0].files:
            lines.append(f"complete -c vbg -n {cond(c)} -F")
        else:  # no file names where the command takes none
            lines.append(f"complete -c vbg -f -n {cond(c)}")
    lines.append("")
    return "\n".join(lines)


# --- man -----------------------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Text for a roff line: backslashes and hyphens escaped, no line starting a request."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + out if out[:1] in (".", "'") else out


def _flag_roff(o: Option) -> str:
    flags = ", ".join(f"\\fB{_roff(f)}\\fR" for f in o.flags)
    if not o.takes_value:
        return flags
    value = f"\\fI{_roff(o.metavar)}\\fR"
    if o.choices:
        value = "{" + ",".join(_roff(c) for c in o.choices) + "}"
    return f"{flags} {value}"


def _options_roff(c: Command) -> list[str]:
    lines: list[str] = []
    group = None
    for o in c.options:
        if o.group != group and o.group not in ("options", "optional arguments"):
            lines += [".PP", f"\\fI{_roff(o.group)}\\fR:"]
        group = o.group
        lines += [".TP", _flag_roff(o), _roff(o.help or "")]
    return lines


def man(cmds: list[Command]) -> str:
    live, rest = cmds[0], [c for c in cmds if c.name]
    lines = [
        f'.\\" Generated from vbg\'s own parser by `vbg man` (vbg {_version()}); do not edit.',
        f'.TH VBG 1 "" "vbg {_version()}" "User Commands"',
        ".SH NAME",
        "vbg \\- real\\-time virtual background for video calls and recordings",
        ".SH SYNOPSIS",
        ".B vbg",
        "[\\fIOPTIONS\\fR]",
        ".br",
        ".B vbg",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]",
        ".SH DESCRIPTION",
        _roff(live.description),
        ".PP",
        "Without a \\fICOMMAND\\fR, vbg runs the live filter with the options below. "
        "\\fBvbg \\fICOMMAND\\fB \\-\\-help\\fR shows a command's options as this page does.",
        ".SH OPTIONS",
        *_options_roff(live),
        ".SH COMMANDS",
    ]
    for c in every_command(rest):  # a command, then its sub-verbs (vbg config show) each in its own section
        usage = " ".join(("\\fI" + _roff(p.metavar) + "\\fR" + ("..." if p.many else "")) for p in c.positionals)
        if c.verbs:
            usage = ("{" + "|".join(f"\\fB{_roff(v.word)}\\fR" for v in c.verbs) + "} ...") + (" " + usage).rstrip()
        lines += [f".SS \"vbg {c.name}\"", f"\\fBvbg {c.name}\\fR [\\fIOPTIONS\\fR] {usage}".rstrip(), ".PP",
                  _roff(c.description or c.summary)]
        for p in c.positionals:
            lines += [".TP", f"\\fI{_roff(p.metavar)}\\fR", _roff(p.help or ("one of " + ", ".join(p.choices)))]
        lines += _options_roff(c)
        if c.epilog:
            lines += [".PP", ".nf", *(_roff(line) if line.strip() else "" for line in c.epilog.splitlines()), ".fi"]
    lines += [".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", _roff(meaning)]
    lines += [
        ".SH SEE ALSO",
        "\\fBvbg doctor\\fR checks this machine's set\\-up; \\fBvbg completion\\fR \\fIbash\\fR|\\fIzsh\\fR|\\fIfish\\fR "
        "prints shell completion.",
        "",
    ]
    return "\n".join(line.replace("\n", " ") for line in lines)
