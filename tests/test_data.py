"""coursekit.data's MNIST-1D: generated offline, deterministic, cached, split like the other sets."""
from __future__ import annotations

import random
import socket

import numpy as np
import pytest
import torch

from coursekit import data as D
from coursekit.data import load_dataset, mnist1d_arrays, plot_examples


@pytest.fixture(scope="module")
def mnist1d():
    return load_dataset("mnist1d")


def test_mnist1d_has_the_papers_shape_and_splits(mnist1d):
    d = mnist1d
    assert d.name == "mnist1d" and d.task == "classification" and d.n_classes == 10 and d.n_features == 40
    assert (len(d.X_train), len(d.X_val), len(d.X_test)) == (3000, 1000, 1000)
    assert d.X_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    # the test split is mnist1d's own test set: the paper's 1,000 sequences
    ref = mnist1d_arrays()
    assert ref["x"].shape == (4000, 40) and ref["x_test"].shape == (1000, 40)
    assert torch.equal(d.X_test, torch.from_numpy(ref["x_test"].copy()))
    # train and validation are the paper's 4,000 training sequences, none of them twice
    rows = torch.cat([d.X_train, d.X_val])
    assert len(torch.unique(rows, dim=0)) == 4000
    assert torch.equal(rows.sort(0).values, torch.from_numpy(ref["x"].copy()).sort(0).values)
    assert torch.bincount(d.y_train, minlength=10).min() > 250  # every class is well represented


def test_mnist1d_seed_moves_examples_between_train_and_val_only(mnist1d):
    other = load_dataset("mnist1d", seed=1)
    assert not torch.equal(other.X_train, mnist1d.X_train)
    assert torch.equal(other.X_test, mnist1d.X_test)
    full = load_dataset("mnist1d", val_fraction=0.0)
    assert (len(full.X_train), len(full.X_val)) == (4000, 0)


def test_mnist1d_standardizes_and_loads_like_the_other_sets(mnist1d):
    s = load_dataset("mnist1d", standardize=True)
    torch.testing.assert_close(s.X_train.mean(0), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.X_train.std(0), torch.ones(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(s.X_test, (mnist1d.X_test - mnist1d.X_train.mean(0)) / mnist1d.X_train.std(0))
    xb, yb = next(iter(s.loader("train", batch_size=32)))
    assert xb.shape == (32, 40) and yb.shape == (32,)
    assert len(s.subset(500).X_train) == 500


def test_generation_is_deterministic_and_leaves_global_rngs_alone():
    random.seed(5)
    np.random.seed(5)
    before = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    args = {"num_samples": 200, "train_split": 0.8, "seed": D.MNIST1D_SEED}
    a = D._mnist1d_generate(args)
    b = D._mnist1d_generate(args)
    assert (random.random(), np.random.rand()) == before  # mnist1d reseeds both; we restore them
    for k in ("x", "y", "x_test", "y_test"):
        assert np.array_equal(a[k], b[k])
    assert a["x"].shape == (160, 40) and a["x_test"].shape == (40, 40)


def test_second_load_is_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(D, "_MNIST1D_MEMORY", {})
    calls = []
    generate = D._mnist1d_generate
    monkeypatch.setattr(D, "_mnist1d_generate", lambda args: calls.append(args) or generate(args))
    first = load_dataset("mnist1d", n=300)
    again = load_dataset("mnist1d", n=300)
    assert len(calls) == 1 and torch.equal(first.X_train, again.X_train)
    files = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(files) == 1
    monkeypatch.setattr(D, "_MNIST1D_MEMORY", {})  # a new kernel: reads the file, generates nothing
    from_disk = load_dataset("mnist1d", n=300)
    assert len(calls) == 1 and torch.equal(from_disk.X_test, first.X_test)
    files[0].write_bytes(b"not an npz")  # a damaged file is regenerated
    monkeypatch.setattr(D, "_MNIST1D_MEMORY", {})
    assert torch.equal(load_dataset("mnist1d", n=300).X_test, first.X_test) and len(calls) == 2
    other = load_dataset("mnist1d", n=300, iid_noise_scale=0.1)  # other settings, other data
    assert len(calls) == 3 and not torch.equal(other.X_test, first.X_test)


def test_mnist1d_needs_no_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_dataset('mnist1d') tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv(D.CACHE_ENV, "off")
    monkeypatch.setattr(D, "_MNIST1D_MEMORY", {})
    d = load_dataset("mnist1d", n=200)
    assert len(d.X_test) == 40 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n=1234), ValueError, "n must be a multiple of 10 for 'mnist1d'"),
    (dict(num_samples=100), TypeError, "'num_samples' is set by load_dataset"),
    (dict(seed_of_noise=3), TypeError, "bad generator argument for 'mnist1d'"),
    (dict(val_fraction=0.7, test_fraction=0.3), ValueError, "val_fraction \\+ test_fraction"),
])
def test_mnist1d_rejects_bad_arguments(kwargs, error, message, monkeypatch):
    monkeypatch.setenv(D.CACHE_ENV, "off")
    with pytest.raises(error, match=message):
        load_dataset("mnist1d", **kwargs)


def test_plot_examples_draws_each_class(mnist1d):
    fig = plot_examples(mnist1d, per_class=2)
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == 10 and all(len(ax.lines) == 2 for ax in drawn)
    assert drawn[3].get_title() == "class 3"
    standardized = load_dataset("mnist1d", standardize=True)
    line = plot_examples(standardized, per_class=1).axes[0].lines[0]
    first0 = int((mnist1d.y_train == 0).nonzero()[0])
    np.testing.assert_allclose(line.get_ydata(), mnist1d.X_train[first0].numpy(), atol=1e-5)  # original units
    digits = plot_examples(load_dataset("digits"), per_class=2)
    assert sum(1 for ax in digits.axes if ax.images) == 20
    with pytest.raises(ValueError, match="per_class must be a positive int"):
        plot_examples(mnist1d, per_class=0)
    with pytest.raises(ValueError, match="regression set"):
        plot_examples(load_dataset("curve"))
