"""``jaxrelu reproduce``: runs a :class:`~jaxrelu.study.plan.Plan` through the resumable
:class:`~jaxrelu.study.runner.JobStore` and writes ``results.json``, ``report.md`` and
the plots.

Every output path is checked before any work (:mod:`jaxrelu.study.outputs`); the plan is
checked against the data (batch sizes, image shape) before any work; every finished
configuration is saved as it completes; ``results.json`` and ``report.md`` are rebuilt after
each section from this run's results only, the plots at the end. An overall stage counter
with the elapsed time and an estimate of the time left goes to stderr; the section tables
go to ``echo`` (stdout in the CLI).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
from collections.abc import Callable
from typing import Any

import jax

from . import collapse, experiments, outputs, plots, report
from .data import Dataset
from .plan import EXPERIMENTS, FULL, QUICK, Job, Plan, jobs, volume_cell
from .progress import Stages
from .runner import JobStore, file_name

__all__ = ["Outcome", "machine_info", "output_names", "reproduce"]


def machine_info() -> dict[str, str]:
    """Backend, device, CPU model, cores, JAX and Python versions (all strings)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "devices": str(len(jax.devices())),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What :func:`reproduce` wrote: the ``results.json`` document and the files."""

    doc: dict[str, Any]
    report: str
    results: str
    plots: tuple[str, ...]
    runs_dir: str
    saved_runs: int


def output_names(plan: Plan) -> list[str]:
    """Every file ``reproduce`` may write, relative to the output directory."""
    runs = [os.path.join("runs", file_name(j)) for js in jobs(plan).values() for j in js]
    return ["report.md", "results.json", *plots.PLOT_NAMES, *runs]


def _run_section(name: str, job: Job, data: Dataset, progress: bool) -> list[dict[str, Any]]:
    kw = dict(job.kwargs)
    if name == "volume":
        return [{**experiments.volume(data=data, **kw), "cell": volume_cell(kw)}]
    if name == "train":
        kinks = tuple(kw.pop("kink_grads"))
        return experiments.train_comparison(kink_grads=kinks, data=data, progress=progress, **kw)
    if name == "collapse":
        kw.update(kink_grads=tuple(kw["kink_grads"]), channels=tuple(kw["channels"]))
        return collapse.collapse(data=data, progress=progress, **kw)
    return [experiments.divergence(data=data, **kw)]


def _write(
    out: str, data: Dataset, plan: Plan, quick: bool, sections, started, final: bool
) -> Outcome:
    """Writes ``results.json`` and ``report.md`` (after every section) and the plots (at
    the end only: drawing them is the slow part)."""
    rows = [dict(r, experiment=name) for name, rs in sections.items() for r in rs]
    doc = outputs.document(
        "reproduce",
        rows,
        dataset=data.describe(),
        config={"mode": "quick" if quick else "full", **dataclasses.asdict(plan)},
        machine=machine_info(),
        started=started,
    )
    results = outputs.atomic_write(os.path.join(out, "results.json"), outputs.dumps(doc))
    made = plots.make_plots(out, sections, plan) if final else []
    text = report.markdown(doc, plan, quick, sections, made)
    md = outputs.atomic_write(os.path.join(out, "report.md"), text)
    runs_dir = os.path.join(out, "runs")
    saved = len([f for f in os.listdir(runs_dir) if f.endswith(".json")])
    return Outcome(doc, md, results, tuple(made), runs_dir, saved)


def reproduce(
    out: str,
    data: Dataset,
    quick: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    log: Callable[[str], None] | None = None,
    plan: Plan | None = None,
) -> Outcome:
    """Runs the plan (quick or full, or ``plan``), saving as it goes, and writes the
    report.

    Args:
        out: output directory (created if needed).
        data: the data set.
        quick: the quick plan (ignored when ``plan`` is given).
        progress: stage counter and progress bars on stderr.
        echo: receives each section's table (markdown) as it finishes.
        log: receives one line for each saved result that is recomputed, and why
            (default: stderr).
        plan: a custom :class:`~jaxrelu.study.plan.Plan`.

    Raises:
        jaxrelu.study.outputs.OutputPathError: an output path is unsafe (before any work;
            the output directory itself is created first).
        ValueError: the plan cannot run on ``data`` (before any work).
        jaxrelu.study.interrupt.Interrupted: Ctrl-C inside
            :func:`~jaxrelu.study.interrupt.deferred`; finished configurations are saved.
    """
    plan = plan or (QUICK if quick else FULL)
    out = outputs.check_output_dir(out, "--out", output_names(plan))
    plan.check_data(data)
    if log is None:
        log = lambda s: print(s, file=sys.stderr, flush=True)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    store = JobStore(os.path.join(out, "runs"), data, log)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    all_jobs = jobs(plan)
    stages = Stages([name for name in EXPERIMENTS for _ in all_jobs[name]], enabled=progress)
    sections: dict[str, list[dict]] = {name: [] for name in EXPERIMENTS}
    outcome = None
    last = [name for name in EXPERIMENTS if all_jobs[name]][-1]
    for name in EXPERIMENTS:
        if not all_jobs[name]:
            continue
        fn = lambda job, name=name: _run_section(name, job, data, progress)
        sections[name] = store.run(all_jobs[name], fn, stages)
        if name == "volume":
            for title, table in report.volume_tables(sections[name], plan, data.name):
                echo(f"\n## {title}\n\n{table}")
        elif name == "train":
            echo(
                f"\n## Training comparison ({plan.epochs} epochs)\n\n"
                f"{report.train_table(sections[name])}"
            )
        elif name == "collapse":
            echo(f"\n## Training collapse\n\n{report.collapse_table(sections[name])}")
        else:
            echo(f"\n## Trajectory divergence\n\n{report.divergence_table(sections[name])}")
        outcome = _write(out, data, plan, quick, sections, started, final=name == last)
    assert outcome is not None
    return outcome
