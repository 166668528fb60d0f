"""Test-session set-up shared by every test module."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# matplotlib without a display, and a private cache so parallel workers do not collide.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Keep each notebook's cells on one xdist worker, in order (nbval needs one kernel per notebook)."""
    for item in items:
        path = str(getattr(item, "path", item.fspath))
        if path.endswith(".ipynb"):
            item.add_marker(pytest.mark.xdist_group(f"notebook:{Path(path).relative_to(ROOT)}"))
