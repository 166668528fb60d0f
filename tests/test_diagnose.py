"""coursekit.diagnose: the learning-curve diagnosis, checked on the real gallery runs of chapter 10."""
from __future__ import annotations

import math

import pytest
import torch

from coursekit.diagnose import GALLERY, LABELS, Diagnosis, diagnose, make_gallery

# The gallery is trained once per worker: keep every test of this module on one worker.
pytestmark = pytest.mark.xdist_group("diagnose")


def _train(names=None):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and steadier on a shared machine
    try:
        return make_gallery(names, device="cpu")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def gallery():
    return _train()


def test_gallery_has_one_run_per_label():
    assert sorted(r["label"] for r in GALLERY.values()) == sorted(LABELS)


@pytest.mark.parametrize("name", list(GALLERY))
def test_gallery_run_is_diagnosed_as_labelled(gallery, name):
    d = diagnose(gallery[name])
    assert d.label == GALLERY[name]["label"], f"{name}: {d}"
    assert d.fix and d.evidence and d.problem


#: Another seed than the one the thresholds were chosen on: new inits, batch orders and subsets.
HELD_OUT_SEED = 1
#: Runs whose held-out diagnosis is known to differ from the label, and the labels that still name the cause.
#: Adam at lr 0.3 spikes above 3x the starting loss in its first epoch on seed 1, which the divergence
#: rule (some epoch's loss > 3 L0) reads as diverging; both labels blame the learning rate.
KNOWN_MISSES = {"lr too high": {"oscillating", "diverging"}}


@pytest.fixture(scope="module")
def held_out():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return make_gallery(seed=HELD_OUT_SEED, device="cpu")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="divergence rule fires on a first-epoch spike"))
    if n in KNOWN_MISSES else n for n in GALLERY])
def test_held_out_gallery_run_is_diagnosed_as_labelled(held_out, name):
    d = diagnose(held_out[name])
    assert d.label == GALLERY[name]["label"], f"{name} (seed {HELD_OUT_SEED}): {d}"


@pytest.mark.parametrize("name", list(KNOWN_MISSES))
def test_held_out_known_miss_still_blames_the_right_cause(held_out, name):
    assert diagnose(held_out[name]).label in KNOWN_MISSES[name]


def test_held_out_gallery_differs_from_the_tuning_gallery(gallery, held_out):
    """The held-out runs are really new runs, not the tuned ones again."""
    assert all(held_out[n].train_loss != gallery[n].train_loss for n in GALLERY)


def test_gallery_is_deterministic(gallery):
    again = _train(["healthy", "overfitting"])
    for name, h in again.items():
        assert h.train_loss == gallery[name].train_loss and h.val_loss == gallery[name].val_loss


def test_diagnose_accepts_plain_mappings_and_flags_nan():
    d = diagnose({"train_loss": [2.3, 1.5, math.nan, math.nan], "val_loss": [2.3, 1.6, math.nan, math.nan]})
    assert isinstance(d, Diagnosis) and d.label == "diverging" and "NaN" in d.evidence
    assert "try:" in str(d)


def test_healthy_synthetic_curve():
    train = [2.3 * 0.7**i for i in range(20)]
    val = [t * 1.2 + 0.01 for t in train]
    assert diagnose({"train_loss": train, "val_loss": val}).label == "healthy"


def test_diagnose_checks_its_input():
    with pytest.raises(ValueError, match="at least 4 epochs"):
        diagnose({"train_loss": [1.0, 0.5], "val_loss": [1.0, 0.6]})
    with pytest.raises(ValueError, match="one value per epoch"):
        diagnose({"train_loss": [1.0, 0.5, 0.4, 0.3], "val_loss": [1.0]})
    with pytest.raises(ValueError, match="names must be among"):
        make_gallery(["no such run"])
