"""Memory: the peak resident memory (the kernel's high-water mark of each process, run
alone in a fresh interpreter) of the volume estimate as the number of initialisations
grows eightfold, and of `jaxrelu reproduce`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from _harness import Row

from jaxrelu.study import experiments

NAME = "memory"
VOLUME = """
import sys
import jax
jax.config.update("jax_default_matmul_precision", "highest")
from jaxrelu.study import volume
inits, width, depth = map(int, sys.argv[1:4])
row = volume("float32", width, depth, 128, inits, 0, "digits")
print(row["in_zone"], row["seconds"])
"""


def peak_rss(argv: list[str]) -> tuple[int, float]:
    """Runs ``argv`` and returns its peak resident memory in bytes (``ru_maxrss`` of the
    child, from ``wait4``) and its wall time; raises with its output if it fails."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise AssertionError(f"{argv} failed:\n{log.read().decode()[-3000:]}")
    return usage.ru_maxrss * 1024, seconds  # Linux: kilobytes


def run(quick: bool) -> list[Row]:
    chunk = experiments.VOLUME_CHUNK
    width, depth = (64, 2) if quick else (256, 3)
    few, many = (chunk // 16, chunk // 2) if quick else (chunk, 8 * chunk)
    rss = {}
    for inits in (few, many):
        argv = [sys.executable, "-c", VOLUME, str(inits), str(width), str(depth)]
        rss[inits], _ = peak_rss(argv)
    rows = [
        Row(NAME, f"volume, {many} vs {few} initialisations (MLP width {width} depth {depth}, "
            "batch 128, float32, digits)", rss[many], f"{few} initialisations", rss[few],
            1 / 1.1, "bytes", f"chunks of at most {chunk} initialisations; goal: flat "
            "(at most 10% more for 8x the initialisations)")
    ]  # fmt: skip
    if not quick:  # the smoke run leaves it out: it is a run of its own
        with tempfile.TemporaryDirectory() as out:
            argv = [sys.executable, "-m", "jaxrelu.study.cli", "reproduce", "--quick",
                    "--no-progress", "--out", out]  # fmt: skip
            peak, seconds = peak_rss(argv)
        rows.append(
            Row(NAME, "jaxrelu reproduce --quick", peak, "-", None, None, "bytes",
                f"peak resident memory of the whole run ({seconds:.0f} s)")
        )  # fmt: skip
    return rows


def explain(row: Row, rows: list[Row]) -> str:
    """Why ``row`` misses its goal, from this run's figures."""
    return f"{row.ours / row.baseline:.2f}x the memory for 8x the initialisations"


NOTES = """Goal (issue 14): the peak resident memory of `jaxrelu reproduce` reported, and the
volume estimate's memory flat in the number of initialisations: they run in chunks of
`VOLUME_CHUNK`, each chunk's results summed on the host before the next starts. Each figure
is one process's high-water mark, including the Python interpreter, JAX and XLA's compiled
programs (about the first few hundred MiB)."""
