"""Set-up for every test run (tests/, and the book and lab notebooks under nbval).

It sits at the repository root so it loads whichever paths pytest is given.
Tests run in parallel with ``pytest-xdist --dist loadscope``: each test module,
and each notebook (nbval needs all of a notebook's cells in one kernel), goes
to one worker and runs in order.
"""
from __future__ import annotations

import os

# matplotlib without a display.
os.environ.setdefault("MPLBACKEND", "Agg")
# Two xdist workers on two cores: one thread per process (and per notebook kernel, which
# inherits this). Small-tensor loops slow down 10-50x when torch threads contend.
os.environ.setdefault("OMP_NUM_THREADS", "1")
