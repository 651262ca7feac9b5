"""Beyond one process: the volume estimate and lockstep training run by two local
processes (JAX's multi-controller runtime, :func:`jax.distributed.initialize`, CPU
collectives through gloo) give, bit for bit, what one process gives.

The references: the volume from one process with one device (chunks are dealt out to the
processes in turn, so the sums are taken over the same chunks in the same order), and the
training from one process with two (simulated) devices, the same data-parallel split of
each minibatch as one device in each of two processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = textwrap.dedent(
    """
    import json, sys, traceback
    import jax
    import numpy as np

    out, n_proc, proc, port, part = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
    jax.config.update("jax_enable_x64", True)
    if n_proc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}", num_processes=n_proc, process_id=proc,
            initialization_timeout=120,
        )
    from jaxrelu.study import experiments
    from jaxrelu.study.data import synthetic
    from jaxrelu.study.engine import TrainConfig, train

    ds = synthetic(96, 32, dim=6, num_classes=3, seed=1)
    res = {"processes": jax.process_count(), "devices": len(jax.devices())}
    if part in ("volume", "both"):
        experiments.VOLUME_CHUNK = 8  # 24 initialisations: three chunks, dealt out in turn
        row = experiments.volume(
            "float16", width=8, depth=2, batch_size=16, inits=24, seed=4, data=ds, images=150
        )
        row.pop("seconds")
        res["volume"] = row
    if part in ("train", "both"):
        cfg = TrainConfig(width=8, depth=2, epochs=2, batch_size=16, dtype="float64",
                          kink_grads=(0.0, 1.0), momentum=0.9)
        try:
            h = train(cfg, ds, progress=False)
        except Exception:  # reported by the training test, after the volume's
            res["train_error"] = traceback.format_exc()
        else:
            leaves = [np.ravel(np.asarray(v)) for v in jax.tree.leaves(h.params)]
            res["params"] = np.concatenate(leaves).tolist()
            res["step_loss"] = np.asarray(h.step_loss).ravel().tolist()
            res["test_accuracy"] = np.asarray(h.test_accuracy).ravel().tolist()
    with open(out, "w") as fh:
        json.dump(res, fh)
    """
)
TIMEOUT = 240  # seconds for each process, on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _start(script, out, n_proc, proc, port, part, devices=1) -> subprocess.Popen:
    """One worker; its output goes to ``out`` with ``.log`` appended (no pipe to fill)."""
    argv = [sys.executable, str(script), str(out), str(n_proc), str(proc), str(port), part]
    with open(f"{out}.log", "w") as log:
        return subprocess.Popen(argv, env=_env(devices), stdout=log, stderr=subprocess.STDOUT)


def _finish(procs: dict[str, tuple[subprocess.Popen, str]]) -> None:
    """Waits for every process; on a failure or a timeout kills the others (and reaps
    them) and fails with every process's output."""
    failed = []
    try:
        for name, (p, _) in procs.items():
            try:
                p.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                failed.append(f"{name}: no result after {TIMEOUT} s")
                break
            if p.returncode != 0:
                failed.append(f"{name}: exit status {p.returncode}")
                break
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    if failed:
        logs = "\n".join(
            f"--- {name} output:\n{open(log).read()[-4000:]}" for name, (_, log) in procs.items()
        )
        pytest.fail(f"{'; '.join(failed)}\n{logs}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import json

    tmp = tmp_path_factory.mktemp("distributed")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    jobs = {
        "process 0 of 2": ("p0", 2, 0, port, "both", 1),
        "process 1 of 2": ("p1", 2, 1, port, "both", 1),
        "one process, one device": ("v", 1, 0, 0, "volume", 1),
        "one process, two devices": ("t", 1, 0, 0, "train", 2),
    }
    procs = {}
    for name, (out, *args) in jobs.items():
        procs[name] = (_start(script, tmp / f"{out}.json", *args), f"{tmp / out}.json.log")
    _finish(procs)
    return {k: json.loads((tmp / f"{k}.json").read_text()) for k in ("p0", "p1", "v", "t")}


def test_two_processes_ran_as_one_job(runs):
    assert (runs["p0"]["processes"], runs["p0"]["devices"]) == (2, 2)
    assert (runs["t"]["processes"], runs["t"]["devices"]) == (1, 2)


def test_volume_across_processes_equals_one_process_bit_for_bit(runs):
    one = runs["v"]["volume"]
    assert 0 < one["in_zone"] < one["inits"]  # informative
    for p in ("p0", "p1"):
        assert runs[p]["volume"] == one  # every number, floats compared exactly


def test_lockstep_training_across_processes_equals_one_process_bit_for_bit(runs):
    ref = runs["t"]
    for r in (ref, runs["p0"], runs["p1"]):
        assert "train_error" not in r, r.get("train_error")
    for p in ("p0", "p1"):
        for key in ("params", "step_loss", "test_accuracy"):
            np.testing.assert_array_equal(np.array(runs[p][key]), np.array(ref[key]), err_msg=key)
