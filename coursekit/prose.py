"""Numbers for the text: computed in a cell, quoted in the prose, the same on every machine.

A sentence such as "dropout adds 2.1 points" must show the number of the run that built
the page, on whatever CPU built it. So the prose never types a measured number. A cell
computes it and hands it to :func:`prose`; the markdown quotes it with MyST's ``{eval}``
role::

    prose(dropout_gain=f"{c.diff * 100:+.1f} ± {c.half_width * 100:.1f}")

    Dropout changes validation accuracy by {eval}`dropout_gain` points.

The role renders in both places a chapter is read:

* **the web book** (Jupyter Book, cached execution): ``book/_ext`` reads the value from
  the executed cell's output, where :func:`prose` left it as MyST-NB glue data;
* **JupyterLab** (``make lab`` installs ``jupyterlab-myst``): the markdown cell asks the
  kernel for the variable, which :func:`prose` defines in the notebook's namespace.

Each value is a :class:`Text`, a ``str`` that shows without quotes. Names are unique in a
chapter (the book build fails on a name glued twice) and must not be reassigned later.
"""
from __future__ import annotations

import re

#: MyST-NB's prefix for glued data that is stored but not displayed.
GLUE_PREFIX = "application/papermill.record/"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Text(str):
    """A string that shows as itself (no quotes) where Jupyter shows a value's repr."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's pretty printer
        p.text(str(self))


def prose(**values: object) -> None:
    """Make each value quotable in the chapter's prose as ``{eval}`name```.

    Strings are kept as they are (format numbers in the call, to the precision the text
    needs); anything else is shown with ``str()``. Returns nothing, so a call that ends a
    cell shows nothing in the page.

    >>> prose(gain="+2.1 ± 1.5")        # outside a kernel: checked, then nothing to do
    >>> Text("+2.1 ± 1.5")
    +2.1 ± 1.5
    """
    if not values:
        raise ValueError("prose() needs at least one name=value, e.g. prose(gain=f'{g:+.1f}')")
    out: dict[str, Text] = {}
    for name, value in values.items():
        if not _NAME.match(name):
            raise ValueError(f"prose name must be a Python identifier; got {name!r}")
        out[name] = Text(value if isinstance(value, str) else str(value))
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: nothing to show or glue
        return None
    shell = get_ipython()
    if shell is None:
        return None
    shell.user_ns.update(out)
    for name, text in out.items():
        display({GLUE_PREFIX + "text/plain": str(text)}, raw=True,
                metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
    return None
