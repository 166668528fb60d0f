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
