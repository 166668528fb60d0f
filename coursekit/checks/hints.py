"""Hints for wrong answers: name the common slip without giving the answer away.

When a student's tensor differs from the reference, the comparison says *that* it
differs; :func:`slip` says *how*, in words a student can act on: every value off by
the same factor (a missing or extra ``1/n``), the wrong sign, a transposed result.
None of these hints prints a reference value.

>>> import torch
>>> e = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
>>> slip(e, 5 * e)
'every value is 5 times the expected one: a missing or extra factor (such as 1/n)?'
>>> slip(e, -e)
'every value has the wrong sign'
>>> slip(e, e.T.clone())
'the shape is transposed: expected (3, 2), got (2, 3)'

:func:`choice` compares the answer to a question whose answer is one of a few
options, and never says which option was expected.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["slip", "choice"]


def _array(x: Any) -> np.ndarray | None:
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.detach().to(torch.float64).numpy()
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float64)
    return None


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float) -> bool:
    return a.shape == b.shape and bool(np.all(np.isclose(a, b, rtol=rtol, atol=atol)))


def slip(expected: Any, actual: Any, rtol: float = 1e-4, atol: float = 1e-6) -> str | None:
    """A hint naming a common slip that turns ``expected`` into ``actual``, or ``None``.

    Recognized: transposed shape or values; every value scaled by one factor (the
    factor is printed: it is the student's slip, not the answer); a wrong sign.
    """
    e, a = _array(expected), _array(actual)
    if e is None or a is None or e.size < 2 or not (np.all(np.isfinite(e)) and np.all(np.isfinite(a))):
        return None
    if e.ndim == 2 and a.shape == e.shape[::-1] and e.shape[0] != e.shape[1]:
        return f"the shape is transposed: expected {e.shape}, got {a.shape}"
    if a.shape != e.shape:
        return None
    if e.ndim == 2 and e.shape[0] == e.shape[1] and _close(a, e.T, rtol, atol) and not _close(e, e.T, rtol, atol):
        return "the result is transposed"
    if _close(a, -e, rtol, atol):
        return "every value has the wrong sign"
    big = np.abs(e) > 1e-8 * max(float(np.abs(e).max()), 1e-300)
    if big.sum() < 2:
        return None
    ratios = a[big] / e[big]
    c = float(np.median(ratios))
    if c == 0 or not np.isfinite(c) or abs(c - 1) < 1e-3:
        return None
    if _close(a, c * e, 1e-3, atol):
        if c < 0:
            return f"every value is {c:.3g} times the expected one: a wrong sign and a factor?"
        return f"every value is {c:.3g} times the expected one: a missing or extra factor (such as 1/n)?"
    return None


def choice(options: Sequence[Any], hint: str = "") -> Callable[[list, list], str | None]:
    """A compare for a question whose answer is one of ``options``: it never reveals the answer.

    >>> same = choice(["dW1", "db1"], hint="run your gradient check on each parameter")
    >>> same(["db1"], ["db1"]) is None
    True
    >>> same(["db1"], ["dW1"])
    'not the right choice: run your gradient check on each parameter'
    >>> same(["db1"], ["W1"])
    "'W1' is not one of the options: 'dW1', 'db1'"
    """
    options = list(options)

    def compare(expected: list, actual: list) -> str | None:
        (e,), (a,) = expected[-1:], actual[-1:]
        if not any(type(a) is type(o) and a == o for o in options):
            return f"{a!r} is not one of the options: {', '.join(repr(o) for o in options)}"
        if a == e:
            return None
        return "not the right choice" + (f": {hint}" if hint else "")
    return compare
