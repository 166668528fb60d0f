"""Length-prefixed JSON messages over pipes, read with deadlines and byte caps.

A frame is ``<n>\\n`` followed by ``n`` bytes of UTF-8 JSON.

>>> r, w = os.pipe(); write_frame(w, {"a": 1}); FrameReader(r).read(deadline=None)
{'a': 1}
"""
from __future__ import annotations

import json
import os
import select
import time


class WireError(RuntimeError):
    """A peer sent something that is not a valid frame (or too much)."""


class WireTimeout(WireError):
    """No complete frame arrived before the deadline."""


class WireClosed(WireError):
    """The peer closed the pipe."""


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


class FrameReader:
    """Reads frames from a file descriptor, keeping any bytes that arrive early."""

    def __init__(self, fd: int, max_bytes: int = 64_000_000):
        self.fd, self.max_bytes, self.buf = fd, max_bytes, bytearray()

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
        try:
            return json.loads(self.read_raw(deadline))
        except (ValueError, RecursionError) as e:
            raise WireError(f"invalid JSON message: {e}") from e
