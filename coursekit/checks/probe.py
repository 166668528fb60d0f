"""Probes: "call this function on these inputs", written as plain data.

A probe is a short script of steps. Each step calls a top-level name of the
notebook (``"adam_step"``) or a method or attribute of an earlier step's result
(``"$0.step"`` is the ``step`` method of what step 0 returned). Arguments may
refer to earlier results with :func:`ref`. The same code runs the reference
solution in the judge and the student's code in the sandboxed child.

>>> from coursekit.checks.probe import call, run_steps
>>> run_steps({"double": lambda x: 2 * x}, [call("double", 21)])
[42]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .plain import decode, encode, materialize


@dataclass
class Step:
    """One call (``op="call"``) or attribute read (``op="get"``) in a probe."""
    target: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    op: str = "call"

    def to_plain(self) -> dict:
        return {"op": self.op, "target": self.target,
                "args": encode(tuple(self.args)), "kwargs": encode(dict(self.kwargs))}

    @classmethod
    def from_plain(cls, d: Mapping) -> "Step":
        if not isinstance(d, Mapping) or d.get("op") not in ("call", "get") or not isinstance(d.get("target"), str):
            raise ValueError(f"malformed probe step: {str(d)[:200]}")
        return cls(d["target"], decode(d["args"]), decode(d["kwargs"]), d["op"])

    def describe(self) -> str:
        return self.target if self.op == "get" else f"{self.target}(...)"


@dataclass
class Ref:
    """An argument that stands for the result of an earlier step."""
    index: int


def call(target: str, *args: Any, **kwargs: Any) -> Step:
    """A step that calls ``target`` with the given arguments."""
    return Step(target, args, kwargs, "call")


def get(target: str) -> Step:
    """A step that reads an attribute, e.g. ``get("$0.running_mean")``."""
    return Step(target, (), {}, "get")


def ref(index: int, item: int | None = None) -> dict:
    """Refer to the result of step ``index`` (or its ``item``-th element) in a later step."""
    return {"__ref__": [int(index), item]}


def named(name: str) -> dict:
    """Pass a top-level object of the notebook by name, e.g. a function defined in a locked cell."""
    return {"__named__": str(name)}


def _resolve(x: Any, results: list, namespace: Mapping) -> Any:
    if type(x) is dict and set(x) == {"__ref__"}:
        index, item = x["__ref__"]
        return results[index] if item is None else results[index][item]
    if type(x) is dict and set(x) == {"__named__"}:
        return _lookup(namespace, x["__named__"], results)
    if type(x) is list:
        return [_resolve(v, results, namespace) for v in x]
    if type(x) is tuple:
        return tuple(_resolve(v, results, namespace) for v in x)
    if type(x) is dict:
        return {k: _resolve(v, results, namespace) for k, v in x.items()}
    return x


class NotDefined(NameError):
    """A probe names something the notebook has not defined (yet)."""

    def __init__(self, name: str):
        super().__init__(f"name '{name}' is not defined in the notebook")
        self.name = name


def _lookup(namespace: Mapping, target: str, results: list) -> Any:
    if target.startswith("$"):
        head, _, attr = target[1:].partition(".")
        obj = results[int(head)]
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
        return obj
    name, _, attr = target.partition(".")
    if name not in namespace:
        raise NotDefined(name)
    obj = namespace[name]
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    return obj


def run_step(namespace: Mapping, step: Step, results: list) -> Any:
    """Run one step against ``namespace`` (a notebook's globals) and return its result."""
    obj = _lookup(namespace, step.target, results)
    if step.op == "get":
        return obj
    args = materialize(_resolve(tuple(step.args), results, namespace))
    kwargs = materialize(_resolve(dict(step.kwargs), results, namespace))
    return obj(*args, **kwargs)


def run_steps(namespace: Mapping, steps: list[Step]) -> list:
    """Run all steps in order and return their results."""
    results: list = []
    for step in steps:
        results.append(run_step(namespace, step, results))
    return results
