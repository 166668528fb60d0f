"""Length-prefixed JSON messages over pipes, read with deadlines, byte caps and a schema.

A frame is ``<n>\\n`` followed by ``n`` bytes of UTF-8 JSON. Parsing is strict:
``NaN``/``Infinity`` literals are refused (they are not JSON), and frames from the
child are checked against :data:`CHILD_FRAMES` with exact types (an index is an
``int``, never a ``bool``), so a malformed frame is a :class:`WireError` that the
worker charges to that submission, never a crash of the worker.

>>> r, w = os.pipe(); write_frame(w, {"a": 1}); FrameReader(r).read(deadline=None)
{'a': 1}
"""
from __future__ import annotations

import json
import math
import os
import re
import select
import time


class WireError(RuntimeError):
    """A peer sent something that is not a valid frame (or too much)."""


class WireTimeout(WireError):
    """No complete frame arrived before the deadline."""


class WireClosed(WireError):
    """The peer closed the pipe."""


def _no_constants(name: str):
    raise ValueError(f"{name} is not allowed in a frame")


def loads(data: bytes):
    """``json.loads`` that refuses NaN and Infinity."""
    return json.loads(data, parse_constant=_no_constants)


def frame(obj) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return b"%d\n" % len(data) + data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def write_frame(fd: int, obj) -> None:
    write_all(fd, frame(obj))


#: What one frame may hold once parsed. A child's answer is a few containers around base64 tensors
#: (coursekit.checks.plain: at most 100,000 items a list, 32 levels, each level at most two JSON ones),
#: and 31 MB of "[]," would otherwise become 10 million Python lists in the trusted processes.
MAX_ITEMS = 500_000
MAX_DEPTH = 80
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|,')


def check_budget(data: bytes, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> int:
    """Refuse, before parsing, a frame that would hold more than ``max_items`` values or nest deeper than
    ``max_depth``; returns its count of values (an upper bound). Strings are skipped, not counted.

    >>> check_budget(b'{"a": [1, 2, "x,[y"]}')   # quick bound (brackets and commas in strings too)
    7
    >>> check_budget(b"[" * 100 + b"]" * 100)
    Traceback (most recent call last):
    ...
    autograder.sandbox.wire.WireError: the message nests deeper than 80 levels
    """
    openers = data.count(b"[") + data.count(b"{")
    if openers + data.count(b",") <= min(max_items, 10_000) and openers <= max_depth:
        return openers + data.count(b",") + 1      # every bracket and comma, strings included: an upper bound
    items, depth = 1, 0
    for m in _JSON_TOKEN.finditer(data):
        t = m.group()
        if t in (b"[", b"{"):
            depth += 1
            items += 1
            if depth > max_depth:
                raise WireError(f"the message nests deeper than {max_depth} levels")
        elif t in (b"]", b"}"):
            depth -= 1
        elif t == b",":
            items += 1
        if items > max_items:
            raise WireError(f"the message holds more than {max_items:,} values")
    return items


class FrameReader:
    """Reads frames from a file descriptor, keeping any bytes that arrive early.

    Each frame is held to a byte cap as it arrives and to :func:`check_budget` before it is parsed;
    ``max_total_items`` bounds the values of all frames read together (one submission's)."""

    def __init__(self, fd: int, max_bytes: int = 64_000_000, max_total_items: int = 4 * MAX_ITEMS):
        self.fd, self.max_bytes, self.buf = fd, max_bytes, bytearray()
        self.items_left = max_total_items

    def _fill(self, deadline: float | None) -> None:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            raise WireTimeout("deadline passed")
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            raise WireClosed("pipe closed")
        self.buf += chunk

    def read_raw(self, deadline: float | None) -> bytes:
        while b"\n" not in self.buf[:24]:
            if len(self.buf) > 24:
                raise WireError("malformed frame header")
            self._fill(deadline)
        head, _, _ = self.buf.partition(b"\n")
        if not head.isdigit():
            raise WireError("malformed frame header")
        n = int(head)
        if n > self.max_bytes:
            raise WireError(f"message of {n} bytes is over the cap of {self.max_bytes}")
        start = len(head) + 1
        while len(self.buf) < start + n:
            self._fill(deadline)
        data = bytes(self.buf[start:start + n])
        del self.buf[:start + n]
        return data

    def read(self, deadline: float | None):
        data = self.read_raw(deadline)
        self.items_left -= check_budget(data)
        if self.items_left < 0:
            raise WireError("the messages together hold more values than one submission may send")
        try:
            return loads(data)
        except (ValueError, RecursionError) as e:
            raise WireError(f"invalid JSON message: {e}") from e


# ---- the schema of what the child may say -------------------------------------------------

def _int(x) -> bool:
    return type(x) is int


def _seconds(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x) and x >= 0


def _text(x) -> bool:
    return type(x) is str and len(x) <= 1_000_000


_STATUS = ("ok", "error", "memory_limit")

#: Every frame the child may send: its exact keys, and a test for each value.
CHILD_FRAMES = {
    ("cell", "start"): {"ev": None, "phase": None, "i": _int},
    ("cell", "end"): {"ev": None, "phase": None, "i": _int, "status": lambda s: s in _STATUS,
                      "message": _text, "output": _text, "t": _seconds},
    ("probe", "start"): {"ev": None, "phase": None, "j": _int},
    ("probe", "end"): {"ev": None, "phase": None, "j": _int, "status": lambda s: s in _STATUS,
                       "message": _text, "answer": lambda a: True, "t": _seconds},
    ("done", None): {"ev": None},
}


def check_child_frame(msg) -> tuple[str, str | None]:
    """The ``(ev, phase)`` of a valid child frame; raises :class:`WireError` otherwise.

    >>> check_child_frame({"ev": "cell", "phase": "start", "i": 3})
    ('cell', 'start')
    >>> check_child_frame({"ev": "cell", "phase": "start", "i": True})
    Traceback (most recent call last):
    ...
    autograder.sandbox.wire.WireError: frame ('cell', 'start') has a bad 'i'
    """
    if type(msg) is not dict:
        raise WireError(f"a frame must be an object; got {type(msg).__name__}")
    key = (msg.get("ev"), msg.get("phase"))
    schema = CHILD_FRAMES.get(key) if all(type(k) in (str, type(None)) for k in key) else None
    if schema is None:
        raise WireError(f"unknown frame {key!r}")
    if set(msg) != set(schema):
        raise WireError(f"frame {key!r} must have exactly the keys {sorted(schema)}; got {sorted(msg)}")
    for name, ok in schema.items():
        if ok is not None and not ok(msg[name]):
            raise WireError(f"frame {key!r} has a bad {name!r}")
    return key
