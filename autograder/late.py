"""Late work: a due date and a late policy per lab, with per-student extensions.

A policy file (TOML) has one table per lab:

```toml
[03_optimizers]
due = "2026-03-01T23:59:00Z"   # a time without a zone is UTC
per_day = 0.10                 # fraction of the score lost per started day late
max_penalty = 0.50             # at most this fraction is lost
grace_minutes = 15             # submissions this close after the due date are on time
[03_optimizers.extensions]
alice = "2026-03-04T23:59:00Z" # a new due date for alice
bob = 2                        # or a number of extra days
```

>>> p = {"due": "2026-03-01T23:59:00Z", "per_day": 0.1, "max_penalty": 0.5}
>>> lateness("2026-03-03T10:00:00Z", p, "carl")
(2, 0.2)
>>> lateness("2026-03-03T10:00:00Z", {**p, "extensions": {"carl": 2}}, "carl")
(0, 0.0)
"""
from __future__ import annotations

import math
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

from .submissions import SubmissionError, parse_time

KEYS = {"due", "per_day", "max_penalty", "grace_minutes", "extensions"}


def load_policy(path: str | Path, lab: str) -> dict | None:
    """The late policy of ``lab`` from a TOML file (``None`` when the file has none for it), checked."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SubmissionError(f"cannot read the late policy {path}: {e}") from e
    p = data.get(lab)
    if p is None:
        return None
    where = f"{path} [{lab}]"
    if not isinstance(p, dict) or "due" not in p:
        raise SubmissionError(f"{where} must have a due date, such as due = \"2026-03-01T23:59:00Z\"")
    unknown = set(p) - KEYS
    if unknown:
        raise SubmissionError(f"{where}: unknown keys {sorted(unknown)}; keys must be one of {sorted(KEYS)}")
    out = {"due": parse_time(str(p["due"]), where), "per_day": p.get("per_day", 0.0),
           "max_penalty": p.get("max_penalty", 1.0), "grace_minutes": p.get("grace_minutes", 0), "extensions": {}}
    for key in ("per_day", "max_penalty", "grace_minutes"):
        v = out[key]
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
            raise SubmissionError(f"{where}: {key} must be a number >= 0; got {v!r}")
    if out["per_day"] > 1 or out["max_penalty"] > 1:
        raise SubmissionError(f"{where}: per_day and max_penalty are fractions between 0 and 1 (0.1 = 10%)")
    for student, ext in (p.get("extensions") or {}).items():
        if isinstance(ext, (int, float)) and not isinstance(ext, bool) and ext >= 0:
            out["extensions"][student] = float(ext)
        else:
            out["extensions"][student] = parse_time(str(ext), f"{where} extension of {student!r}")
    return out


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def due_for(policy: dict, student: str) -> str:
    """The due date of ``student``, extension included."""
    ext = (policy.get("extensions") or {}).get(student)
    if isinstance(ext, str):
        return ext
    due = _t(policy["due"]) + timedelta(days=float(ext or 0))
    return due.strftime("%Y-%m-%dT%H:%M:%SZ")


def lateness(submitted_at: str | None, policy: dict | None, student: str) -> tuple[int, float]:
    """(started days late, fraction of the score lost); (0, 0.0) without a policy or a submission time."""
    if not policy or not submitted_at:
        return 0, 0.0
    over = _t(submitted_at) - _t(due_for(policy, student)) - timedelta(minutes=policy.get("grace_minutes", 0))
    if over <= timedelta(0):
        return 0, 0.0
    days = math.ceil(over / timedelta(days=1))
    return days, round(min(policy.get("max_penalty", 1.0), policy.get("per_day", 0.0) * days), 6)
