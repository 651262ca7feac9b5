"""Run jaxrelu's benchmarks: every figure is a ratio against what a user would use instead,
measured in the same run, with the hardware ceiling where it applies.

    python benchmarks/run.py [--quick] [--only NAME ...] [--json PATH] [--markdown PATH]
    python benchmarks/run.py --render CPU.json [GPU.json ...] --markdown PATH [--readme PATH]

Each benchmark warms up (compilation excluded), checks the warm-up result, times with
block_until_ready and reports the median with its spread. ``--quick`` is a smoke run for CI
(small sizes; asserts correctness, never a time). A benchmark that fails is reported with
its error and the others still run (the exit status is then 1); ``--json`` is rewritten
after every benchmark, so an interrupted run keeps what it measured. ``--render`` writes
RESULTS.md from saved runs: the first is the main table (and the README's), each further
one (a GPU run, say) a section of its own.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _harness  # noqa: E402
from _harness import Row, machine, table  # noqa: E402

BENCHMARKS = [
    "activations",
    "training",
    "volume",
    "memory",
    "checker",
    "kinks",
    "lexicographic",
    "scaling",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--markdown", help="write the results as Markdown (e.g. benchmarks/RESULTS.md)")
    p.add_argument(
        "--readme",
        metavar="PATH",
        help="with --render: rewrite the headline table after PATH's <!-- bench-table --> line",
    )
    p.add_argument(
        "--render",
        metavar="JSON",
        nargs="+",
        help="write --markdown from saved --json runs, without rerunning: the first is the "
        "main table, each further one (a GPU run) a section of its own",
    )
    p.add_argument(
        "--merge",
        metavar="JSON",
        nargs="+",
        help="write --json from the parts of one machine's run (benchmarks/gpu_session.sh)",
    )
    p.add_argument(
        "--no-torch-compile",
        action="store_true",
        help="leave the torch.compile baselines out (their compilation takes minutes on a GPU)",
    )
    args = p.parse_args(argv)
    if args.readme and not args.render:
        p.error("--readme needs --render")
    if args.merge:
        if not args.json:
            p.error("--merge needs --json")
        with open(args.json, "w") as fh:
            json.dump(merge(_read_runs(p, "--merge", args.merge)), fh, indent=1)
        return 0
    _harness.OPTIONS["torch_compile"] = not args.no_torch_compile
    import jax

    # float32 products are float32 on GPUs too (no TF32), for every contender: as jaxrelu's
    # training and study do, and as PyTorch does by default for matrix products
    jax.config.update("jax_default_matmul_precision", "highest")
    if args.render:
        docs = _read_runs(p, "--render", args.render)
        if args.markdown:
            write_markdown(args.markdown, docs[0], _rows(docs[0]), docs[0].get("quick", False),
                           others=docs[1:])  # fmt: skip
        if args.readme:
            gpu = next((d for d in docs[1:] if d["machine"].get("backend") == "gpu"), None)
            write_readme_table(args.readme, _rows(docs[0]), gpu)
        return 0
    mach = {**machine(), **_versions(), "commit": _commit(), "load_start": _load()}
    started = time.perf_counter()
    print(f"# jaxrelu benchmarks{' (quick)' if args.quick else ''}\n{_header(mach)}\n", flush=True)
    rows: list[Row] = []
    failed: dict[str, str] = {}
    doc = {"machine": mach, "quick": args.quick, "date": datetime.date.today().isoformat()}
    left = [n for n in BENCHMARKS if args.only and n not in args.only]
    left_out = [f"left out: {', '.join(left)} (`--only`)"] if left else []
    if args.no_torch_compile:
        left_out.append("the torch.compile baselines left out (`--no-torch-compile`)")
    if left_out:
        doc["left_out"] = "; ".join(left_out)

    def save(complete: bool) -> None:
        mach["load_end"] = _load()
        mach["minutes"] = round((time.perf_counter() - started) / 60, 1)
        doc.update(complete=complete, failed=failed, results=[r.to_json() for r in rows])
        if args.json:
            with open(args.json + ".part", "w") as fh:
                json.dump(doc, fh, indent=1)
            os.replace(args.json + ".part", args.json)

    for name in args.only or BENCHMARKS:
        mod = importlib.import_module(f"bench_{name}")
        t0 = time.perf_counter()
        try:
            got = mod.run(args.quick)
        except Exception as err:  # reported; the other benchmarks still run
            traceback.print_exc()
            failed[name] = f"{type(err).__name__}: {str(err).strip()[:400]}"
            print(f"## {name} FAILED after {time.perf_counter() - t0:.0f} s\n", flush=True)
        else:
            print(f"## {name} ({time.perf_counter() - t0:.0f} s)\n\n{table(got)}\n", flush=True)
            rows += got
        save(complete=False)
    save(complete=True)
    if args.markdown:
        write_markdown(args.markdown, doc, rows, args.quick)
    missed = [r for r in rows if r.met is False]
    print(f"{len(rows)} rows; goals missed: {len(missed)}; benchmarks failed: {len(failed)}")
    for name, why in failed.items():
        print(f"FAILED {name}: {why}", file=sys.stderr)
    return 1 if failed else 0


def _read_runs(parser: argparse.ArgumentParser, flag: str, paths: list[str]) -> list[dict]:
    """The saved runs at ``paths``; one that cannot be read is a one-line usage error."""
    docs = []
    for path in paths:
        try:
            with open(path) as fh:
                docs.append(json.load(fh))
        except (OSError, ValueError) as err:
            parser.error(f"{flag}: cannot read {path}: {err}")
    return docs


def merge(parts: list[dict]) -> dict:
    """One run from the parts of a run on one machine, run one after another: the first
    part's machine, the results and failures of all, the minutes added up, complete only
    if every part is; which benchmarks ran in which part goes into ``left_out``."""
    doc = {**parts[0], "results": [], "failed": {}}
    ran = []
    for part in parts:
        doc["results"] += part["results"]
        doc["failed"].update(part.get("failed") or {})
        ran.append(", ".join(dict.fromkeys(r["benchmark"] for r in part["results"])) or "-")
    doc["complete"] = all(part.get("complete", True) for part in parts)
    minutes = round(sum(part["machine"].get("minutes", 0) for part in parts), 1)
    end = parts[-1]["machine"].get("load_end")
    doc["machine"] = {**parts[0]["machine"], "load_end": end, "minutes": minutes}
    left = [part.get("left_out", "") for part in parts]
    notes = "".join(f"; part {i + 1}: {t}" for i, t in enumerate(left) if t)
    doc["left_out"] = f"run in {len(parts)} parts ({'; '.join(ran)})" + notes
    return doc


def _rows(doc: dict) -> list[Row]:
    return [Row.from_json(r) for r in doc["results"]]


def _versions() -> dict[str, str]:
    import jaxlib
    import numpy

    try:
        import torch

        torch_v = torch.__version__
    except ImportError:
        torch_v = "not installed"
    return {"jaxlib": jaxlib.__version__, "numpy": numpy.__version__, "torch": torch_v}


def _commit() -> str:
    """``git describe --always --dirty`` of the checkout the benchmarks run from."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE,
                             capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _load() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared)."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _header(mach: dict) -> str:
    return (
        f"backend {mach['backend']}, device {mach['device']}, JAX {mach['jax_version']}, "
        f"CPU {mach['cpu']}"
    )


def _environment(mach: dict) -> str:
    """The versions and the load the run saw (older saved runs lack some)."""
    parts = [f"jaxlib {mach.get('jaxlib', '?')}, NumPy {mach.get('numpy', '?')}"]
    if "commit" in mach:
        parts.append(f"jaxrelu at {mach['commit']}")
    if "load_start" in mach:
        parts.append(
            f"load average (1/5/15 min) {mach['load_start']} at the start and "
            f"{mach.get('load_end', '?')} at the end of the {mach.get('minutes', '?')}-minute run"
        )
    return "; ".join(parts)


def write_markdown(path: str, doc: dict, rows: list, quick: bool, others=()) -> None:
    """RESULTS.md: the main run ``doc`` with each benchmark's description and notes, then
    each run of ``others`` (a GPU run, say) as a section of its own: its goals and tables."""
    mach = doc["machine"]
    gpus = [o for o in others if o["machine"].get("backend") == "gpu"]
    md = [
        "# Benchmark results",
        "",
        f"Generated by `python benchmarks/run.py{' --quick' if quick else ''}` on "
        f"{doc.get('date', '?')} (rendered with `--markdown`); do not edit by hand.",
        "",
        f"Machine: {_header(mach)}. PyTorch: {mach.get('torch', '?')}; {_environment(mach)}. "
        "float32 matrix products at full float32 precision "
        "(`jax_default_matmul_precision=highest`)."
        + (f" This run: {doc['left_out']}." if doc.get("left_out") else ""),
        "",
    ]
    if mach.get("backend") != "gpu":
        md += [
            f"[The same benchmarks on {_device_of(gpus[0])}](#{_anchor(gpus[0])}) follow "
            "the CPU tables."
            if gpus
            else "No GPU run is rendered in this file (`--render` a GPU run's JSON after the "
            "main one to add it).",
            "",
        ]
    md += [
        "`speedup` = baseline time / our time (above 1: ours is faster); `goal` is the speedup "
        "the issue asks for; ± is half the inter-quartile range of the repeats.",
        "",
    ]
    md += _goals(doc, rows, "##")
    for name in BENCHMARKS:
        mod = importlib.import_module(f"bench_{name}")
        got = [r for r in rows if r.benchmark == name]
        if not got:
            continue
        md += [f"## {name}", "", (mod.__doc__ or "").strip(), "", table(got), ""]
        notes = getattr(mod, "NOTES", "").strip()
        if notes:
            md += [notes, ""]
    for other in others:
        md += _other_run(other)
    with open(path, "w") as fh:
        fh.write("\n".join(md))


def _device_of(doc: dict) -> str:
    m = doc["machine"]
    return m["device"] if m.get("backend") == "gpu" else f"{m.get('backend', '?')} ({m['cpu']})"


def _anchor(doc: dict) -> str:
    """GitHub's anchor of :func:`_other_run`'s heading."""
    text = f"results on {_device_of(doc)}".lower()
    return "".join(c if c.isalnum() or c in "-_" else "-" if c == " " else "" for c in text)


def _goals(doc: dict, rows: list, level: str) -> list[str]:
    """The goals met and missed (each miss with its measured reason), the benchmarks that
    failed, and the rows above their own ceiling."""
    missed = [r for r in rows if r.met is False]
    md = [
        f"{level} Goals",
        "",
        f"{sum(r.met is True for r in rows)} comparisons meet their goal, {len(missed)} do not"
        + (":" if missed else "."),
        "",
    ]
    for r in missed:
        explain = getattr(importlib.import_module(f"bench_{r.benchmark}"), "explain", None)
        why = f": {explain(r, rows)}" if explain is not None else ""
        named = r.case.endswith(r.baseline_name) or " vs " in r.case
        against = "" if named else f" vs {r.baseline_name}"
        md.append(f"- {r.benchmark}: {r.case}{against}: {r.speedup:.3g}x (goal {r.goal:.3g}x){why}")
    if missed:
        md += ["", "More on each benchmark in the closing paragraph of its section.", ""]
    failed = doc.get("failed") or {}
    if failed:
        md += [f"Benchmarks that failed in this run: {len(failed)}", ""]
        md += [f"- {name}: {why}" for name, why in failed.items()] + [""]
    if doc.get("complete") is False:
        md += ["This run was interrupted: only the benchmarks above completed.", ""]
    above = [r for r in rows if "ABOVE ITS CEILING" in r.note]
    md += [
        f"Rows above their own ceiling: {len(above)}"
        + "".join(f"\n- {r.benchmark}: {r.case}" for r in above),
        "",
    ]
    return md


def _other_run(doc: dict) -> list[str]:
    """A further run's section: machine, goals, and one table per benchmark it ran (the
    benchmarks' descriptions and notes are those of the main run's sections)."""
    mach, rows = doc["machine"], _rows(doc)
    ran = sorted({r.benchmark for r in rows} | set(doc.get("failed") or {}), key=BENCHMARKS.index)
    md = [
        f"# Results on {_device_of(doc)}",
        "",
        f"Run on {doc.get('date', '?')}: {_header(mach)}. PyTorch: {mach.get('torch', '?')} "
        f"(on the same device); {_environment(mach)}. Benchmarks run: {', '.join(ran)}"
        + (f"; {doc['left_out']}" if doc.get("left_out") else "")
        + ".",
        "",
    ]
    md += _goals(doc, rows, "##")
    for name in BENCHMARKS:
        got = [r for r in rows if r.benchmark == name]
        if got:
            md += [f"## {name} ({_device_of(doc)})", "", table(got), ""]
    return md


def _find(rows: list, benchmark: str, *words: str):
    """The first row of ``benchmark`` whose case and baseline contain every word."""
    for r in rows:
        text = f"{r.case} | {r.baseline_name}"
        if r.benchmark == benchmark and all(w in text for w in words):
            return r
    return None


def _x(r) -> str:
    return "-" if r is None or r.speedup is None else f"{r.speedup:.3g}×"


def headline(rows: list) -> list[list[str]]:
    """The README's headline rows, read from a run's rows."""
    from _harness import fmt_value

    acts = [r.speedup for r in rows if r.benchmark == "activations"]
    kink = _find(rows, "activations", "traced kink value, forward+backward, 2^22")
    out = [
        ["`relu` with a traced kink value, forward+backward, 2^22 float32", "`jax.nn.relu`",
         f"{_x(kink)} (all activation cases: "
         + (f"{min(acts):.2f}–{max(acts):.2f}×)" if acts else "-)"), "≥ 0.97×"],
    ]  # fmt: skip
    for net, goal in (("64-128-128-10", "≥ 3×"), ("64-512-512-10", "≥ 1.2×"),
                      ("64-1024-1024-1024-10", "≥ 1×")):  # fmt: skip
        label = f"training step, MLP {net}, instrumented engine"
        scan = _find(rows, "training", net, "(instrumented) vs hand-written")
        jit = _find(rows, "training", net, "vs JAX jit per step")
        eager = _find(rows, "training", net, "vs PyTorch eager")
        comp = _find(rows, "training", net, "torch.compile")
        out += [
            [label, "a hand-written `lax.scan` loop", _x(scan), "≥ 0.95×"],
            [label, "JAX, jit per step", _x(jit), "≥ 1×"],
            [label, "PyTorch eager / `torch.compile`", f"{_x(eager)} / {_x(comp)}", goal],
        ]
    lock = [r for r in rows if r.benchmark == "training" and "lockstep" in r.case]
    inst = [r for r in rows if r.benchmark == "training" and "instrumented vs not" in r.case]
    out += [
        ["4 lockstep runs (2 sizes)", "4 × one run", ", ".join(_x(r) for r in lock), "≥ 0.91×"],
        ["instrumented vs uninstrumented training (3 sizes)", "the engine uninstrumented",
         ", ".join(_x(r) for r in inst), "≥ 0.87×"],
    ]  # fmt: skip
    torch = _find(rows, "volume", "PyTorch one init")
    ceiling = _find(rows, "volume", "forward-GEMM ceiling")
    if torch is not None:
        out.append(["bifurcation-zone volume, 100 inits, width 256, depth 3",
                    "PyTorch, one init at a time", f"{_x(torch)} ({1 / torch.ours:.0f} inits/s)",
                    "≥ 10×"])  # fmt: skip
    if ceiling is not None:
        out.append(["the same volume estimate", "its forward-GEMM ceiling",
                    f"{100 * ceiling.speedup:.0f}% of it", "≥ 60%"])  # fmt: skip
    mem = _find(rows, "memory", "initialisations")
    rep = _find(rows, "memory", "reproduce")
    if mem is not None:
        out.append(["volume estimate's peak memory, 8× the initialisations", "1×",
                    f"{fmt_value(mem.ours, 'bytes')} vs {fmt_value(mem.baseline, 'bytes')}",
                    "≤ 1.1×"])  # fmt: skip
    if rep is not None:
        out.append(["`jaxrelu reproduce --quick`, peak resident memory", "-",
                    fmt_value(rep.ours, "bytes"), "-"])  # fmt: skip
    check = _find(rows, "checker", "check_grads")
    kinks = _find(rows, "kinks", "find_kinks")
    out += [
        ["`check_many`, 256 points", "a loop of `jax.test_util.check_grads`", _x(check), "≥ 50×"],
        ["`find_kinks`, 3-layer width-256 MLP", "one `jax.jvp`",
         "-" if kinks is None else f"{1 / kinks.speedup:.2f}× the cost of one JVP", "≤ 3×"],
    ]  # fmt: skip
    return out


def write_readme_table(path: str, rows: list, gpu: dict | None = None) -> None:
    """Replaces the table after the ``<!-- bench-table -->`` line of ``path``: the main
    run's ratios, and a column of the ``gpu`` run's where one is given."""
    from _harness import markdown

    with open(path) as fh:
        lines = fh.read().split("\n")
    at = lines.index("<!-- bench-table -->") + 1
    end = at
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    head = ["what", "against", "ratio (ours faster when > 1)", "goal"]
    body = headline(rows)
    if gpu is not None:
        on_gpu = {(r[0], r[1]): r[2] for r in headline(_rows(gpu))}
        head.insert(3, f"on {gpu['machine']['device']}")
        body = [[*r[:3], on_gpu.get((r[0], r[1]), "-"), r[3]] for r in body]
    lines[at:end] = markdown(head, body).split("\n")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
