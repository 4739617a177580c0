"""Print pip constraints that pin every direct dependency to its declared floor.

`python3 .ci/lowest_constraints.py EXTRA...` reads pyproject.toml and writes one
``name==floor ; marker`` line for the build backend, each base dependency and
each dependency of the named extras. Installing with these constraints is the
oldest set of direct dependencies a user may get, so the tests run on it show
whether the floors still work (the transitive ones resolve as usual).

A dependency without a ``>=`` floor, or with anything else in its specifier, is
an error: an unbounded dependency has no oldest version to test. A floor must be
a version that was released (``opencv-python>=4.8`` would ask pip for 4.8.0.0,
which never existed): pip then fails to find it, and CI says so.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# name, optional [extras], one ">=" floor, optional "; marker"
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9A-Za-z.+!-]*)\s*(?:;\s*(.+))?$")


def pins(requirements: list[str]) -> list[str]:
    out = []
    for req in requirements:
        m = REQ.match(req)
        if m is None:
            raise SystemExit(f"lowest_constraints: {req!r} needs exactly one '>=' floor")
        name, floor, marker = m.groups()
        # Constraints take no extras: the extra's own requirements are pinned where they are declared.
        out.append(f"{name}=={floor}" + (f" ; {marker.strip()}" if marker else ""))
    return out


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    reqs = list(data["build-system"]["requires"]) + list(project["dependencies"])
    for extra in argv:
        try:
            reqs += project["optional-dependencies"][extra]
        except KeyError:
            raise SystemExit(f"lowest_constraints: pyproject.toml has no extra {extra!r}") from None
    print("\n".join(pins(reqs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
