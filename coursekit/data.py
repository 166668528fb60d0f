"""Offline data sets with train / validation / test splits.

Nothing is downloaded: the synthetic sets are generated from a seed, the
handwritten digits ship inside scikit-learn (1,797 images of 8x8 pixels), and
MNIST-1D (Greydanus and Kobak, ICML 2024: 5,000 sequences of 40 points, 10
classes) is generated from its templates by the ``mnist1d`` package. On MNIST-1D,
unlike the 2-D sets, MLPs, CNNs and regularizers give clearly different results.

>>> from coursekit.data import load_dataset
>>> d = load_dataset("spirals", n=300, seed=0)
>>> d.X_train.shape[1], d.n_classes
(2, 3)
>>> train_loader = d.loader("train", batch_size=32)
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

DATASETS = ("spirals", "moons", "blobs", "curve", "digits", "mnist1d")
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

# -- MNIST-1D --------------------------------------------------------------------------------
#: Environment variable naming where generated MNIST-1D arrays are kept ("off" keeps none on disk).
CACHE_ENV = "COURSEKIT_CACHE_DIR"
#: mnist1d's own seed for its reference data set (the paper's); load_dataset's ``seed`` only splits it.
MNIST1D_SEED = 42
# get_dataset_args fields that load_dataset sets itself, from n and test_fraction
_MNIST1D_FIXED = ("num_samples", "train_split", "seed", "url")
_MNIST1D_MEMORY: dict[str, dict[str, np.ndarray]] = {}


def _cache_dir() -> str | None:
    where = os.environ.get(CACHE_ENV, "").strip()
    if where.lower() == "off":
        return None
    if where:
        return where
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "coursekit")


def _mnist1d_generate(args: dict) -> dict[str, np.ndarray]:
    """Run mnist1d's generator (never its downloader) and leave the caller's RNGs as they were.

    ``make_dataset`` reseeds Python's and NumPy's global generators; we restore them,
    so loading the data does not change what a seeded notebook draws next.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    full = get_dataset_args(as_dict=True)
    unknown = sorted(set(args) - set(full))
    if unknown:
        allowed = ", ".join(k for k in full if k not in _MNIST1D_FIXED)
        raise TypeError(f"bad generator argument for 'mnist1d': {unknown}; allowed: {allowed}")
    full.update(args)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(_Args(full))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
            "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}


class _Args:
    """mnist1d reads its settings as attributes."""

    def __init__(self, d: dict):
        self.__dict__.update(d)


def mnist1d_arrays(n: int = 5000, test_fraction: float = 0.2, **overrides) -> dict[str, np.ndarray]:
    """MNIST-1D as NumPy arrays ``x`` [N_train, 40], ``y``, ``x_test``, ``y_test``, generated offline.

    The sequences are mnist1d's own (``make_dataset`` with its seed 42, ``n``
    examples, the last ``test_fraction`` of them for testing); ``overrides`` change
    other fields of ``mnist1d.data.get_dataset_args()``, such as ``iid_noise_scale``.
    Generation is deterministic and takes a few seconds, so the arrays are kept in
    this process and on disk (in ``$COURSEKIT_CACHE_DIR``, default ``~/.cache/coursekit``;
    ``COURSEKIT_CACHE_DIR=off`` keeps nothing on disk). Returned arrays are read-only.

    >>> mnist1d_arrays()["x"].shape                       # doctest: +SKIP
    (4000, 40)
    """
    for bad in _MNIST1D_FIXED:
        if bad in overrides:
            raise TypeError(f"{bad!r} is set by load_dataset (n, test_fraction); "
                            "pass other fields of mnist1d's get_dataset_args")
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("mnist1d")
    except PackageNotFoundError:
        raise ImportError("MNIST-1D needs the mnist1d package: pip install mnist1d") from None
    args = {"num_samples": n, "train_split": 1.0 - test_fraction, "seed": MNIST1D_SEED, **overrides}
    key = json.dumps({"mnist1d": package, **args}, sort_keys=True, default=str)
    arrays = _MNIST1D_MEMORY.get(key)
    if arrays is None:
        arrays = _disk_load(key)
        if arrays is None:
            arrays = _mnist1d_generate(args)
            _disk_save(key, arrays)
        for a in arrays.values():
            a.flags.writeable = False
        _MNIST1D_MEMORY[key] = arrays
    return arrays


def _disk_path(key: str) -> str | None:
    where = _cache_dir()
    return None if where is None else os.path.join(
        where, f"mnist1d-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz")


def _disk_load(key: str) -> dict[str, np.ndarray] | None:
    path = _disk_path(key)
    if path is None or not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != key:
                return None
            return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache file is regenerated, and replaced below


def _disk_save(key: str, arrays: dict[str, np.ndarray]) -> None:
    path = _disk_path(key)
    if path is None:
        return
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(tmp, key=np.array(key), **arrays)
        os.replace(tmp, path)  # atomic: parallel kernels never read half a file
    except OSError:
        pass  # a read-only home only costs the next kernel a regeneration
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_dataset(name: str, n: int | None = None, seed: int = 0,
                 val_fraction: float = 0.2, test_fraction: float = 0.2,
                 standardize: bool = False, **kwargs) -> Dataset:
    """Build one of the course's data sets, split into train / validation / test.

    ``name`` is one of ``'spirals'``, ``'moons'``, ``'blobs'``, ``'curve'`` (1-D
    regression), ``'digits'`` or ``'mnist1d'``. ``n`` is the total number of examples
    (default 600 for synthetic sets, all 1,797 for digits, 5,000 for MNIST-1D). Extra
    keyword arguments (``noise``, ``classes``, ...) go to the generator.

    MNIST-1D's sequences are always mnist1d's reference set (its seed 42, so results
    compare with the paper's), and its test split is the paper's test set (the last
    1,000 of 5,000); ``seed`` picks which of the other examples are held out for
    validation. With the defaults that is 3,000 / 1,000 / 1,000; ``val_fraction=0``
    trains on all 4,000 as the paper does. Each sequence is a row of 40 features;
    a ``Conv1d`` model starts with ``nn.Unflatten(1, (1, 40))``.

    >>> load_dataset("digits", seed=0).X_train.shape
    torch.Size([1079, 64])
    >>> load_dataset("mnist1d").X_train.shape               # doctest: +SKIP
    torch.Size([3000, 40])
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
    if name == "mnist1d":
        return _load_mnist1d(n, rng, val_fraction, test_fraction, standardize, kwargs)
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


def _load_mnist1d(n: int | None, rng: np.random.Generator, val_fraction: float, test_fraction: float,
                  standardize: bool, kwargs: dict) -> Dataset:
    n = 5000 if n is None else n
    if n % 10:
        raise ValueError(f"n must be a multiple of 10 for 'mnist1d' (the same count per class); got {n}")
    d = mnist1d_arrays(n, test_fraction, **kwargs)
    x, y = d["x"], d["y"]
    n_val = int(n * val_fraction)
    if n_val >= len(x):
        raise ValueError("val_fraction + test_fraction must be below 1 so that some data is left to train on")
    order = rng.permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    t = lambda a, dtype=torch.float32: torch.tensor(a, dtype=dtype)  # noqa: E731  (a copy: arrays are shared)
    ds = Dataset(name="mnist1d", task="classification",
                 X_train=t(x[train]), y_train=t(y[train], torch.long),
                 X_val=t(x[val]), y_val=t(y[val], torch.long),
                 X_test=t(d["x_test"]), y_test=t(d["y_test"], torch.long), n_classes=10)
    return ds.standardize() if standardize else ds


def plot_examples(data: Dataset, per_class: int = 3, split: str = "train", classes: int | None = None):
    """A figure with ``per_class`` examples of each class: sequences as curves (MNIST-1D),
    8x8 images for the digits. Standardised data is drawn in its original units.

    >>> fig = plot_examples(load_dataset("mnist1d"), per_class=3)   # doctest: +SKIP
    """
    from .plots import PALETTE, new_figure  # plots imports train, which imports this module

    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a coursekit Dataset (see load_dataset); got {type(data).__name__}")
    if data.task != "classification":
        raise ValueError(f"plot_examples draws a classification data set; {data.name!r} is a regression set")
    if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"per_class must be a positive int; got {per_class!r}")
    X, y = data.split(split)
    if data.mean is not None:
        X = X * data.std + data.mean
    X, y = X.cpu(), y.cpu()
    k = data.n_classes if classes is None else classes
    picks = [(c, (y == c).nonzero().flatten()[:per_class]) for c in range(k)]
    if data.name == "digits":
        fig, axes = new_figure(0.8 * k, 0.8 * per_class + 0.4, ncols=k, nrows=per_class, squeeze=False)
        fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.3 / (0.8 * per_class + 0.4),
                            wspace=0.1, hspace=0.1)
        for c, idx in picks:
            for r in range(per_class):
                ax = axes[r][c]
                ax.set_axis_off()
                if r < len(idx):
                    ax.imshow(X[idx[r]].reshape(8, 8).numpy(), cmap="gray_r")
            axes[0][c].set_title(str(c), fontsize=9)
        return fig
    if data.n_features < 3:
        raise ValueError(f"plot_examples draws sequences or digit images; {data.name!r} has "
                         f"{data.n_features} features (plot it as points instead)")
    cols = min(k, 5)
    rows = -(-k // cols)
    fig, axes = new_figure(1.5 * cols + 0.6, 1.5 * rows + 0.5, ncols=cols, nrows=rows, squeeze=False,
                           sharex=True, sharey=True)
    t = np.arange(data.n_features)
    for c, idx in picks:
        ax = axes[c // cols][c % cols]
        for j, i in enumerate(idx.tolist()):
            ax.plot(t, X[i].numpy(), color=PALETTE[j % len(PALETTE)], lw=1.2)
        ax.set_title(f"class {c}", fontsize=9)
    for j in range(k, rows * cols):
        axes[j // cols][j % cols].set_axis_off()
    fig.supxlabel("position in the sequence", fontsize=9)
    return fig
