"""Compare a reference answer with a student's answer, both already plain data.

The comparison is strict about types (a 0-d tensor is not a float, a list is not
a tuple), dtypes and shapes, and uses ``allclose``-style tolerances for numbers.
It never calls a method of a student object: both sides were decoded by
:mod:`coursekit.checks.plain` into fresh tensors, arrays and builtins.

>>> import torch
>>> from coursekit.checks.compare import compare
>>> compare(torch.ones(2), torch.ones(2)) is None
True
>>> compare(torch.ones(2), torch.ones(3)).reason
'wrong shape: expected (2,), got (3,)'

Custom comparisons (statistical checks of random draws) are written "pass only
if within tolerance" with :func:`within` and :func:`inside`, so that NaN fails;
and :func:`nonfinite` fails a NaN or infinity where the reference is finite
before any custom comparison runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .plain import Iterated, Opaque


@dataclass
class Mismatch:
    """Why two values differ. ``reason`` never shows the expected values; ``detail`` may."""
    where: str
    reason: str
    detail: str = ""

    def safe(self) -> str:
        """The message for hidden tests: where and why, without the reference values."""
        return f"{self.where}: {self.reason}" if self.where else self.reason

    def full(self) -> str:
        """The message for self-checks: also shows expected and actual values."""
        return self.safe() + (f"\n    {self.detail}" if self.detail else "")


def kind(x: Any) -> str:
    """A short type name used in messages, e.g. ``Tensor``, ``ndarray``, ``float``."""
    if isinstance(x, torch.Tensor):
        return "Tensor"
    if isinstance(x, np.ndarray):
        return "ndarray"
    if isinstance(x, Iterated):
        return "iterator"
    if isinstance(x, Opaque):
        return x.type_name
    return type(x).__name__


def _short(x: Any) -> str:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        with np.printoptions(precision=4, threshold=20, edgeitems=3):
            text = np.array2string(np.asarray(x), separator=", ")
        return text.replace("\n", " ")
    text = repr(x)
    return text if len(text) <= 200 else text[:200] + "..."


def _as_f64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def _numbers(expected: Any, actual: Any, where: str, rtol: float, atol: float) -> Mismatch | None:
    e, a = _as_f64(expected), _as_f64(actual)
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=False)
    if not bad.any():
        return None
    err = np.abs(a - e)
    err = np.where(np.isnan(err), np.inf, err)
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), e.shape)) if e.ndim else ()
    at = f" at index {idx}" if idx else ""
    return Mismatch(where, f"wrong values: {int(bad.sum())} of {bad.size} differ{at}, max abs error "
                           f"{float(err[bad].max()):.3g} (allowed {atol:g} + {rtol:g}*|expected|)",
                    f"expected {_short(expected)}, got {_short(actual)}")


def compare(expected: Any, actual: Any, rtol: float = 1e-5, atol: float = 1e-7,
            where: str = "") -> Mismatch | None:
    """Return ``None`` when ``actual`` matches ``expected``, else a :class:`Mismatch`."""
    ke, ka = kind(expected), kind(actual)
    numeric = (int, float)
    if type(expected) in numeric and type(actual) in numeric and type(expected) is not bool:
        if type(expected) is float or type(actual) is int:  # an int is fine where a float is expected
            return _numbers(expected, actual, where, rtol, atol)
    if ke != ka:
        return Mismatch(where, f"wrong type: expected {ke}, got {ka}", f"got {_short(actual)}")
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        if tuple(expected.shape) != tuple(actual.shape):
            return Mismatch(where, f"wrong shape: expected {tuple(expected.shape)}, got {tuple(actual.shape)}")
        if expected.dtype != actual.dtype:
            return Mismatch(where, f"wrong dtype: expected {expected.dtype}, got {actual.dtype}")
        if expected.dtype in (torch.bool, np.bool_) or not (
                torch.is_floating_point(torch.as_tensor(np.asarray(expected)[:0]))):
            ea, aa = np.asarray(expected), np.asarray(actual)
            if not np.array_equal(ea, aa):
                n = int((ea != aa).sum())
                return Mismatch(where, f"wrong values: {n} of {ea.size} differ", f"expected {_short(ea)}, got {_short(aa)}")
            return None
        return _numbers(expected, actual, where, rtol, atol)
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(actual):
            return Mismatch(where, f"wrong length: expected {len(expected)} items, got {len(actual)}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            m = compare(e, a, rtol, atol, f"{where}[{i}]")
            if m:
                return m
        return None
    if isinstance(expected, dict):
        if set(expected) != set(actual):
            missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
            return Mismatch(where, f"wrong keys: missing {missing}, unexpected {extra}")
        for k in expected:
            m = compare(expected[k], actual[k], rtol, atol, f"{where}[{k!r}]")
            if m:
                return m
        return None
    if isinstance(expected, Opaque):
        return None
    if isinstance(expected, float):
        return _numbers(expected, actual, where, rtol, atol)
    if expected != actual:
        return Mismatch(where, "wrong value", f"expected {_short(expected)}, got {_short(actual)}")
    return None


def _leaves(x: Any):
    """Yield ``(path, value)`` for every number-like leaf of a decoded answer."""
    if isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            for p, leaf in _leaves(v):
                yield (i, *p), leaf
    elif isinstance(x, dict):
        for k, v in x.items():
            for p, leaf in _leaves(v):
                yield (k, *p), leaf
    elif type(x) is float or (isinstance(x, (torch.Tensor, np.ndarray)) and x.dtype not in (torch.bool, np.bool_)):
        yield (), x


def _not_finite(x: Any) -> np.ndarray:
    a = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)):
        return np.zeros(a.shape, dtype=bool)
    return ~np.isfinite(a)


def _at(x: Any, path: tuple) -> Any:
    for k in path:
        try:
            x = x[k]
        except (KeyError, IndexError, TypeError):
            return None
    return x


def nonfinite(expected: Any, actual: Any, where: str = "") -> Mismatch | None:
    """A :class:`Mismatch` when ``actual`` holds NaN or infinity where ``expected`` is finite.

    Leaves are paired by position (list index, dict key); a non-finite value with no
    finite counterpart in ``expected`` at the same place also fails, unless the
    reference is non-finite there too.

    >>> nonfinite([1.0], [float("nan")]).reason
    'nan where a finite number is expected'
    >>> nonfinite([float("nan")], [float("nan")]) is None
    True
    """
    for path, a in _leaves(actual):
        bad = _not_finite(a)
        if not bad.any():
            continue
        e = _at(expected, path)
        if e is not None and isinstance(e, (float, torch.Tensor, np.ndarray)) and np.shape(e) == bad.shape:
            bad = bad & ~_not_finite(e)
            if not bad.any():
                continue
        first = np.asarray(a.numpy() if isinstance(a, torch.Tensor) else a)[bad].ravel()[0] if bad.ndim \
            else (a.item() if isinstance(a, (torch.Tensor, np.ndarray)) else a)
        at = where + "".join(f"[{k!r}]" for k in path)
        return Mismatch(at, f"{float(np.real(first))} where a finite number is expected")
    return None


def within(value: Any, want: float, tol: float, what: str = "the value") -> str | None:
    """``None`` only when ``value`` is a number within ``tol`` of ``want``; else the reason.

    Written this way round a NaN fails, since ``abs(nan - want) <= tol`` is false.

    >>> within(0.11, 0.1, 0.02) is None
    True
    >>> within(float("nan"), 0.1, 0.02)
    'the value is nan: expected 0.1 ± 0.02'
    """
    try:
        v = float(value)
    except (TypeError, ValueError, RuntimeError):
        return f"{what} is not a number"
    if abs(v - want) <= tol:
        return None
    return f"{what} is {v:.4g}: expected {want:.4g} ± {tol:.2g}"


def inside(values: Any, low: float, high: float, what: str = "the values") -> str | None:
    """``None`` only when every value lies in ``[low, high]`` (NaN does not); else the reason.

    >>> inside(torch.tensor([0.5, 2.0]), 0.0, 1.0)
    'the values must lie in [0, 1]: 1 of 2 do not'
    """
    a = np.asarray(values.detach().numpy() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    ok = (a >= low) & (a <= high)
    if ok.all():
        return None
    return f"{what} must lie in [{low:g}, {high:g}]: {int((~ok).sum())} of {ok.size} do not"
