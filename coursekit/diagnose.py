"""Read a learning curve like a practitioner: what went wrong, and what to try next.

:func:`diagnose` looks at a run's per-epoch train and validation losses (and
its learning rate and per-step losses, when the history has them) and returns
a :class:`Diagnosis` with a label, the evidence it used and a suggested fix.
The rules are simple, explicit heuristics, checked in order of severity: they
are meant to be read (``diagnose`` is short), not trusted blindly.

>>> from coursekit.diagnose import diagnose
>>> curve = {"train_loss": [2.3, 1.1, 0.6, 0.3, 0.15, 0.08, 0.04, 0.02],
...          "val_loss":   [2.3, 1.2, 0.8, 0.7, 0.75, 0.85, 0.95, 1.05]}
>>> diagnose(curve).label
'overfitting'

:func:`make_gallery` trains the small gallery of runs (one per diagnosis) that
chapter 10 shows and the tests check, in a few seconds on a CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

LABELS = ("diverging", "oscillating", "bad_init", "decayed_too_early", "overfitting",
          "lr_too_low", "underfitting", "healthy")

_PROBLEM = {
    "diverging": "learning rate too high: the loss diverges",
    "oscillating": "learning rate too high: the loss bounces and stalls",
    "bad_init": "bad initialization: a flat plateau at the start",
    "decayed_too_early": "learning rate decayed too early",
    "overfitting": "overfitting: a growing train/validation gap",
    "lr_too_low": "learning rate too low: slow, steady progress",
    "underfitting": "underfitting: both losses high, no gap",
    "healthy": "healthy run",
}
_FIX = {
    "diverging": "divide the learning rate by 3 to 10 (or add warm-up / gradient clipping)",
    "oscillating": "lower the learning rate by about 3x, or decay it",
    "bad_init": "use a scaled initialization (He for ReLU, Xavier for tanh) or batch norm",
    "decayed_too_early": "decay later or more gently (e.g. cosine over the whole run)",
    "overfitting": "stop early at the best validation epoch, add weight decay / dropout, or get more data",
    "lr_too_low": "raise the learning rate by 3 to 10x (or train much longer)",
    "underfitting": "use a bigger model (wider or deeper) or train longer with a higher learning rate",
    "healthy": "nothing to fix; train longer only if validation loss is still falling",
}


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` concluded: ``label`` (one of :data:`LABELS`), ``problem``,
    the ``evidence`` it read off the curve, and a suggested ``fix``."""

    label: str
    problem: str
    evidence: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}\n  evidence: {self.evidence}\n  try: {self.fix}"


def _column(history, name: str) -> list[float]:
    try:
        values = history[name]
    except (KeyError, TypeError):
        return []
    return [float(v) for v in values]


def _verdict(label: str, evidence: str) -> Diagnosis:
    return Diagnosis(label, _PROBLEM[label], evidence, _FIX[label])


def diagnose(history) -> Diagnosis:
    """Suggest what went wrong in a run, from its :class:`~coursekit.train.History`
    (or any mapping with ``'train_loss'`` and ``'val_loss'`` lists, one value per epoch;
    ``'lr'`` and ``'step_loss'`` are used when present).

    >>> print(diagnose({"train_loss": [2.3, 2.29, 2.28, 2.27, 2.26, 2.25],
    ...                 "val_loss": [2.3, 2.29, 2.28, 2.27, 2.26, 2.25]}).label)
    lr_too_low
    """
    train, val = _column(history, "train_loss"), _column(history, "val_loss")
    steps, lr = _column(history, "step_loss"), _column(history, "lr")
    if len(train) < 4:
        raise ValueError(f"diagnose needs at least 4 epochs of train_loss; got {len(train)}")
    if val and len(val) != len(train):
        raise ValueError(f"val_loss must have one value per epoch ({len(train)}); got {len(val)}")
    n = len(train)
    start = steps[0] if steps and math.isfinite(steps[0]) else train[0]   # the loss before learning
    seen = steps or train

    # 1. Diverging: NaN/inf, an epoch far above the starting loss, or ending worse than it started.
    if not all(math.isfinite(v) for v in seen + train):
        return _verdict("diverging", "the loss became NaN or infinite")
    if max(train) > 3 * start or train[-1] > 1.05 * start:
        return _verdict("diverging", f"the loss rose to {max(train):.3g} from {start:.3g} "
                                     f"and ends at {train[-1]:.3g}")
    best = min(train)
    drop = start - best                        # how much the run learned at all
    high = train[-1] > 0.25 * start            # still far from a good loss?

    # 2. Oscillating: the epoch loss keeps going *up* by visible amounts and ends high.
    rises = sum(b - a > 0.005 * start for a, b in zip(train, train[1:]))
    if rises >= max(3, n // 10) and high:
        return _verdict("oscillating", f"the training loss rose in {rises} of {n - 1} epochs "
                                       f"and ends at {train[-1]:.3g}")

    # 3. Bad init: nothing happens for the first fifth of training, then it learns.
    k = max(2, n // 5)
    if drop > 0.3 * start and start - min(train[:k + 1]) < 0.05 * drop:
        late = next(i for i, v in enumerate(train) if start - v > 0.1 * drop)
        return _verdict("bad_init", f"the loss stayed flat at {start:.3g} until epoch {late}, "
                                    "then started to fall")

    # 4. Learning rate decayed too early: lr fell 10x in the first half, and progress stopped with it.
    if len(lr) == n and lr[0] > 0:
        cut = next((i for i, v in enumerate(lr) if v < 0.1 * lr[0]), None)
        if cut is not None and cut < n // 2 and high:
            after = train[cut] - train[-1]
            if after < 0.05 * (start - train[cut]):
                return _verdict("decayed_too_early", f"the learning rate fell to {lr[cut]:.2g} "
                                f"at epoch {cut} and the loss froze at {train[-1]:.3g}")

    # 5. Overfitting: validation loss turns up while training loss keeps falling.
    if val:
        i_best = min(range(n), key=lambda i: val[i])
        rising = val[-1] > 1.1 * val[i_best] and i_best < n - 2 and train[-1] < train[i_best]
        gap = val[-1] - train[-1]
        if rising or (gap > 0.2 * start and val[-1] > 3 * train[-1]):
            return _verdict("overfitting", f"validation loss was lowest ({val[i_best]:.3g}) at epoch "
                            f"{i_best} and ends at {val[-1]:.3g}, while training loss fell to {train[-1]:.3g}")

    # 6/7. Still high at the end: still falling steadily (too slow), or flat (too small a model).
    if high:
        q = max(1, n // 4)
        recent = train[-q - 1] - train[-1]
        if drop <= 0 or recent > 0.15 * drop:
            return _verdict("lr_too_low", f"after {n} epochs the loss is {train[-1]:.3g} "
                            f"(from {start:.3g}) and still falling at the same pace")
        gap = (val[-1] - train[-1]) if val else 0.0
        return _verdict("underfitting", f"the loss levelled off at {train[-1]:.3g} (from {start:.3g}) "
                        f"with a train/validation gap of only {gap:.2g}")
    return _verdict("healthy", f"the loss fell from {start:.3g} to {train[-1]:.3g}"
                    + (f"; validation ends at {val[-1]:.3g}, near its best" if val else ""))


# -- the gallery ---------------------------------------------------------------------------
#: One small digits run per diagnosis: (expected label, mlp kwargs, optimizer, lr, training kwargs).
GALLERY: dict[str, dict] = {
    "healthy":           dict(label="healthy", model={}, opt="momentum", lr=0.05),
    "lr far too high":   dict(label="diverging", model=dict(activation="tanh"), opt="sgd", lr=20.0),
    "lr too high":       dict(label="oscillating", model={}, opt="adam", lr=0.3),
    "lr too low":        dict(label="lr_too_low", model={}, opt="sgd", lr=0.003),
    "bad init":          dict(label="bad_init", model=dict(depth=3, activation="tanh", init="normal",
                                                           init_std=0.02), opt="momentum", lr=0.05),
    "overfitting":       dict(label="overfitting", model=dict(depth=2, width=256), opt="adam", lr=0.003,
                              n_train=60, batch_size=64, epochs=40),
    "underfitting":      dict(label="underfitting", model=dict(width=2), opt="momentum", lr=0.05),
    "decayed too early": dict(label="decayed_too_early", model={}, opt="momentum", lr=0.05, step_decay=4),
}


def train_recipe(recipe: Mapping, data=None, epochs: int = 30, seed: int = 0, device=None):
    """Train one :data:`GALLERY` recipe on digits and return its History."""
    from .data import load_dataset
    from .device import get_device, seed_everything
    from .models import mlp
    from .train import Trainer, make_optimizer

    device = device or get_device()
    data = data if data is not None else load_dataset("digits", seed=0)
    if recipe.get("n_train"):
        data = data.subset(recipe["n_train"], seed=seed)
    seed_everything(seed)
    model = mlp(64, 10, **{"depth": 1, "width": 64, **recipe["model"]}).to(device)
    opt = make_optimizer(recipe["opt"], model.parameters(), recipe["lr"])
    sched = (torch.optim.lr_scheduler.StepLR(opt, recipe["step_decay"], 0.1)
             if recipe.get("step_decay") else None)
    trainer = Trainer(model, data, opt, scheduler=sched, batch_size=recipe.get("batch_size", 128),
                      seed=seed, progress=False)
    return trainer.fit(recipe.get("epochs", epochs))


def make_gallery(names: Sequence[str] | None = None, seed: int = 0, device=None) -> dict:
    """Train the gallery runs (all, or ``names``); returns ``{name: History}``.

    >>> runs = make_gallery(["healthy"])                     # doctest: +SKIP
    >>> diagnose(runs["healthy"]).label                      # doctest: +SKIP
    'healthy'
    """
    from .data import load_dataset

    names = list(GALLERY) if names is None else list(names)
    unknown = [n for n in names if n not in GALLERY]
    if unknown:
        raise ValueError(f"names must be among {', '.join(map(repr, GALLERY))}; got {unknown}")
    data = load_dataset("digits", seed=0)
    return {n: train_recipe(GALLERY[n], data, seed=seed, device=device) for n in names}
