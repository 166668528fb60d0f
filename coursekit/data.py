"""Offline data sets with train / validation / test splits.

Nothing is downloaded: the synthetic sets are generated from a seed, and the
handwritten digits ship inside scikit-learn (1,797 images of 8x8 pixels).

>>> from coursekit.data import load_dataset
>>> d = load_dataset("spirals", n=300, seed=0)
>>> d.X_train.shape[1], d.n_classes
(2, 3)
>>> train_loader = d.loader("train", batch_size=32)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

DATASETS = ("spirals", "moons", "blobs", "curve", "digits")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Dataset:
    """Tensors for the three splits. ``task`` is ``"classification"`` or ``"regression"``."""

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int = 0
    mean: torch.Tensor | None = field(default=None, repr=False)
    std: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Width of the model's last layer: classes, or target dimensions."""
        return self.n_classes if self.task == "classification" else int(self.y_train.shape[1])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {name!r}")
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def standardize(self) -> "Dataset":
        """Return a copy whose features have zero mean and unit variance *on the training split*.

        The validation and test splits use the training statistics, as they must.
        """
        mean = self.X_train.mean(0)
        std = self.X_train.std(0).clamp_min(1e-6)
        f = lambda X: (X - mean) / std  # noqa: E731
        return replace(self, X_train=f(self.X_train), X_val=f(self.X_val), X_test=f(self.X_test),
                       mean=mean, std=std)

    def subset(self, n_train: int, seed: int = 0) -> "Dataset":
        """A copy with only ``n_train`` training examples (validation and test unchanged)."""
        if not 1 <= n_train <= len(self.X_train):
            raise ValueError(f"n_train must be between 1 and {len(self.X_train)}; got {n_train}")
        idx = torch.randperm(len(self.X_train), generator=torch.Generator().manual_seed(seed))[:n_train]
        return replace(self, X_train=self.X_train[idx], y_train=self.y_train[idx])

    def to(self, device: torch.device | str) -> "Dataset":
        """A copy with every split on ``device`` (small data sets fit on any GPU)."""
        moved = {k: getattr(self, k).to(device) for k in
                 ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")}
        return replace(self, **moved)

    def loader(self, split: str = "train", batch_size: int = 64, shuffle: bool | None = None,
               seed: int = 0) -> DataLoader:
        """A DataLoader over one split; the training split is shuffled by default, reproducibly."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        X, y = self.split(split)
        shuffle = (split == "train") if shuffle is None else shuffle
        return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed) if shuffle else None)


def _spirals(n: int, rng: np.random.Generator, classes: int = 3, noise: float = 0.2):
    per = n // classes
    X, y = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, per)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, per) + rng.normal(0, noise, per)
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(per, c))
    return np.concatenate(X), np.concatenate(y), classes


def _moons(n: int, rng: np.random.Generator, noise: float = 0.15):
    half = n // 2
    t = rng.uniform(0, np.pi, half)
    top = np.c_[np.cos(t), np.sin(t)]
    bottom = np.c_[1 - np.cos(t), 0.5 - np.sin(t)]
    X = np.concatenate([top, bottom]) + rng.normal(0, noise, (2 * half, 2))
    y = np.r_[np.zeros(half), np.ones(half)]
    return X, y, 2


def _blobs(n: int, rng: np.random.Generator, classes: int = 4, dim: int = 2, spread: float = 1.0):
    centers = rng.uniform(-5, 5, (classes, dim))
    y = rng.integers(0, classes, n)
    X = centers[y] + rng.normal(0, spread, (n, dim))
    return X, y, classes


def _curve(n: int, rng: np.random.Generator, noise: float = 0.1):
    x = rng.uniform(-3, 3, (n, 1))
    y = np.sin(1.5 * x) + 0.3 * x + rng.normal(0, noise, (n, 1))
    return x, y, 0


def _digits(n: int | None, rng: np.random.Generator):
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = d.data / 16.0, d.target
    if n is not None and n < len(X):
        keep = rng.permutation(len(X))[:n]
        X, y = X[keep], y[keep]
    return X, y, 10


_MAKERS = {"spirals": _spirals, "moons": _moons, "blobs": _blobs, "curve": _curve}


def load_dataset(name: str, n: int | None = None, seed: int = 0,
                 val_fraction: float = 0.2, test_fraction: float = 0.2,
                 standardize: bool = False, **kwargs) -> Dataset:
    """Build one of the course's data sets, split into train / validation / test.

    ``name`` is one of ``'spirals'``, ``'moons'``, ``'blobs'``, ``'curve'`` (1-D
    regression) or ``'digits'``. ``n`` is the total number of examples
    (default 600 for synthetic sets, all 1,797 for digits). Extra keyword
    arguments (``noise``, ``classes``, ...) go to the generator.

    >>> load_dataset("digits", seed=0).X_train.shape
    torch.Size([1079, 64])
    """
    if name not in DATASETS:
        raise ValueError(f"name must be one of {', '.join(map(repr, DATASETS))}; got {name!r}")
    for arg, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{arg} must be in [0, 1); got {frac!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("val_fraction + test_fraction must be below 1 so that some data is left to train on")
    if n is not None and (not isinstance(n, int) or n < 10):
        raise ValueError(f"n must be an int of at least 10; got {n!r}")
    rng = np.random.default_rng(seed)
    if name == "digits":
        if kwargs:
            raise TypeError(f"'digits' takes no generator arguments; got {sorted(kwargs)}")
        X, y, k = _digits(n, rng)
    else:
        try:
            X, y, k = _MAKERS[name](n or 600, rng, **kwargs)
        except TypeError as e:
            raise TypeError(f"bad generator argument for {name!r}: {e}") from None
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    n_val, n_test = int(len(X) * val_fraction), int(len(X) * test_fraction)
    n_tr = len(X) - n_val - n_test
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long if k else torch.float32)
    ds = Dataset(name=name, task="classification" if k else "regression",
                 X_train=Xt[:n_tr], y_train=yt[:n_tr],
                 X_val=Xt[n_tr:n_tr + n_val], y_val=yt[n_tr:n_tr + n_val],
                 X_test=Xt[n_tr + n_val:], y_test=yt[n_tr + n_val:], n_classes=k)
    return ds.standardize() if standardize else ds
