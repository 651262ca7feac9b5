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
    python tests/mutate.py --build-map          # which tests run which line (needs coverage)
    python tests/mutate.py --map --jobs 2       # every mutant, against its own tests only

With ``--map`` each mutant runs only the tests that execute its line (found once by
``--build-map``: every covering test file under coverage, one context per test, the
toolkit's caches emptied before each test so that a test sharing a compiled program with an
earlier one still executes the lines it depends on). A test that never executes a line
behaves identically under a mutant of that line, so this is the same verdict as running
the whole files, in a fraction of the time; lines run only at import (module constants,
default arguments) get the tests that read the name, or every covering file when the name
is used elsewhere. ``--map`` refuses a map built from other sources. ``--resume FILE``
keeps the outcomes already in ``FILE`` (a JSON-lines log written as mutants finish), so an
interrupted full run goes on where it stopped.

``--combine LOG@COMMIT ...`` reads the outcome of every mutant of the current code from
logs of runs made at earlier commits (the latest run of a mutant wins), matching mutants
by file, line text, column within the stripped line and change: a full run, then re-runs
of the survivors and of changed lines after tests were added, add up to the score of the
code as it stands. Mutants it cannot match are listed as ``unmatched`` (run them).

The sample is deterministic (``--seed``), so a CI verdict does not change between runs of
the same code. Survivors are printed with their file, line and change: each is either a
missing test or an equivalent mutant (a change that cannot alter behaviour).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
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
        "tests/test_checker_thresholds.py",
        "tests/test_checker_classify.py",
        "tests/test_checker_cases.py",
    ],
    "jaxrelu/checker/slopes.py": [
        "tests/test_checker_thresholds.py",
        "tests/test_checker_classify.py",
        "tests/test_checker_cases.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/checker/verdict.py": [
        "tests/test_checker_thresholds.py",
        "tests/test_checker_classify.py",
        "tests/test_checker_cases.py",
        "tests/test_external_kinds.py",
    ],
    "jaxrelu/checker/grid.py": [
        "tests/test_checker_grid.py",
        "tests/test_linearization.py",
        "tests/test_checker_cases.py",
    ],
    "jaxrelu/_jaxpr/rules.py": [
        "tests/test_compare_rules.py",
        "tests/test_index_rules.py",
        "tests/test_order_rules.py",
        "tests/test_kinks_oracle.py",
        "tests/test_lexicographic.py",
        "tests/test_kinks.py",
        "tests/test_external_kinds.py",
        "tests/test_discrete_paths.py",
        "tests/test_linalg_roots.py",
        "tests/test_long_reductions.py",
        "tests/test_select_surfaces.py",
    ],
    "jaxrelu/_jaxpr/reductions.py": [
        "tests/test_order_rules.py",
        "tests/test_kinks_oracle.py",
        "tests/test_lexicographic.py",
        "tests/test_kinks.py",
        "tests/test_external_kinds.py",
        "tests/test_discrete_paths.py",
        "tests/test_linalg_roots.py",
    ],
    "jaxrelu/kinks.py": [
        "tests/test_toolkit_edges.py",
        "tests/test_kinks_oracle.py",
        "tests/test_kinks.py",
        "tests/test_external_kinds.py",
        "tests/test_linalg_roots.py",
        "tests/test_select_surfaces.py",
    ],
    "jaxrelu/lexicographic.py": [
        "tests/test_toolkit_edges.py",
        "tests/test_lexicographic.py",
        "tests/test_external_kinds.py",
        "tests/test_discrete_paths.py",
        "tests/test_select_surfaces.py",
    ],
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


MAP_FILE = os.path.join(ROOT, ".mutation-map.json")

_MAP_BOOT = r"""
import json, sys, time
import coverage
cov = coverage.Coverage(data_file=None, source=[{pkg!r}], branch=False)
cov.start()
import pytest
durations, fixtures = {{}}, {{}}

class Contexts:
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        import jaxrelu
        jaxrelu.clear_caches()
        fixtures[item.nodeid] = list(getattr(item, "fixturenames", ()))
        cov.switch_context(item.nodeid)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        shared = fixturedef.scope != "function"
        if shared:
            cov.switch_context("fixture:" + fixturedef.argname)
        yield
        if shared and getattr(request, "node", None) is not None:
            cov.switch_context(getattr(request._pyfuncitem, "nodeid", ""))

    def pytest_runtest_logreport(self, report):
        durations[report.nodeid] = durations.get(report.nodeid, 0.0) + report.duration

rc = pytest.main({args!r}, plugins=[Contexts()])
cov.stop()
data = cov.get_data()
lines = {{}}
for name in data.measured_files():
    by = data.contexts_by_lineno(name)
    lines[name] = {{str(k): sorted(v) for k, v in by.items()}}
json.dump({{"rc": int(rc), "lines": lines, "durations": durations, "fixtures": fixtures}},
          open({out!r}, "w"))
"""


def _digest() -> str:
    """A hash of the mutated modules and of the tests that cover them."""
    h = hashlib.sha256()
    tests = {t for ts in TARGETS.values() for t in ts}
    files = sorted(set(TARGETS) | tests | {"tests/conftest.py"})
    for f in files:
        h.update(f.encode())
        with open(os.path.join(ROOT, f), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def build_map(jobs: int) -> dict:
    """Runs every covering test file under coverage (one context per test) and writes
    ``.mutation-map.json``: for each target module, the tests that execute each line."""
    test_files = sorted({t for ts in TARGETS.values() for t in ts})
    groups: list[list[str]] = [[] for _ in range(max(jobs, 1))]
    for i, t in enumerate(test_files):
        groups[i % len(groups)].append(t)
    outs, procs = [], []
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    for group in groups:
        if not group:
            continue
        out = tempfile.mktemp(prefix="mutation-map-", suffix=".json")
        args = ["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", "-W", "ignore"]
        code = _MAP_BOOT.format(pkg=os.path.join(ROOT, "jaxrelu"), args=args + group, out=out)
        print(f"coverage of {', '.join(group)}", flush=True)
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env))
        outs.append(out)
    for p in procs:
        p.wait()
    merged: dict = {"digest": _digest(), "lines": {}, "durations": {}, "fixtures": {}}
    for out, p in zip(outs, procs):
        part = json.load(open(out))
        os.unlink(out)
        if part["rc"] != 0 or p.returncode != 0:
            raise SystemExit("the covering tests fail on the unmutated code: fix them first")
        for name, by in part["lines"].items():
            rel = os.path.relpath(name, ROOT)
            into = merged["lines"].setdefault(rel, {})
            for line, ctxs in by.items():
                into[line] = sorted(set(into.get(line, [])) | set(ctxs))
        merged["durations"].update(part["durations"])
        merged["fixtures"].update(part["fixtures"])
    with open(MAP_FILE, "w") as fh:
        json.dump(merged, fh)
    print(f"wrote {MAP_FILE}: {len(merged['durations'])} tests", flush=True)
    return merged


def _statement(tree: ast.Module, line: int) -> tuple[ast.stmt, ast.AST, int, int]:
    """The innermost statement holding ``line`` (for a compound statement, only its header
    counts), its parent, and the lines of that statement (header)."""
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    best = None
    for s in ast.walk(tree):
        if not isinstance(s, ast.stmt):
            continue
        body = getattr(s, "body", None)
        end = (body[0].lineno - 1) if isinstance(body, list) and body else s.end_lineno
        if (
            isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and s.decorator_list
        ):
            start = s.decorator_list[0].lineno
        else:
            start = s.lineno
        if start <= line <= (end or s.lineno) and (best is None or start >= best[2]):
            best = (s, parents.get(s), start, end or s.lineno)
    assert best is not None, line
    return best


def _contexts(by_line: dict, start: int, end: int) -> set[str]:
    return {c for n in range(start, end + 1) for c in by_line.get(str(n), ())}


def tests_for(m: Mutant, cmap: dict, base: str = ROOT) -> list[str] | None:
    """The tests to run against mutant ``m``, fastest first: those that execute its line;
    ``None`` where only whole files will do (see the module docstring); ``[]`` where no
    test executes the line."""
    source = open(os.path.join(base, m.path)).read()
    tree = ast.parse(source)
    by_line = cmap["lines"].get(m.path, {})
    stmt, parent, start, end = _statement(tree, m.line)
    ctxs = _contexts(by_line, start, end)
    tested = {c for c in ctxs if c}
    if isinstance(stmt, ast.ClassDef):
        return None  # a class decorator: every use of the class depends on it
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        # a default argument or decorator: what runs the body depends on it
        last = stmt.end_lineno or stmt.lineno
        tested = {c for c in _contexts(by_line, stmt.body[0].lineno, last) if c}
    elif "" in ctxs and not isinstance(parent, ast.Module):
        return None  # run at import by a table-building call as well as by tests
    elif not tested and "" in ctxs:
        # a module constant: the tests that execute a line reading it
        names = {
            t.id
            for node in ast.walk(stmt)
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        if not names:
            return None
        for other in TARGETS:
            if other != m.path and any(n in open(os.path.join(base, other)).read() for n in names):
                return None
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in names and isinstance(node.ctx, ast.Load):
                _, _, a, b = _statement(tree, node.lineno)
                more = _contexts(by_line, a, b)
                if "" in more and not (more - {""}):
                    return None  # read by another import-time statement
                tested |= {c for c in more if c}
    users = set()
    for c in tested:
        if c.startswith("fixture:"):
            name = c.split(":", 1)[1]
            users |= {t for t, fx in cmap["fixtures"].items() if name in fx}
        else:
            users.add(c)
    durations = cmap["durations"]
    return sorted(users, key=lambda t: (durations.get(t, 0.0), t))


def run_mutant(
    m: Mutant, snapshot: str, timeout: float, tests: list[str] | None = None, cache: str = ""
) -> tuple[Mutant, str, float]:
    """``"killed"``, ``"survived"`` or ``"timeout"`` (counted as killed: the mutant broke
    something badly enough to hang), and the seconds it took. The mutant is made from
    ``snapshot``, a copy of the package taken when the run started."""
    start = time.time()
    if tests is not None and not tests:
        return m, "uncovered", 0.0
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
            *(tests if tests is not None else [os.path.join(ROOT, t) for t in TARGETS[m.path]]),
        ]
        cmd = [sys.executable, "-c", _BOOT.format(root=tmp, args=args)]
        env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
        if cache:  # compiled programs shared by the mutants (keyed by the program itself)
            env.update(
                JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"
            )
        try:
            p = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return m, "timeout", time.time() - start
    outcome = "survived" if p.returncode == 0 else "killed"
    if tests is not None and p.returncode in (4, 5):
        outcome = "error"  # a selected test was not found: not a kill (see the output)
        print(p.stdout[-2000:], p.stderr[-2000:], flush=True)
    return m, outcome, time.time() - start


def _keyed(path: str, base: str) -> dict[str, tuple]:
    """Each mutant of ``path`` (under ``base``) keyed by its line text, column within the
    stripped line, change and occurrence (so that moved lines still match)."""
    lines = open(os.path.join(base, path)).read().splitlines()
    seen: dict[tuple, int] = {}
    out = {}
    for m in mutants_of(path, base):
        line = lines[m.line - 1]
        k = (path, line.strip(), m.col - (len(line) - len(line.lstrip())), m.old, m.new)
        out[str(m)] = (k, seen.get(k, 0))
        seen[k] = seen.get(k, 0) + 1
    return out


def combine(runs: list[str]) -> dict[str, str]:
    """Outcome of every mutant of the current sources from ``LOG@COMMIT`` run logs."""
    known: dict[tuple, str] = {}
    for spec in runs:
        log, commit = spec.rsplit("@", 1)
        outcomes = {}
        for row in open(log):
            if row.strip():
                rec = json.loads(row)
                outcomes[rec["mutant"]] = rec["outcome"]
        with tempfile.TemporaryDirectory() as tmp:
            for path in TARGETS:
                src = subprocess.run(
                    ["git", "-C", ROOT, "show", f"{commit}:{path}"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                os.makedirs(os.path.join(tmp, os.path.dirname(path)), exist_ok=True)
                with open(os.path.join(tmp, path), "w") as fh:
                    fh.write(src)
                for mstr, key in _keyed(path, tmp).items():
                    if mstr in outcomes:
                        known[key] = outcomes[mstr]
    return {
        mstr: known.get(key, "unmatched")
        for path in sorted(TARGETS)
        for mstr, key in _keyed(path, ROOT).items()
    }


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
    ap.add_argument(
        "--mutants",
        metavar="FILE",
        help="only the mutants listed in FILE (one per line, as printed)",
    )
    ap.add_argument("--list", action="store_true", help="print the mutants and stop")
    ap.add_argument("--json", help="write the outcomes here")
    ap.add_argument("--build-map", action="store_true", help="map lines to tests, then stop")
    ap.add_argument("--map", action="store_true", help="run each mutant against its tests only")
    ap.add_argument("--resume", metavar="FILE", help="JSON-lines log: keep its outcomes, add to it")
    ap.add_argument(
        "--combine", nargs="+", metavar="LOG@COMMIT", help="score the current code from run logs"
    )
    args = ap.parse_args(argv)
    if args.combine:
        got = combine(args.combine)
        by: dict[str, dict[str, int]] = {}
        for mstr, o in got.items():
            c = by.setdefault(mstr.split(":")[0], {})
            c[o] = c.get(o, 0) + 1
        for path, c in by.items():
            k = c.get("killed", 0) + c.get("timeout", 0)
            print(f"{path}: {k}/{sum(c.values())} = {k / sum(c.values()):.1%} {c}")
        killed = sum(o in ("killed", "timeout") for o in got.values())
        print(f"mutation score: {killed}/{len(got)} = {killed / len(got):.1%}")
        for mstr, o in got.items():
            if o not in ("killed", "timeout"):
                print(f"  {o}: {mstr}")
        return 0
    if args.build_map:
        build_map(args.jobs)
        return 0
    cmap = None
    if args.map:
        if not os.path.exists(MAP_FILE):
            raise SystemExit(f"no {MAP_FILE}: run `python tests/mutate.py --build-map` first")
        cmap = json.load(open(MAP_FILE))
        if cmap["digest"] != _digest():
            raise SystemExit("the sources changed since the map was built: run --build-map")
    snapshot = tempfile.mkdtemp(prefix="mutation-snapshot-")
    shutil.copytree(os.path.join(ROOT, "jaxrelu"), os.path.join(snapshot, "jaxrelu"))
    pool = [m for path in (args.only or sorted(TARGETS)) for m in mutants_of(path, snapshot)]
    if args.at:
        pool = [m for m in pool if any(f"{m.path}:{m.line}" == a for a in args.at)]
    if args.mutants:
        wanted = {line.strip() for line in open(args.mutants) if line.strip()}
        pool = [m for m in pool if str(m) in wanted]
    if args.sample is not None:
        pool = random.Random(args.seed).sample(pool, min(args.sample, len(pool)))
    if args.list:
        print("\n".join(map(str, pool)))
        print(f"{len(pool)} mutants")
        return 0
    results: list[tuple[Mutant, str, float]] = []
    if args.resume and os.path.exists(args.resume):
        done = {}
        for row in open(args.resume):
            if row.strip():
                rec = json.loads(row)
                done[rec["mutant"]] = (rec["outcome"], rec["seconds"])
        results = [(m, *done[str(m)]) for m in pool if str(m) in done]
        pool = [m for m in pool if str(m) not in done]
        print(f"{len(results)} outcomes kept from {args.resume}", flush=True)
    selected = {m: tests_for(m, cmap, snapshot) if cmap else None for m in pool}
    cache = tempfile.mkdtemp(prefix="mutation-jit-cache-")
    print(f"{len(pool)} mutants, {args.jobs} at a time", flush=True)
    log = open(args.resume, "a") if args.resume else None
    with ThreadPoolExecutor(args.jobs) as ex:
        jobs = ex.map(lambda m: run_mutant(m, snapshot, args.timeout, selected[m], cache), pool)
        for m, outcome, secs in jobs:
            results.append((m, outcome, secs))
            n = selected[m]
            which = "files" if n is None else f"{len(n)} tests"
            print(f"{outcome:9s} {secs:6.1f}s  {m}  ({which})", flush=True)
            if log is not None:
                log.write(json.dumps({"mutant": str(m), "outcome": outcome, "seconds": secs}))
                log.write("\n")
                log.flush()
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    killed = sum(o in ("killed", "timeout") for _, o, _ in results)
    score = killed / max(len(results), 1)
    print(f"\nmutation score: {killed}/{len(results)} = {score:.1%}")
    for m, o, _ in results:
        if o not in ("killed", "timeout"):
            print(f"  {o}: {m}")
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
