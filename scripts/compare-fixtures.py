#!/usr/bin/env python3
"""Compare freshly generated EpiEstim fixtures with the committed ones.

Usage: compare-fixtures.py NEW_DIR COMMITTED_DIR

Every *.json in COMMITTED_DIR must exist in NEW_DIR with the same structure;
numbers must agree to 1e-12 relative (the R script prints 17 significant
digits, so a different EpiEstim or R version that changes the maths shows up
here, while printing noise does not). Exits 1 and names the file and the JSON
path of every difference.
"""
import json
import math
import pathlib
import sys


def diff(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: present in only one file")
            else:
                diff(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300):
            out.append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} vs {b!r}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    new, old = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    files = sorted(old.glob("*.json"))
    if not files:
        sys.exit(f"no fixtures in {old}")
    problems = []
    for f in files:
        g = new / f.name
        if not g.exists():
            problems.append(f"{f.name}: not regenerated")
            continue
        out = []
        diff(json.loads(g.read_text()), json.loads(f.read_text()), "$", out)
        problems += [f"{f.name} {d}" for d in out]
    for p in problems[:50]:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(f"{len(problems)} difference(s) between regenerated and committed EpiEstim fixtures")
    print(f"EpiEstim fixtures: {len(files)} files agree with a fresh run of EpiEstim")


main()
