"""The report's new sections from hand-made rows (no training): the per-image hazard and
its conversions, the accumulation table, the collapse tables and the first section's
sentences. Expected values are computed here by hand, not read from the code."""

import dataclasses
import math

import pytest

from jaxrelu.study import plan as plans
from jaxrelu.study import report
from jaxrelu.study.experiments import wilson_interval

PLAN = dataclasses.replace(
    plans.QUICK,
    volume_base={"width": 256, "depth": 3, "batch_size": 128},
    volume_dtypes=("float16", "float32"),
)


def vol(dtype, in_zone, inits, cell="sweep", batch=128, images=None, accumulate="native"):
    lo, hi = wilson_interval(in_zone, inits)
    return {"dtype": dtype, "width": 256, "depth": 3, "batch_size": batch, "inits": inits,
            "in_zone": in_zone, "probability": in_zone / inits, "ci": [lo, hi],
            "minibatch_rate": 0.0, "relative_l2": None, "zero_hit_rate": 0.0,
            "minibatches": 12, "seconds": 1.0, "cell": cell, "images": images,
            "accumulate": accumulate}  # fmt: skip


def test_hazard_by_hand():
    lam, lo, hi = plans.hazard(478, 1000, 60_000)
    assert lam == pytest.approx(-math.log(1 - 0.478) / 60_000, rel=1e-12)
    plo, phi = wilson_interval(478, 1000)
    assert (lo, hi) == pytest.approx((-math.log(1 - plo) / 60_000, -math.log(1 - phi) / 60_000))
    assert lo < lam < hi
    assert plans.hazard(0, 100, 1437)[:2] == (0.0, 0.0)
    assert plans.hazard(100, 100, 1437)[0] == math.inf


def test_exposure_table_converts_the_paper_to_each_row():
    rows = [vol("float32", 1, 100), vol("float32", 420, 1000, "exposure", 256, 60_000)]
    table = report.exposure_table(rows, PLAN, 1437, "digits")
    lines = table.splitlines()
    assert len(lines) == 2 + 3  # head, rule, paper, one pass, exposure
    lam = -math.log(1 - 0.478) / 60_000
    assert f"{1 - math.exp(-lam * 1437):.3f}" == "0.015"
    assert "| 1,437 | 0.010 [" in lines[3] and "| 0.015 [0.014, 0.017] |" in lines[3]
    # 60,000 images are repeated passes over digits' 1,437: the hazard and the paper's
    # conversion count distinct images (repetition adds no new chance of an exact zero)
    assert "| 60,000 (1,437 distinct) | 0.420 [" in lines[4]
    assert "| 0.015 [0.014, 0.017] |" in lines[4]
    assert f"{-math.log(1 - 0.42) / 1437:.2e}" in lines[4]
    # a row within the training set is counted as it is
    few = report.exposure_table([vol("float32", 420, 1000, "exposure", 256, 1000)], PLAN, 1437, "d")
    assert "| 1,000 | 0.420 [" in few and f"{-math.log(1 - 0.42) / 1000:.2e}" in few
    assert report.exposure_table([vol("float16", 1, 4)], PLAN, 1437, "digits") is None


def test_accumulate_table_pairs_the_modes():
    rows = [vol("float16", 100, 100), vol("float16", 31, 100, "accumulate", accumulate="float32")]
    table = report.accumulate_table(rows, PLAN)
    assert table.splitlines()[2].startswith("| float16 | 1.000 [0.96, 1.00] | 0.310 [")
    assert report.accumulate_table(rows[:1], PLAN) is None


def crow(s, acc, seed=0, dt="float16", live=(0.0, 1e-5), rel=1e-3):
    return {"kink_grad": s, "dtype": dt, "batchnorm": False, "seed": seed, "epochs": 2,
            "channels": [2], "depth": 1, "status": "ok", "test_accuracy": acc,
            "accuracy_curve": [0.1, acc], "loss_curve": [2.3, 1.0],
            "collapsed": acc <= 0.2, "zero_hit_rate": 0.25,
            "zero_hit_rate_by_layer": [0.5, 0.0], "live_tie_rate_by_layer": list(live),
            "tie_gradient_mean": rel, "tie_gradient_max": 2 * rel, "bifurcation_steps": 3,
            "convolutions": 3, "steps": 20, "seconds": 1.0, "learning_rate": 0.1,
            "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128}  # fmt: skip


def test_collapse_tables():
    rows = [crow(0.0, 0.9), crow(0.0, 0.8, 1), crow(1.0, 0.1), crow(1.0, 0.9, 1),
            crow("lexicographic", 0.85), crow("lexicographic", 0.95, 1)]  # fmt: skip
    lines = report.collapse_table(rows).splitlines()
    assert [ln.split(" | ")[2] for ln in lines[2:]] == ["0", "1", "lexicographic"]
    assert "| 0.8500 ± 0.0500 | 0/2 |" in lines[2]
    assert "| 0.5000 ± 0.4000 | 1/2 |" in lines[3]
    assert "| 5.0e-06 |" in lines[3]  # live ties: mean over layers and seeds
    assert "| 1.0e-03 / 2.0e-03 | 6 |" in lines[4]
    layers = report.collapse_layer_table(rows).splitlines()
    assert layers[2] == "| 1 (stem) | 5.0e-01 | 0.0e+00 |"
    assert layers[3] == "| 2 (block 1, conv1) | 0.0e+00 | 1.0e-05 |"


@pytest.mark.parametrize(
    "accs, outcome",
    [
        ({0.0: 0.9, 0.1: 0.9, 0.3: 0.1, 1.0: 0.1}, "The paper's collapse"),  # its pattern
        ({0.0: 0.9, 0.1: 0.9, 0.3: 0.9, 1.0: 0.9}, "The paper's training collapse does not"),
        ({0.0: 0.1, 0.1: 0.9, 0.3: 0.1, 1.0: 0.1}, "Stuck runs appear"),  # 0 collapses too
        ({0.0: 0.9, 0.1: 0.1, 0.3: 0.1, 1.0: 0.9}, "Stuck runs appear"),  # 0.1 as much as 0.3
    ],
)
def test_first_section_says_whether_the_collapse_appears(accs, outcome):
    rows = [crow(s, a) for s, a in accs.items()]
    text = report.answer({"collapse": rows}, PLAN, 1437, "digits")[0]
    assert text.startswith(f"**{outcome}")
    high = sum(a <= 0.2 for s, a in accs.items() if s >= 0.3)
    low = int(accs[0.1] <= 0.2)
    assert f"runs {int(accs[0.0] <= 0.2)}/1 at 0, {low}/1 at 0.1–0.2, {high}/2 at ≥ 0.3" in text
