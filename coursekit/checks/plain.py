"""Plain data: the only thing that crosses from the student's process to the judge.

Values are turned into JSON-ready structures. Tensors and arrays travel as raw
little-endian bytes (base64) with a whitelisted dtype and a shape, so nothing is
ever unpickled and no student object reaches the judge.

>>> from coursekit.checks.plain import encode, decode
>>> import torch
>>> decode(encode((torch.ones(2), 3, "a")))
(tensor([1., 1.]), 3, 'a')
"""
from __future__ import annotations

import base64
import math
import types
from typing import Any

import numpy as np
import torch

#: dtypes that may cross the boundary (torch name -> numpy name).
DTYPES = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2",
    "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
}
MAX_ITEMS = 100_000     # longest list an iterator is turned into
MAX_DEPTH = 32


class PlainDataError(ValueError):
    """A value that cannot be turned into (or read back from) plain data."""


class Opaque:
    """Stands for an object that is not plain data, such as an optimizer instance.

    Only its type name crosses the boundary; the judge never compares its contents.
    """

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.type_name == self.type_name


class Seed:
    """A seed the judge sends; the student's side receives a fresh ``torch.Generator``."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"Seed({self.seed})"


def _float(x: float) -> Any:
    return x if math.isfinite(x) else {"__float__": repr(x)}


def _array(a: np.ndarray, kind: str) -> dict:
    name = str(a.dtype)
    if name not in DTYPES:
        raise PlainDataError(f"arrays of dtype {name} cannot be graded; use one of {sorted(DTYPES)}")
    a = np.ascontiguousarray(a, dtype=DTYPES[name])
    return {kind: {"dtype": name, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}}


def encode(x: Any, depth: int = 0) -> Any:
    """Turn ``x`` into JSON-ready plain data (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise PlainDataError(f"value nested deeper than {MAX_DEPTH} levels")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        if abs(x) >= 2**63:
            raise PlainDataError("integers must fit in 64 bits to be graded")
        return x
    if t is float:
        return _float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return _float(float(x))
    if isinstance(x, torch.Tensor):
        # as_subclass drops any subclass the student made; detach and copy to the CPU.
        base = x.as_subclass(torch.Tensor).detach().cpu()
        dtype = str(base.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise PlainDataError(f"tensors of dtype {dtype} cannot be graded; use float32 or float64")
        return _array(base.contiguous().numpy(), "__tensor__")
    if isinstance(x, np.ndarray):
        return _array(np.asarray(x), "__ndarray__")
    if isinstance(x, torch.Size):
        return {"__tuple__": [int(n) for n in x]}
    if isinstance(x, torch.dtype):
        return {"__dtype__": str(x).removeprefix("torch.")}
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"__tuple__": [encode(v, depth + 1) for v in x]}
    if t is dict:
        if not all(type(k) is str for k in x):
            raise PlainDataError("dictionaries must have string keys to be graded")
        return {"__dict__": {k: encode(v, depth + 1) for k, v in x.items()}}
    if isinstance(x, Seed):
        return {"__seed__": x.seed}
    if isinstance(x, (types.GeneratorType, map, filter, zip, enumerate)) or (
            hasattr(t, "__next__") and hasattr(t, "__iter__")):
        items = []
        for v in x:
            if len(items) >= MAX_ITEMS:
                raise PlainDataError(f"iterator yielded more than {MAX_ITEMS} items")
            items.append(encode(v, depth + 1))
        return {"__iter__": items}
    return {"__object__": f"{t.__module__}.{t.__qualname__}"[:200]}


def _read_array(spec: Any, to_tensor: bool) -> Any:
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data"}:
        raise PlainDataError("malformed array")
    dtype, shape, data = spec["dtype"], spec["shape"], spec["data"]
    if dtype not in DTYPES or not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
        raise PlainDataError("malformed array header")
    if not isinstance(data, str):
        raise PlainDataError("malformed array data")
    try:
        a = np.frombuffer(base64.b64decode(data, validate=True), dtype=DTYPES[dtype])
    except ValueError as e:
        raise PlainDataError(f"malformed array data: {e}") from e
    if a.size != math.prod(shape):
        raise PlainDataError(f"array data does not match its shape {shape}")
    try:
        a = a.reshape(shape).copy()   # owns its memory (frombuffer's is read-only)
    except ValueError as e:           # e.g. an empty array of shape [0, 2**64]
        raise PlainDataError(f"malformed array shape {shape}: {e}") from e
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return torch.from_numpy(a) if to_tensor else a


def decode(x: Any, depth: int = 0) -> Any:
    """Read plain data made by :func:`encode`; anything unexpected raises ``PlainDataError``."""
    if depth > MAX_DEPTH + 2:
        raise PlainDataError("value nested too deeply")
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [decode(v, depth + 1) for v in x]
    if t is not dict or len(x) != 1:
        raise PlainDataError(f"unexpected {t.__name__} in plain data")
    (tag, v), = x.items()
    if tag == "__float__" and v in ("nan", "inf", "-inf"):
        return float(v)
    if tag == "__tensor__":
        return _read_array(v, True)
    if tag == "__ndarray__":
        return _read_array(v, False)
    if tag == "__tuple__" and type(v) is list:
        return tuple(decode(e, depth + 1) for e in v)
    if tag == "__iter__" and type(v) is list:
        return Iterated(decode(e, depth + 1) for e in v)
    if tag == "__dict__" and type(v) is dict:
        return {str(k): decode(e, depth + 1) for k, e in v.items()}
    if tag == "__dtype__" and isinstance(v, str) and v in DTYPES:
        return getattr(torch, v)
    if tag == "__seed__" and type(v) is int:
        return Seed(v)
    if tag == "__object__" and isinstance(v, str):
        return Opaque(v)
    raise PlainDataError(f"unknown tag {tag!r} in plain data")


class Iterated(list):
    """What an iterator or generator yielded, as a list (so the judge can tell it from a list)."""


def materialize(x: Any) -> Any:
    """Replace :class:`Seed` objects with seeded ``torch.Generator`` objects (student side)."""
    if isinstance(x, Seed):
        return torch.Generator().manual_seed(x.seed)
    if type(x) is list:
        return [materialize(v) for v in x]
    if type(x) is tuple:
        return tuple(materialize(v) for v in x)
    if type(x) is dict:
        return {k: materialize(v) for k, v in x.items()}
    return x
