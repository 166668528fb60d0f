"""Seeds as a first-class axis: summarise K runs, and compare two settings over the same seeds.

One run of a network is one draw from a random process (initial weights, batch
order, dropout masks). A chapter may say that a technique *helps* only when the
difference it makes is larger than that randomness. The honest way to measure
it: train both settings with the same seeds, take the difference seed by seed
(a *paired* comparison, which cancels what the two runs share), and give the
mean difference with its confidence interval (Student's t). If the interval
crosses zero, the measurement cannot tell the two apart.

>>> from coursekit.stats import summarize, compare, verdict
>>> none = [0.61, 0.64, 0.60, 0.63, 0.62]          # test accuracy, seeds 0..4
>>> dropout = [0.65, 0.67, 0.63, 0.66, 0.66]       # the same seeds, dropout 0.5
>>> print(summarize(dropout, scale=100))
65.4 ± 1.5 (mean ± SD, 5 seeds)
>>> print(verdict(dropout, none, "dropout 0.5", "none"))
dropout 0.5 vs none: +3.4 ± 0.7 points (5 seeds, 95% CI) -> helps

**One "±" convention for the whole book.** After a mean of one setting, "±" is the
standard deviation between seeds (``mean ± SD``): how much one run varies. After a
difference between two settings, it is the half-width of the 95% confidence interval of
the mean paired difference (``95% CI``): how well the runs pin the effect down. Every
printed line says which.

**Families of comparisons.** A chapter that compares seven schedules with one baseline
makes seven tests; at 95% each, one of them is "significant" by chance a third of the
time. :func:`verdicts` decides a family together with Holm's step-down correction, which
keeps the chance of any false "helps" or "hurts" in the family at 5%:

>>> lines = verdicts({"warm-up": ([0.74, 0.75, 0.73, 0.76, 0.74], [0.71, 0.72, 0.70, 0.72, 0.71]),
...                   "cosine": ([0.72, 0.70, 0.73, 0.71, 0.72], [0.71, 0.72, 0.70, 0.72, 0.71])},
...                  baseline="constant")
>>> for line in lines: print(line)
warm-up vs constant: +3.2 ± 0.6 points (5 seeds, 95% CI; Holm, 2 tests) -> helps
cosine vs constant: +0.4 ± 2.4 points (5 seeds, 95% CI; Holm, 2 tests) -> no clear difference

A checked output (one that nbval compares on every machine) prints what holds on any
CPU: the outcome, not the digits, which move with the float rounding of the CPU that
trained the network. ``Comparison.outcome_line`` gives that line:

>>> c = compare([0.74, 0.75, 0.73, 0.76, 0.74], [0.71, 0.72, 0.70, 0.72, 0.71])
>>> c.outcome_line("warm-up vs constant")
'warm-up vs constant: helps (5 seeds, 95% CI excludes 0)'

With a :class:`~coursekit.sweep.Sweep`, :func:`seed_grid` lays the settings and
seeds out along the K models, and ``values.view(settings, seeds)`` takes them apart.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Values = Sequence[float] | np.ndarray  # or a 1-D torch tensor


def _as_runs(name: str, values, min_n: int = 1) -> np.ndarray:
    """``values`` as a float64 vector of finite numbers, one per run."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers (one per seed); got {type(values).__name__}") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be one number per seed (1-D); got shape {tuple(x.shape)}")
    if len(x) < min_n:
        raise ValueError(f"{name} needs at least {min_n} runs; got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite; run {int(np.flatnonzero(~np.isfinite(x))[0])} is {x[~np.isfinite(x)][0]}")
    return x


def _t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student-t critical value, e.g. 2.776 for 95% and 4 degrees of freedom."""
    from scipy.stats import t  # scipy comes with scikit-learn

    return float(t.ppf(0.5 + confidence / 2, dof))


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95; got {confidence!r}")


@dataclass(frozen=True)
class Summary:
    """K runs of one setting: ``mean``, ``std`` (the spread between seeds, n-1 in the
    denominator) and the ``low``/``high`` ends of the confidence interval of the mean."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float
    digits: int = 1

    def __str__(self) -> str:
        d = self.digits
        if self.n == 1:
            return f"{self.mean:.{d}f} (1 seed)"
        return f"{self.mean:.{d}f} ± {self.std:.{d}f} (mean ± SD, {self.n} seeds)"


def summarize(values: Values, scale: float = 1.0, confidence: float = 0.95, digits: int | None = None) -> Summary:
    """Mean and spread of K runs of one setting (``scale=100`` turns accuracies into percent).

    ``str()`` of the result is a line to print, rounded to ``digits`` decimals
    (default: 1 when scaled, else 3).

    >>> str(summarize([0.5, 0.7]))
    '0.600 ± 0.141 (mean ± SD, 2 seeds)'
    """
    _check_confidence(confidence)
    x = _as_runs("values", values) * scale
    n = len(x)
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = _t_quantile(confidence, n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    mean = float(x.mean())
    digits = (1 if scale != 1.0 else 3) if digits is None else digits
    return Summary(mean, std, mean - half, mean + half, n, confidence, digits)


@dataclass(frozen=True)
class Comparison:
    """Setting a minus setting b over the same seeds: the mean of the per-seed
    differences ``diff``, its confidence interval ``[low, high]`` and their ``spread``
    (the standard deviation of the per-seed differences).

    ``p`` is the two-sided paired t-test's p-value. In a family of ``family`` comparisons
    (:func:`compare_family`), ``p_holm`` is its Holm-adjusted p-value and the decision
    (``clear``, ``outcome``) is taken on it; alone, the decision is the interval's."""

    diff: float
    half_width: float
    spread: float
    n: int
    confidence: float
    higher_is_better: bool = True
    p: float = math.nan
    p_holm: float | None = None
    family: int = 1

    @property
    def low(self) -> float:
        return self.diff - self.half_width

    @property
    def high(self) -> float:
        return self.diff + self.half_width

    @property
    def clear(self) -> bool:
        """True when the measurement tells the settings apart: the interval excludes zero
        (alone), or the Holm-adjusted p-value is below 1 - confidence (in a family)."""
        if self.p_holm is not None:
            return self.p_holm < 1 - self.confidence and self.diff != 0
        return self.low > 0 or self.high < 0

    @property
    def label(self) -> str:
        """What the interval is, e.g. ``'5 seeds, 95% CI'`` or ``'5 seeds, 95% CI; Holm, 7 tests'``."""
        holm = f"; Holm, {self.family} tests" if self.p_holm is not None else ""
        return f"{self.n} seeds, {self.confidence:.0%} CI{holm}"

    def line(self, name: str, scale: float = 100.0, unit: str = "points", digits: int = 1) -> str:
        """The comparison as one printed line, with its numbers: ``'name: +3.4 ± 0.7 points (...) -> helps'``."""
        unit = f" {unit}" if unit else ""
        return (f"{name}: {self.diff * scale:+.{digits}f} ± {self.half_width * scale:.{digits}f}{unit} "
                f"({self.label}) -> {self.outcome}")

    def outcome_line(self, name: str) -> str:
        """The comparison's outcome without its digits, for a checked output that must read the
        same on every CPU: ``'name: helps (5 seeds, 95% CI excludes 0)'``."""
        if self.p_holm is not None:
            return f"{name}: {self.outcome} ({self.n} seeds; Holm, {self.family} tests)"
        return f"{name}: {self.outcome} ({self.n} seeds, {self.confidence:.0%} CI {'excludes' if self.clear else 'includes'} 0)"

    @property
    def outcome(self) -> str:
        """``'helps'``, ``'hurts'`` or ``'no clear difference'`` (for setting a, relative to b)."""
        if not self.clear:
            return "no clear difference"
        return "helps" if (self.diff > 0) == self.higher_is_better else "hurts"


def compare(a: Values, b: Values, confidence: float = 0.95, higher_is_better: bool = True) -> Comparison:
    """Paired comparison of two settings run with the same seeds (run i of ``a`` and of ``b``
    share seed i). Needs at least two seeds.

    >>> c = compare([0.80, 0.82, 0.79], [0.78, 0.80, 0.77])
    >>> round(c.diff, 3), c.outcome
    (0.02, 'helps')
    """
    _check_confidence(confidence)
    x, y = _as_runs("a", a, min_n=2), _as_runs("b", b, min_n=2)
    if len(x) != len(y):
        raise ValueError(f"a and b must hold one run per seed, the same seeds; got {len(x)} and {len(y)} runs")
    d = x - y
    n = len(d)
    spread = float(d.std(ddof=1))
    half = _t_quantile(confidence, n - 1) * spread / math.sqrt(n)
    return Comparison(float(d.mean()), half, spread, n, confidence, higher_is_better, _p_paired(d))


def _p_paired(d: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test that the mean of ``d`` is zero."""
    from scipy.stats import t

    mean, sd, n = float(d.mean()), float(d.std(ddof=1)), len(d)
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm(p: Values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given.

    Reject every hypothesis whose adjusted p-value is below alpha: the chance of any false
    rejection in the family stays at most alpha, whatever the dependence between the tests.

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = _as_runs("p", p)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"p must hold p-values in [0, 1]; got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def compare_family(pairs: dict[str, tuple[Values, Values]], confidence: float = 0.95,
                   higher_is_better: bool = True) -> dict[str, Comparison]:
    """Paired comparisons decided together, with Holm's correction over the family.

    ``pairs`` maps a name to ``(a, b)``, each run with the same seeds. Each returned
    :class:`Comparison` keeps its own interval, and its decision uses the Holm-adjusted
    p-value (one comparison alone is decided as :func:`compare` decides it).
    """
    if not isinstance(pairs, dict) or not pairs:
        raise ValueError(f"pairs must be a non-empty dict of name -> (a, b); got {pairs!r}")
    for name, ab in pairs.items():
        if not (isinstance(ab, (tuple, list)) and len(ab) == 2):
            raise ValueError(f"pairs[{name!r}] must be a pair (a, b) of runs; got {type(ab).__name__}")
    family = {name: compare(a, b, confidence, higher_is_better) for name, (a, b) in pairs.items()}
    if len(family) == 1:
        return family
    adjusted = holm([c.p for c in family.values()])
    return {name: dataclasses.replace(c, p_holm=float(q), family=len(family))
            for (name, c), q in zip(family.items(), adjusted)}


def verdicts(pairs: dict[str, tuple[Values, Values]], baseline: str | None = None, scale: float = 100.0,
             unit: str = "points", digits: int = 1, confidence: float = 0.95,
             higher_is_better: bool = True) -> list[str]:
    """:func:`verdict` for a family of comparisons, Holm-corrected: one line each.

    Keys of ``pairs`` name setting a; with ``baseline`` each line reads "a vs baseline".
    See the module's example.
    """
    family = compare_family(pairs, confidence, higher_is_better)
    return [c.line(f"{name} vs {baseline}" if baseline else name, scale, unit, digits)
            for name, c in family.items()]


def verdict(a: Values, b: Values, name_a: str = "a", name_b: str = "b", scale: float = 100.0,
            unit: str = "points", digits: int = 1, confidence: float = 0.95,
            higher_is_better: bool = True) -> str:
    """One printed line that says whether setting a beats setting b, by more than the seeds' noise.

    The defaults suit accuracies in [0, 1] (differences in percentage points); for
    losses pass ``scale=1, unit="", higher_is_better=False``. The decision is taken
    on the unrounded interval; the printed numbers are rounded to ``digits``.

    >>> verdict([0.70, 0.72, 0.69], [0.70, 0.69, 0.71], "wd 1e-3", "wd 0")
    'wd 1e-3 vs wd 0: +0.3 ± 6.3 points (3 seeds, 95% CI) -> no clear difference'
    """
    return compare(a, b, confidence, higher_is_better).line(f"{name_a} vs {name_b}", scale, unit, digits)


def seed_grid(seeds: int | Sequence[int] = 5, **settings: Sequence) -> dict[str, list]:
    """Every combination of ``settings``, each run once per seed, laid out for a K-model sweep.

    The seed varies fastest, so the values a sweep returns, ``[K]``, reshape to
    ``[settings..., seeds]``. ``seeds`` is a count (seeds 0..n-1) or the seeds themselves.

    >>> g = seed_grid(3, weight_decay=[0.0, 1e-3])
    >>> g["weight_decay"], g["seed"]
    ([0.0, 0.0, 0.0, 0.001, 0.001, 0.001], [0, 1, 2, 0, 1, 2])
    >>> # Sweep(model_fn, K=len(g["seed"]), **g).fit(...).val_acc[:, -1].view(2, 3)
    """
    if isinstance(seeds, bool) or not isinstance(seeds, (int, Sequence)) or isinstance(seeds, str):
        raise TypeError(f"seeds must be a count or a sequence of ints; got {seeds!r}")
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a positive count or a non-empty sequence of ints; got {seeds!r}")
    for name, values in settings.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"setting {name!r} must be a non-empty list of values; got {values!r}")
    if "seed" in settings:
        raise ValueError("pass the seeds as seeds=..., not as a setting")
    grid: dict[str, list] = {name: [] for name in settings}
    grid["seed"] = []
    for combo in itertools.product(*settings.values()):
        for s in seeds:
            for name, v in zip(settings, combo):
                grid[name].append(v)
            grid["seed"].append(s)
    return grid
