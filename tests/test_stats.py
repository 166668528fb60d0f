"""coursekit.stats: summaries over seeds and paired comparisons, checked against hand computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coursekit.stats import compare, compare_family, holm, seed_grid, summarize, verdict, verdicts


def test_summary_is_mean_and_sample_spread():
    s = summarize([0.5, 0.7, 0.6], scale=100)
    assert s.n == 3 and math.isclose(s.mean, 60.0) and math.isclose(s.std, 10.0)
    half = 4.302652729911275 * 10.0 / math.sqrt(3)  # t(0.975, 2 dof)
    assert math.isclose(s.low, 60 - half) and math.isclose(s.high, 60 + half)
    assert str(s) == "60.0 ± 10.0 (mean ± SD, 3 seeds)"
    assert str(summarize(torch.tensor([0.25, 0.75]))) == "0.500 ± 0.354 (mean ± SD, 2 seeds)"
    assert math.isnan(summarize([0.3]).std) and str(summarize([0.3])) == "0.300 (1 seed)"


def test_paired_comparison_uses_the_per_seed_differences():
    # seed effects are large and shared; the paired difference is a steady +2 points
    base = np.array([0.60, 0.70, 0.80, 0.65, 0.75])
    better = base + np.array([0.021, 0.019, 0.020, 0.022, 0.018])
    c = compare(better, base)
    assert c.n == 5 and math.isclose(c.diff, 0.02)
    d = better - base
    assert math.isclose(c.spread, d.std(ddof=1))
    assert math.isclose(c.half_width, 2.7764451051977987 * d.std(ddof=1) / math.sqrt(5))
    assert c.clear and c.outcome == "helps"
    # the same numbers unpaired would drown in the seed spread: summaries overlap
    assert summarize(better).low < summarize(base).high
    assert compare(base, better).outcome == "hurts"
    assert compare(base, better, higher_is_better=False).outcome == "helps"  # e.g. losses


def test_verdict_says_no_clear_difference_when_the_interval_crosses_zero():
    a = [0.70, 0.72, 0.69, 0.71, 0.70]
    b = [0.71, 0.70, 0.70, 0.70, 0.71]
    line = verdict(a, b, "dropout 0.5", "none")
    assert line.startswith("dropout 0.5 vs none: +0.0 ± ")
    assert line.endswith("points (5 seeds, 95% CI) -> no clear difference")
    helps = verdict([0.74, 0.75, 0.73, 0.76, 0.74], [0.71, 0.72, 0.70, 0.72, 0.71], "wd 1e-3", "wd 0")
    assert helps == "wd 1e-3 vs wd 0: +3.2 ± 0.6 points (5 seeds, 95% CI) -> helps"
    loss = verdict([0.50, 0.52, 0.51], [0.40, 0.41, 0.40], "sgd", "adam", scale=1, unit="",
                   digits=3, higher_is_better=False)
    assert loss.endswith("-> hurts") and ": +0.107 ± " in loss and " (3 seeds" in loss


def test_identical_runs_are_no_clear_difference():
    assert compare([0.5, 0.6], [0.5, 0.6]).outcome == "no clear difference"


def test_the_p_value_is_the_paired_t_tests_and_agrees_with_the_interval():
    from scipy.stats import ttest_rel

    a, b = [0.74, 0.75, 0.73, 0.76, 0.74], [0.71, 0.72, 0.72, 0.74, 0.73]
    c = compare(a, b)
    assert math.isclose(c.p, ttest_rel(a, b).pvalue, rel_tol=1e-9)
    for x, y in [(a, b), ([0.70, 0.72, 0.69, 0.71], [0.71, 0.70, 0.70, 0.70])]:
        c = compare(x, y)
        assert c.clear == (c.p < 0.05)  # the 95% interval excludes 0 exactly when p < 0.05


def test_holm_matches_its_definition_and_never_lowers_a_p_value():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1), each at least the one before
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (holm(p) >= p).all() and holm([0.9, 0.8]).max() <= 1.0
    assert holm([0.02]).tolist() == [0.02]


def test_a_family_can_turn_a_lone_helps_into_no_clear_difference():
    rng = np.random.default_rng(0)
    base = rng.normal(0.70, 0.02, 5)
    # a small, noisy gain: clear alone (p just under 0.05), not among seven comparisons
    small = base + np.array([0.012, 0.004, 0.010, 0.001, 0.008])
    alone = compare(small, base)
    assert alone.clear and alone.p > 0.05 / 7
    pairs = {f"s{i}": (base + rng.normal(0, 0.01, 5), base) for i in range(6)} | {"small": (small, base)}
    family = compare_family(pairs)
    assert family["small"].family == 7 and not family["small"].clear
    assert family["small"].outcome == "no clear difference" and family["small"].p_holm >= alone.p
    # a large effect survives the correction
    big = compare_family({"big": (base + 0.05, base + rng.normal(0, 0.002, 5)), "none": (base, base + 1e-4)})
    assert big["big"].outcome == "helps"


def test_verdict_lines_label_their_interval_and_outcome_lines_carry_no_digits():
    a, b = [0.74, 0.75, 0.73, 0.76, 0.74], [0.71, 0.72, 0.70, 0.72, 0.71]
    lines = verdicts({"warm-up": (a, b), "same": (b, b)}, baseline="constant")
    assert lines[0] == "warm-up vs constant: +3.2 ± 0.6 points (5 seeds, 95% CI; Holm, 2 tests) -> helps"
    assert lines[1].endswith("(5 seeds, 95% CI; Holm, 2 tests) -> no clear difference")
    assert compare(a, b).outcome_line("warm-up") == "warm-up: helps (5 seeds, 95% CI excludes 0)"
    assert compare(b, a).outcome_line("cold") == "cold: hurts (5 seeds, 95% CI excludes 0)"
    line = compare_family({"x": (a, b), "y": (b, a)})["x"].outcome_line("x")
    assert line == "x: helps (5 seeds; Holm, 2 tests)" and not any(ch.isdigit() for ch in line.split("(")[0])


def test_seed_grid_lays_out_settings_with_seed_fastest():
    g = seed_grid(2, lr=[0.1, 0.01], wd=[0.0, 1e-3])
    assert g["seed"] == [0, 1] * 4
    assert g["lr"] == [0.1] * 4 + [0.01] * 4
    assert g["wd"] == [0.0, 0.0, 1e-3, 1e-3] * 2
    acc = torch.arange(8.0)  # what a K=8 sweep returns, reshaped to [lr, wd, seeds]
    assert acc.view(2, 2, 2)[1, 0].tolist() == [4.0, 5.0]
    assert seed_grid([7, 9], p=[0.5])["seed"] == [7, 9]


@pytest.mark.parametrize("call, error, message", [
    (lambda: compare([0.1, 0.2], [0.1, 0.2, 0.3]), ValueError, "a and b must hold one run per seed"),
    (lambda: compare([0.1], [0.2]), ValueError, "a needs at least 2 runs"),
    (lambda: compare([0.1, float("nan")], [0.1, 0.2]), ValueError, "a must be finite"),
    (lambda: compare([[0.1, 0.2]], [0.1, 0.2]), ValueError, "a must be one number per seed"),
    (lambda: compare(["x", "y"], [0.1, 0.2]), TypeError, "a must be a sequence of numbers"),
    (lambda: summarize([0.1, 0.2], confidence=95), ValueError, "confidence must be a number in \\(0, 1\\)"),
    (lambda: seed_grid(0), ValueError, "seeds must be a positive count"),
    (lambda: holm([0.1, 1.5]), ValueError, "p must hold p-values in \\[0, 1\\]"),
    (lambda: compare_family({}), ValueError, "pairs must be a non-empty dict"),
    (lambda: compare_family({"x": [0.1, 0.2, 0.3]}), ValueError, "pairs\\['x'\\] must be a pair"),
    (lambda: seed_grid(3, lr=0.1), ValueError, "setting 'lr' must be a non-empty list"),
    (lambda: seed_grid(3, seed=[1, 2]), ValueError, "pass the seeds as seeds="),
])
def test_bad_input_is_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_examples_in_the_docstrings_hold():
    import doctest

    import coursekit.prose
    import coursekit.stats

    for module in (coursekit.stats, coursekit.prose):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
