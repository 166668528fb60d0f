"""The capstone's reference solution reaches the stated target on fresh seeds, so a
student whose code matches it is never failed by bad luck; and the grader's check
passes only at or above the target."""
from __future__ import annotations

import functools

import pytest
import torch

from autograder.lab import load_lab

SEEDS = [11, 222, 3333, 44444]


@functools.lru_cache(maxsize=None)
def capstone():
    return load_lab("08_capstone")


def test_reference_reaches_the_target_with_margin_on_fresh_seeds():
    ns = capstone().reference
    accs = []
    for seed in SEEDS:
        net = ns["train_capstone"](ns["X_train"], ns["y_train"], ns["X_val"], ns["y_val"],
                                   torch.Generator().manual_seed(seed))
        accs.append(float((net.predict(ns["X_test"]) == ns["data"].y_test).float().mean()))
    print("capstone reference test accuracy over seeds:", [round(a, 3) for a in accs])
    assert min(accs) >= ns["TARGET"] + 0.02, accs


def test_target_check_passes_only_at_or_above_the_target():
    ns = capstone().reference
    y = ns["data"].y_test
    compare = ns["reaches_target"](y, 0.6)
    right = y.clone()
    right[: int(0.4 * len(y))] = (y[: int(0.4 * len(y))] + 1) % 10      # exactly 60% right
    assert compare([], [None, right]) is None
    right[int(0.4 * len(y))] = (right[int(0.4 * len(y))] + 1) % 10       # one fewer
    assert "below the target" in compare([], [None, right])
    assert "class indices" in compare([], [None, right.float()])
    assert "class indices" in compare([], [None, right[:10]])


@pytest.mark.parametrize("key", ["q6/reaches the target (fixed seed)", "q6/hidden: reaches the target with a fresh seed"])
def test_capstone_cases_have_the_stated_time_limit(key):
    c = next(c for c in capstone().cases if c.key == key)
    assert c.timeout == capstone().reference["TIME_LIMIT_S"] == 120
