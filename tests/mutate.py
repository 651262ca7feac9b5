"""Mutation testing for the checker, the kink analysis and the lexicographic rules.

A mutant is the package with one small change at one place: a comparison flipped to its
neighbour (``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``), a numeric constant doubled
(an integer moved by one), ``and`` ↔ ``or``, ``min`` ↔ ``max``, ``True`` ↔ ``False``. Each
mutant is written into a copy of the package in a temporary directory and the tests that
cover its module run against it (``pytest -x``: the first failure kills it). The score is
the share of mutants killed. Lines marked ``# pragma: no mutate`` and docstrings are left
alone.

    python tests/mutate.py                      # every mutant (hours; see docs/contributing.md)
    python tests/mutate.py --sample 20          # a fixed sample (a few minutes on 2 cores)
    python tests/mutate.py --sample 20 --threshold 0.85   # exit 1 below the threshold
    python tests/mutate.py --list               # the mutants, without running them
    python tests/mutate.py --at jaxrelu/kinks.py:168   # re-check the mutants of one line

The sample is deterministic (``--seed``), so a CI verdict does not change between runs of
the same code. Survivors are printed with their file, line and change: each is either a
missing test or an equivalent mutant (a change that cannot alter behaviour).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module -> the tests that cover it, fastest first
TARGETS = {
    "jaxrelu/checker/remainders.py": [
        "tests/test_checker_classify.py",
        "tests/test_checker_cases.py",
    ],
    "jaxrelu/checker/slopes.py": [
        "tests/test_checker_classify.py",
        "tests/test_checker_cases.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/checker/verdict.py": [
        "tests/test_checker_classify.py",
        "tests/test_checker_cases.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/checker/grid.py": ["tests/test_linearization.py", "tests/test_checker_cases.py"],
    "jaxrelu/_jaxpr/rules.py": [
        "tests/test_kinks_oracle.py",
        "tests/test_lexicographic.py",
        "tests/test_kinks.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/_jaxpr/reductions.py": [
        "tests/test_kinks_oracle.py",
        "tests/test_lexicographic.py",
        "tests/test_kinks.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/kinks.py": [
        "tests/test_kinks_oracle.py",
        "tests/test_kinks.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/lexicographic.py": ["tests/test_lexicographic.py", "tests/test_external_kinds.py"],
}

_COMPARE = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
_NAMES = {"and": "or", "or": "and", "True": "False", "False": "True", "min": "max", "max": "min"}
_NAMES.update({"minimum": "maximum", "maximum": "minimum"})


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    col: int
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.old!r} -> {self.new!r}"


def _number(text: str) -> str | None:
    try:
        value = int(text, 0)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
        return repr(value * 2) if value not in (0.0,) else "1e-300"
    return str(value + 1)


def mutants_of(path: str, base: str = ROOT) -> list[Mutant]:
    """Every mutation point of a source file (docstrings, comments and ``no mutate`` lines
    excluded)."""
    source = open(os.path.join(base, path)).read()
    lines = source.splitlines()
    out = []
    prev = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.start[0] > len(lines):
            break
        line = lines[tok.start[0] - 1]
        if "pragma: no mutate" in line or line.lstrip().startswith(("__all__", "import", "from")):
            prev = tok
            continue
        new = None
        if tok.type == tokenize.OP and tok.string in _COMPARE:
            new = _COMPARE[tok.string]
        elif tok.type == tokenize.NUMBER:
            new = _number(tok.string)
        elif tok.type == tokenize.NAME and tok.string in _NAMES:
            # min/max and minimum/maximum only as calls or attributes, not as names in strings
            new = _NAMES[tok.string]
        if new is not None and not (
            prev is not None
            and prev.type == tokenize.OP
            and prev.string == "="
            and tok.type == tokenize.NAME
            and tok.string in ("min", "max")
        ):
            out.append(Mutant(path, tok.start[0], tok.start[1], tok.string, new))
        prev = tok
    return out


def _apply(root: str, m: Mutant) -> None:
    full = os.path.join(root, m.path)
    lines = open(full).read().splitlines(keepends=True)
    text = lines[m.line - 1]
    assert text[m.col : m.col + len(m.old)] == m.old, (m, text)
    lines[m.line - 1] = text[: m.col] + m.new + text[m.col + len(m.old) :]
    with open(full, "w") as fh:
        fh.write("".join(lines))


_BOOT = (
    "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
    "if 'editable' not in type(f).__module__.lower()]; sys.path.insert(0, {root!r}); "
    "import jaxrelu; assert jaxrelu.__file__.startswith({root!r}), jaxrelu.__file__; "
    "import pytest; sys.exit(pytest.main({args!r}))"
)


def run_mutant(m: Mutant, snapshot: str, timeout: float) -> tuple[Mutant, str, float]:
    """``"killed"``, ``"survived"`` or ``"timeout"`` (counted as killed: the mutant broke
    something badly enough to hang), and the seconds it took. The mutant is made from
    ``snapshot``, a copy of the package taken when the run started."""
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        shutil.copytree(os.path.join(snapshot, "jaxrelu"), os.path.join(tmp, "jaxrelu"))
        _apply(tmp, m)
        args = [
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
            "-o",
            "addopts=",
            "-W",
            "ignore",
            *[os.path.join(ROOT, t) for t in TARGETS[m.path]],
        ]
        cmd = [sys.executable, "-c", _BOOT.format(root=tmp, args=args)]
        env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
        try:
            p = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return m, "timeout", time.time() - start
    outcome = "survived" if p.returncode == 0 else "killed"
    if p.returncode not in (0, 1):  # an import or collection error is a kill too
        outcome = "killed"
    return m, outcome, time.time() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=None, help="run this many mutants (fixed sample)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--threshold", type=float, default=None, help="fail below this score")
    ap.add_argument("--jobs", type=int, default=2, help="mutants run in parallel")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    ap.add_argument("--only", nargs="+", choices=sorted(TARGETS), help="these modules only")
    ap.add_argument(
        "--at", nargs="+", metavar="FILE:LINE", help="only the mutants at these lines (re-check)"
    )
    ap.add_argument("--list", action="store_true", help="print the mutants and stop")
    ap.add_argument("--json", help="write the outcomes here")
    args = ap.parse_args(argv)
    snapshot = tempfile.mkdtemp(prefix="mutation-snapshot-")
    shutil.copytree(os.path.join(ROOT, "jaxrelu"), os.path.join(snapshot, "jaxrelu"))
    pool = [m for path in (args.only or sorted(TARGETS)) for m in mutants_of(path, snapshot)]
    if args.at:
        pool = [m for m in pool if any(f"{m.path}:{m.line}" == a for a in args.at)]
    if args.sample is not None:
        pool = random.Random(args.seed).sample(pool, min(args.sample, len(pool)))
    if args.list:
        print("\n".join(map(str, pool)))
        print(f"{len(pool)} mutants")
        return 0
    print(f"{len(pool)} mutants, {args.jobs} at a time", flush=True)
    results = []
    with ThreadPoolExecutor(args.jobs) as ex:
        for m, outcome, secs in ex.map(lambda m: run_mutant(m, snapshot, args.timeout), pool):
            results.append((m, outcome, secs))
            print(f"{outcome:8s} {secs:6.1f}s  {m}", flush=True)
    shutil.rmtree(snapshot, ignore_errors=True)
    killed = sum(o != "survived" for _, o, _ in results)
    score = killed / max(len(results), 1)
    print(f"\nmutation score: {killed}/{len(results)} = {score:.1%}")
    for m, o, _ in results:
        if o == "survived":
            print(f"  survived: {m}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "score": score,
                    "results": [
                        {"mutant": str(m), "outcome": o, "seconds": s} for m, o, s in results
                    ],
                },
                fh,
                indent=1,
            )
    if args.threshold is not None and score < args.threshold:
        print(f"below the threshold {args.threshold:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
