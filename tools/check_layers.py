"""Check vbg's import layers; exit 1 and name each import that breaks one.

    python tools/check_layers.py [ROOT]

The rules (README, "Layout"):
- the core (types, errors, config, ranges, clock, buffers, arrays, stats, and the helpers fsutil,
  streams, sigwork, liblogs, priority, progress) imports no stage and no runner;
- stages (capture, models, inference, compositing, sinks, media, and images/icc/encoders, which
  stages share) import no runner, and not the control package;
- the control package (control/: control while live) may import the core, the helpers and the
  stages, but no runner (pipeline and cli use it);
- the live runner (pipeline) and the offline runner (offline/) do not import each other;
- nothing in the product imports vbg.evaluation, which only the benchmarks and tests use;
- the Python API (vbg.api) may import anything but evaluation, and nothing in the product imports
  it: the package root (vbg/__init__.py) only names it, loaded on first use;
- Ray is imported by the offline runner's vbg/offline/distributed.py alone (vbg process --ray), so
  nothing else, the live runner least of all, needs it;
- only the CLI ends the process (sys.exit / SystemExit / os._exit), so every error becomes an exit
  code in one place.
Imports inside functions count too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

CORE = {"types", "errors", "config", "clock", "buffers", "ranges", "arrays", "stats", "fsutil",
        "streams", "sigwork", "liblogs", "priority", "progress", "userconfig", "service"}
STAGES = {"capture", "models", "inference", "compositing", "sinks", "media",
          "images", "icc", "encoders"}  # the last three: shared by stages, held to the stages' rule
CONTROL = {"control"}  # control while live: used by the runners, uses the stages
LIVE_RUNNER = {"pipeline"}
OFFLINE_RUNNER = {"offline"}
API = "api"  # the Python API: a runner over the runners
RUNNERS = LIVE_RUNNER | OFFLINE_RUNNER | {"cli", "preflight", "doctor", "cli_docs", API}
EXITS_ALLOWED = {"cli", "__main__"}
RAY_ALLOWED = "vbg.offline.distributed"


def unit_of(module: str) -> str:
    """'vbg.inference.tracker' -> 'inference'; 'vbg.config' -> 'config'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            if target in ("vbg",) or (node.level and not node.module):
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found if name == "vbg" or name.startswith("vbg.")]


def ray_imports(path: Path) -> list[int]:
    """Lines that import ray (or a module of it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == "ray" or n.startswith("ray.") for n in names):
            lines.append(node.lineno)
    return lines


def exits_in(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name) else getattr(f, "id", ""))
            if name in ("sys.exit", "os._exit", "SystemExit"):
                lines.append(node.lineno)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "SystemExit":
                lines.append(node.lineno)
    return sorted(set(lines))


def broken_rule(src: str, dst: str) -> str | None:
    if dst == src or not dst:
        return None
    if dst == "evaluation" and src != "evaluation":
        return "the product imports vbg.evaluation (benchmarks and tests only)"
    if dst == API and src != "":  # "": the package root, which loads the API's names lazily
        return "the product imports the Python API vbg.api (only the package root names it)"
    if src in CORE and (dst in STAGES or dst in RUNNERS or dst in CONTROL):
        kind = "stage" if dst in STAGES else "runner" if dst in RUNNERS else "package"
        return f"the core module {src} imports the {kind} {dst}"
    if src in STAGES and dst in RUNNERS:
        return f"the stage {src} imports the runner {dst}"
    if src in STAGES and dst in CONTROL:
        return f"the stage {src} imports the control package (control uses the stages, not the reverse)"
    if src in CONTROL and dst in RUNNERS:
        return f"the control package imports the runner {dst}"
    if {src, dst} == {"pipeline", "offline"}:
        return "the live and offline runners import each other"
    return None


def check(root: Path) -> list[str]:
    problems = []
    package = root / "vbg"
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = unit_of(module)
        for line, target in imports_of(path, module):
            why = broken_rule(src, unit_of(target))
            if why:
                problems.append(f"{path.relative_to(root)}:{line}: {target}: {why}")
        if module != RAY_ALLOWED:
            problems += [f"{path.relative_to(root)}:{line}: imports ray (only {RAY_ALLOWED} may)"
                         for line in ray_imports(path)]
        if src not in EXITS_ALLOWED:
            problems += [f"{path.relative_to(root)}:{line}: ends the process (only the CLI may)"
                         for line in exits_in(path)]
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    problems = check(root)
    for p in problems:
        print(p)
    print(f"check_layers: {len(problems)} line(s) break a layer rule" if problems
          else "check_layers: every import keeps the layers; only the CLI ends the process")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
