"""The reproduce runner: job identity, resume, atomic saves.

Each finished job is saved as ``OUT/runs/<experiment>-<hash of the job>.json``, a
:func:`~jaxrelu.study.outputs.document` of kind ``"run"`` that records the job's
**identity**: the experiment and its arguments, the SHA-256 of the data's contents, the
jaxrelu, JAX and jaxlib versions, 64-bit mode, the backend and the matmul precision --
everything the result depends on. A rerun reuses a saved result only if it can be read,
has the current schema version, well-formed rows and exactly the same identity;
otherwise the job is recomputed and the runner says why (changed data, another version,
a damaged file, ...). Saves are atomic, so an interruption never leaves a partial file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jaxlib

import jaxrelu

from . import interrupt, outputs
from .data import Dataset
from .plan import Job
from .progress import Stages

__all__ = ["ROW_KEYS", "JobStore", "file_name", "identity"]

ROW_KEYS = {
    "volume": ("dtype", "width", "depth", "batch_size", "inits", "in_zone", "probability", "ci"),
    "train": ("model", "kink_grad", "dtype", "optimizer", "batchnorm", "seed", "status"),
    "collapse": ("kink_grad", "dtype", "batchnorm", "seed", "status", "accuracy_curve"),
    "divergence": ("dtype", "steps", "l1", "first_divergence", "zero_hits", "status"),
}
"""Keys every saved row of an experiment must have (a saved result without them is
recomputed)."""


def identity(job: Job, data: Dataset) -> dict[str, Any]:
    """Everything the result of ``job`` on ``data`` depends on (JSON-ready)."""
    return {
        "experiment": job.experiment,
        "job": outputs.to_json(job.kwargs),
        "data_sha256": data.fingerprint,
        "jaxrelu_version": jaxrelu.__version__,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "x64": bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]
        "backend": jax.default_backend(),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),  # type: ignore[attr-defined]
    }


def file_name(job: Job) -> str:
    """The saved result's file name: the experiment and a hash of its arguments."""
    text = json.dumps({"experiment": job.experiment, **outputs.to_json(job.kwargs)}, sort_keys=True)
    return f"{job.experiment}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def _mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    names = {
        "data_sha256": "different data",
        "jaxrelu_version": "another jaxrelu version",
        "jax_version": "another JAX version",
        "jaxlib_version": "another jaxlib version",
        "x64": "another 64-bit mode",
        "backend": "another backend",
        "matmul_precision": "another matmul precision",
        "job": "another configuration",
        "experiment": "another experiment",
    }
    diffs = [
        f"{names.get(k, k)} ({saved.get(k)!s:.12} -> {current[k]!s:.12})"
        for k in current
        if saved.get(k) != current[k]
    ]
    return "saved with " + ", ".join(diffs)


@dataclasses.dataclass
class JobStore:
    """Saved results of one ``reproduce`` output directory.

    Attributes:
        directory: ``OUT/runs``.
        data: the data set the jobs run on.
        echo: where the store says what it recomputes and why (one line each).
    """

    directory: str
    data: Dataset
    echo: Callable[[str], None] = print

    def path(self, job: Job) -> str:
        return os.path.join(self.directory, file_name(job))

    def load(self, job: Job) -> list[dict[str, Any]] | None:
        """The saved rows of ``job``, or None (saying why if a saved file is unusable)."""
        path = self.path(job)
        if not os.path.exists(path):
            return None
        why = None
        try:
            with open(path, encoding="utf-8") as fh:
                doc = outputs.loads(fh.read())
            why = self._invalid(doc, job)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            why = f"saved result unreadable ({type(err).__name__}: {str(err)[:80]})"
        if why:
            self.echo(f"recomputing {job.label}: {why}")
            return None
        return doc["results"]

    def _invalid(self, doc: Any, job: Job) -> str | None:
        if not isinstance(doc, dict) or doc.get("kind") != "run":
            return "saved result damaged (not a run record)"
        if doc.get("schema_version") != outputs.SCHEMA_VERSION:
            return f"saved result has schema version {doc.get('schema_version')!r}"
        current = identity(job, self.data)
        saved = doc.get("identity")
        if not isinstance(saved, dict):
            return "saved result damaged (no identity)"
        if saved != current:
            return _mismatch(saved, current)
        rows = doc.get("results")
        keys = ROW_KEYS[job.experiment]
        if not isinstance(rows, list) or not rows:
            return "saved result damaged (no rows)"
        if not all(isinstance(r, dict) and all(k in r for k in keys) for r in rows):
            return "saved result damaged (rows missing fields)"
        return None

    def save(self, job: Job, rows: list[dict[str, Any]]) -> None:
        doc = outputs.document(
            "run",
            rows,
            dataset=self.data.describe(),
            config=outputs.to_json(job.kwargs),
            experiment=job.experiment,
            job=outputs.to_json(job.kwargs),
            identity=identity(job, self.data),
        )
        outputs.atomic_write(self.path(job), outputs.dumps(doc))

    def run(
        self, jobs: list[Job], fn: Callable[[Job], list[dict[str, Any]]], stages: Stages
    ) -> list[dict[str, Any]]:
        """Runs ``jobs`` in order (saved ones loaded, the others computed and saved),
        advancing ``stages``; returns all their rows. Ctrl-C inside
        :func:`~jaxrelu.study.interrupt.deferred` stops between jobs or inside one at a
        chunk boundary, with every finished job saved."""
        rows: list[dict[str, Any]] = []
        for job in jobs:
            saved = self.load(job)
            stages.begin(job.label + ("" if saved is None else " (saved result)"))
            computed = saved is None
            if saved is None:
                saved = outputs.to_json(fn(job))
                self.save(job, saved)
            stages.end(computed)
            rows += saved
            interrupt.check()
        return rows
