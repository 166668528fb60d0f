"""A small training loop with a per-epoch history and Keras-style callbacks.

It is built on ``torch.optim`` and ``torch.optim.lr_scheduler``; everything
follows the model's device. Batches are drawn from the trainer's own seeded
generator, so a run resumed from a :class:`ModelCheckpoint` continues bit for bit.

>>> from coursekit import load_dataset, mlp, Trainer, EarlyStopping
>>> data = load_dataset("moons", n=200, seed=0)
>>> model = mlp(2, 2, width=16)
>>> trainer = Trainer(model, data, torch.optim.SGD(model.parameters(), lr=0.1), batch_size=32)
>>> history = trainer.fit(epochs=3, callbacks=[EarlyStopping(patience=2)])
>>> len(history)
3
"""
from __future__ import annotations

import copy
import io
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import Dataset
from .device import live_mode

OPTIMIZERS = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "nesterov": torch.optim.SGD,
              "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def make_optimizer(name: str, params: Iterable, lr: float, **kwargs) -> torch.optim.Optimizer:
    """Build a ``torch.optim`` optimizer by name: sgd, momentum, nesterov, rmsprop, adam, adamw.

    >>> make_optimizer("momentum", nn.Linear(2, 1).parameters(), lr=0.1).defaults["momentum"]
    0.9
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}; got {name!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if name == "momentum":
        kwargs.setdefault("momentum", 0.9)
    if name == "nesterov":
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = True
    return OPTIMIZERS[name](params, lr=lr, **kwargs)


@dataclass
class History:
    """Per-epoch record of a run. ``history["val_loss"]`` returns one column."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    diverged: bool = False

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time")

    def __len__(self) -> int:
        return len(self.epoch)

    def __getitem__(self, key: str) -> list:
        if key not in self.COLUMNS and key != "step_loss":
            raise KeyError(f"history has columns {', '.join(self.COLUMNS)}, 'step_loss'; got {key!r}")
        return getattr(self, key)

    def append(self, **row: float) -> None:
        for k in self.COLUMNS:
            getattr(self, k).append(row[k])

    def best(self, monitor: str = "val_loss") -> tuple[int, float]:
        """(epoch, value) of the best ``monitor`` value: lowest loss or highest accuracy."""
        values = self[monitor]
        if not values:
            raise ValueError("history is empty: train for at least one epoch first")
        pick = max if monitor.endswith("acc") else min
        i = pick(range(len(values)), key=lambda j: values[j] if math.isfinite(values[j]) else
                 (-math.inf if pick is max else math.inf))
        return self.epoch[i], values[i]

    def to_dict(self) -> dict:
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


class Callback:
    """Base class: override the hooks you need. ``trainer.stop_training = True`` ends the run."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_epoch_end(self, trainer: "Trainer", logs: dict) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...
    def state_dict(self) -> dict:
        return {}
    def load_state_dict(self, state: dict) -> None: ...


def _mode_for(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be one of 'auto', 'min', 'max'; got {mode!r}")
    if mode == "auto":
        return "max" if monitor.endswith("acc") else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    As in Keras and Lightning, ``patience=10`` allows ten epochs without improvement
    and stops at the tenth; ``patience=0`` stops at the first.
    With ``restore_best=True`` the model's weights are put back to the best epoch's.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True):
        if monitor not in History.COLUMNS:
            raise ValueError(f"monitor must be one of {', '.join(History.COLUMNS)}; got {monitor!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0; got {patience!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0; got {min_delta!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode, self.restore_best = _mode_for(monitor, mode), restore_best
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.stopped_epoch = -1, 0, None
        self.best_weights: dict | None = None

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, logs):
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, logs["epoch"], 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = logs["epoch"]
                trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state):
        for k, v in state.items():
            setattr(self, k, v)


def atomic_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact: readers never see half a checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            buf = io.BytesIO()
            torch.save(obj, buf)
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ModelCheckpoint(Callback):
    """Save the full training state after epochs, atomically.

    The checkpoint holds the model, optimizer, scheduler, epoch, history, the
    callbacks' state and every RNG state, so :meth:`restore` followed by
    ``trainer.fit`` continues exactly as the uninterrupted run would have.
    With ``save_best_only=True`` a file is written only when ``monitor`` improves.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss", mode: str = "auto",
                 save_best_only: bool = False, every: int = 1):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int; got {every!r}")
        self.path, self.monitor, self.mode = Path(path), monitor, _mode_for(monitor, mode)
        self.save_best_only, self.every = save_best_only, every
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, trainer, logs):
        if self.save_best_only:
            v = logs[self.monitor]
            better = v < self.best if self.mode == "min" else v > self.best
            if not (math.isfinite(v) and better):
                return
            self.best = v
        elif logs["epoch"] % self.every:
            return
        atomic_save(trainer.state_dict(), self.path)

    def state_dict(self):
        return {"best": self.best}

    def load_state_dict(self, state):
        self.best = state["best"]

    @staticmethod
    def restore(trainer: "Trainer", path: str | os.PathLike) -> "Trainer":
        """Load a checkpoint written by this class into ``trainer`` and return it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; was ModelCheckpoint(path=...) given this path?")
        state = torch.load(path, map_location=trainer.device, weights_only=True)
        trainer.load_state_dict(state)
        return trainer


class LivePlot(Callback):
    """Redraw the learning curves after every ``every`` epochs in the notebook."""

    def __init__(self, every: int = 1, metrics: tuple[str, ...] = ("loss",)):
        self.every, self.metrics, self._handle = every, metrics, None

    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] % self.every:
            return
        from IPython.display import DisplayHandle, Image

        from .plots import plot_history, to_png

        # A PNG, not the Figure: it shows the same in every frontend, whatever the matplotlib backend.
        image = Image(to_png(plot_history(trainer.history, metrics=self.metrics)))
        if self._handle is None:
            self._handle = DisplayHandle()
            self._handle.display(image)
        else:
            self._handle.update(image)


def _rng_state(gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {"torch": torch.get_rng_state(), "batches": gen.get_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
             "python": [py_state[0], list(py_state[1]), py_state[2]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    gen.set_state(state["batches"].cpu())
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class Trainer:
    """Train ``model`` on a :class:`~coursekit.data.Dataset` with a torch optimizer.

    ``scheduler`` is a ``torch.optim.lr_scheduler`` object (or a function of the
    optimizer that builds one) stepped every epoch, or every batch with
    ``scheduler_interval="step"``. ``loss`` defaults to cross-entropy for
    classification and mean squared error for regression.
    """

    def __init__(self, model: nn.Module, data: Dataset, optimizer: torch.optim.Optimizer,
                 scheduler=None, loss: Callable | None = None, batch_size: int = 64,
                 scheduler_interval: str = "epoch", seed: int = 0, grad_clip: float | None = None,
                 progress: bool | str = "auto"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a coursekit Dataset (see load_dataset); got {type(data).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError("optimizer must be a torch.optim.Optimizer, e.g. "
                            f"torch.optim.SGD(model.parameters(), lr=0.1); got {type(optimizer).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step'; got {scheduler_interval!r}")
        self.model, self.optimizer = model, optimizer
        self.device = next(model.parameters()).device
        self.data = data.to(self.device)
        self.scheduler = scheduler(optimizer) if callable(scheduler) and not hasattr(scheduler, "step") else scheduler
        self.scheduler_interval, self.batch_size, self.grad_clip = scheduler_interval, batch_size, grad_clip
        self.loss_fn = loss or (F.cross_entropy if data.task == "classification" else F.mse_loss)
        self.generator = torch.Generator().manual_seed(seed)
        self.history, self.epoch, self.callbacks = History(), 0, []
        self.progress, self.stop_training = progress, False
        self._pending_cb_state: list[dict] = []  # callback states from a checkpoint, until fit() gets callbacks

    # -- one epoch -----------------------------------------------------------------
    def _train_epoch(self) -> tuple[float, float]:
        self.model.train()
        X, y = self.data.X_train, self.data.y_train
        perm = torch.randperm(len(X), generator=self.generator).to(self.device)
        total, correct, count = 0.0, 0, 0
        for start in range(0, len(X), self.batch_size):
            idx = perm[start:start + self.batch_size]
            xb, yb = X[idx], y[idx]
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            if self.scheduler is not None and self.scheduler_interval == "step":
                self.scheduler.step()
            lv = loss.item()
            self.history.step_loss.append(lv)
            total += lv * len(idx)
            count += len(idx)
            if self.data.task == "classification":
                correct += (out.argmax(1) == yb).sum().item()
        return total / count, (correct / count if self.data.task == "classification" else math.nan)

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> tuple[float, float]:
        """(loss, accuracy) on a split in eval mode; accuracy is NaN for regression."""
        X, y = self.data.split(split)
        if len(X) == 0:
            return math.nan, math.nan
        was_training = self.model.training
        self.model.eval()
        out = torch.cat([self.model(X[i:i + 4096]) for i in range(0, len(X), 4096)])
        self.model.train(was_training)
        loss = self.loss_fn(out, y).item()
        acc = (out.argmax(1) == y).float().mean().item() if self.data.task == "classification" else math.nan
        return loss, acc

    def fit(self, epochs: int, callbacks: Iterable[Callback] = ()) -> History:
        """Train until ``epochs`` epochs in total have run (a resumed trainer continues)."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be a positive int; got {epochs!r}")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be coursekit Callback objects; got {type(cb).__name__}")
        if callbacks:
            self.callbacks = callbacks
            for cb, state in zip(self.callbacks, self._pending_cb_state):
                cb.load_state_dict(state)
            self._pending_cb_state = []
        self.stop_training = False
        for cb in self.callbacks:
            cb.on_train_begin(self)
        bar = self._progress_bar(epochs)
        while self.epoch < epochs and not self.stop_training:
            t0 = time.perf_counter()
            train_loss, train_acc = self._train_epoch()
            val_loss, val_acc = self.evaluate("val")
            self.epoch += 1
            logs = dict(epoch=self.epoch, train_loss=train_loss, train_acc=train_acc,
                        val_loss=val_loss, val_acc=val_acc,
                        lr=self.optimizer.param_groups[0]["lr"], time=time.perf_counter() - t0)
            if self.scheduler is not None and self.scheduler_interval == "epoch":
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(val_loss)
                else:
                    self.scheduler.step()
            self.history.append(**logs)
            if not math.isfinite(train_loss):
                self.history.diverged = True
                self.stop_training = True
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if bar is not None:
            bar.close()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _progress_bar(self, epochs: int):
        show = self.progress
        if show == "auto":
            steps = (epochs - self.epoch) * math.ceil(len(self.data.X_train) / self.batch_size)
            show = live_mode() and steps >= 2000
        if not show:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=epochs, initial=self.epoch, desc="epochs", leave=False)

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "history": self.history.to_dict(), "rng": _rng_state(self.generator),
                "callbacks": [cb.state_dict() for cb in self.callbacks]}

    def load_state_dict(self, state: dict) -> None:
        missing = {"epoch", "model", "optimizer", "history", "rng"} - set(state)
        if missing:
            raise ValueError(f"not a coursekit checkpoint: missing {sorted(missing)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history = History.from_dict(state["history"])
        self.epoch = state["epoch"]
        _set_rng_state(state["rng"], self.generator)
        if self.callbacks:
            for cb, s in zip(self.callbacks, state.get("callbacks", [])):
                cb.load_state_dict(s)
        else:
            self._pending_cb_state = state.get("callbacks", [])


def fit(model: nn.Module, data: Dataset, epochs: int = 10, optimizer: str | torch.optim.Optimizer = "adam",
        lr: float = 1e-3, batch_size: int = 64, scheduler=None, callbacks: Iterable[Callback] = (),
        seed: int = 0, **optimizer_kwargs) -> History:
    """One-call training: ``fit(mlp(2, 3), load_dataset("spirals"), epochs=20, optimizer="adam")``."""
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else \
        make_optimizer(optimizer, model.parameters(), lr, **optimizer_kwargs)
    trainer = Trainer(model, data, opt, scheduler=scheduler, batch_size=batch_size, seed=seed)
    return trainer.fit(epochs, callbacks)
