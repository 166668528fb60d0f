"""Text alternatives for the figures that notebook cells show.

A figure a code cell shows (``plt.show()``, or a Figure as the cell's value) goes
out as a PNG. Nothing says what it shows, so the web book used to give it its
file path as ``alt`` text. Here every such PNG carries a description built from
the figure itself (its suptitle, each panel's title, axis labels and legend) in
the PNG's standard ``Description`` text chunk; the book's Sphinx extension
(``book/_ext``) copies it into the page's ``alt`` attribute.

:func:`install` puts this into IPython's PNG formatter (``import coursekit`` does
it); outside IPython it does nothing.

>>> from coursekit.plots import new_figure
>>> fig, ax = new_figure()
>>> ax.set(title="Training loss", xlabel="epoch", ylabel="loss")  # doctest: +ELLIPSIS
[...]
>>> describe_figure(fig)
'Figure: Training loss (x: epoch, y: loss)'
"""
from __future__ import annotations

import base64
import functools
import re
import struct
import sys
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The PNG text keyword that holds the description (one of the PNG standard's keywords).
KEY = "Description"
_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε",
          "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "sigma": "σ", "tau": "τ",
          "nabla": "∇", "ell": "ℓ", "cdot": "·", "times": "×", "infty": "∞", "approx": "≈", "leq": "≤",
          "geq": "≥", "rightarrow": "→", "to": "→", "pm": "±", "phi": "φ", "varphi": "φ", "psi": "ψ",
          "omega": "ω", "rho": "ρ", "pi": "π", "xi": "ξ", "nu": "ν", "zeta": "ζ", "chi": "χ",
          "Delta": "Δ", "Sigma": "Σ", "Lambda": "Λ", "Theta": "Θ", "partial": "∂", "top": "ᵀ"}
_POWERS = {"2": "²", "3": "³", "-1": "⁻¹", "t": "ᵗ", "T": "ᵀ"}


def _plain(text: str) -> str:
    """Mathtext to plain words: ``$\\eta$ = 0.1`` becomes ``η = 0.1``."""
    text = re.sub(r"\\(mathrm|mathbf|mathit|mathbb|mathcal|operatorname|text|boldsymbol|hat|bar|tilde)"
                  r"\{([^{}]*)\}", r"\2", text)
    text = re.sub(r"\\[,;:! ]", " ", text)  # TeX spacing
    text = re.sub(r"\^\{?(-1|[23tT])\}?", lambda m: _POWERS[m.group(1)], text)
    text = re.sub(r"\\([A-Za-z]+)", lambda m: _GREEK.get(m.group(1), m.group(1)), text)
    text = text.replace("\\|", "‖").replace("$", "").replace("{", "").replace("}", "")
    text = text.replace("^", "").replace("_", "")  # w_1 reads as w1
    return re.sub(r"\s+", " ", text).strip()


def _panel(ax) -> str:
    title = "; ".join(_plain(ax.get_title(loc)) for loc in ("left", "center", "right") if ax.get_title(loc))
    xy = ", ".join(f"{k}: {_plain(label)}" for k, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel()))
                   if label)
    parts = [xy] if xy else []
    legend = ax.get_legend()
    if legend is not None:
        names = [_plain(t.get_text()) for t in legend.get_texts() if t.get_text()]
        if names:
            parts.append("curves: " + ", ".join(names[:8]) + (", ..." if len(names) > 8 else ""))
    return (title + (f" ({'; '.join(parts)})" if parts else "")).strip()


def describe_figure(fig: Figure) -> str:
    """What a figure shows, in words, from its suptitle, panel titles, axis labels and legends."""
    head = _plain(fig._suptitle.get_text()) if getattr(fig, "_suptitle", None) is not None else ""
    panels = [p for p in (_panel(ax) for ax in fig.axes if ax.get_visible()) if p]
    if not head and not panels:
        n = len(fig.axes)
        return f"Figure with {n} panel{'s' if n != 1 else ''} (no titles or labels)"
    if len(panels) > 1:
        body = "; ".join(f"panel {i}: {p}" for i, p in enumerate(panels, 1))
    else:
        body = panels[0] if panels else ""
    return "Figure: " + ". ".join(s for s in (head, body) if s)


def with_description(png: bytes, text: str) -> bytes:
    """The same PNG with ``text`` in an iTXt ``Description`` chunk (UTF-8), right after the header.

    >>> from PIL import Image; import io
    >>> png = io.BytesIO(); Image.new("L", (2, 2)).save(png, "png")
    >>> Image.open(io.BytesIO(with_description(png.getvalue(), "κ = 1"))).text["Description"]
    'κ = 1'
    """
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("png must be PNG bytes (they start with the PNG signature)")
    body = KEY.encode("latin-1") + b"\0\0\0" + b"\0" + b"\0" + text.encode("utf-8")
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]


def _add_description(out: Any, fig: Figure) -> Any:
    """A PNG formatter's result (base64 text or bytes, alone or with metadata) for this figure,
    with the figure's description inside the PNG."""
    data, meta = out if isinstance(out, tuple) else (out, None)  # the retina formatter adds metadata
    if data is None:
        return out
    raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
    described = with_description(raw, describe_figure(fig))
    data = base64.b64encode(described).decode("ascii") if isinstance(data, str) else described
    return (data, meta) if isinstance(out, tuple) else data


@functools.cache
def _described_png_formatter() -> type:
    """IPython's PNG formatter, except that a figure's PNG also carries the figure's description.
    (Made on first use: outside IPython, ``import coursekit`` loads neither IPython nor matplotlib.)"""
    from IPython.core.formatters import PNGFormatter
    from matplotlib.figure import Figure

    class DescribedPNGFormatter(PNGFormatter):
        def __call__(self, obj):
            out = super().__call__(obj)
            if not isinstance(obj, Figure) or out is None:
                return out
            try:
                return _add_description(out, obj)
            except Exception:  # noqa: BLE001 - a figure without a description beats no figure
                return out

    return DescribedPNGFormatter


def install() -> bool:
    """Describe every figure a cell shows from now on (IPython only); True if installed.

    The inline backend registers its printer for figures late (matplotlib loads the backend when
    the first figure is made, often in the very cell that shows it), and again when its settings
    change. So rather than wrap that printer, IPython's PNG formatter itself is replaced by one
    that adds the description to whatever the printer returns for a figure.
    """
    ipython = sys.modules.get("IPython")  # a kernel has loaded it; anywhere else there is nothing to do
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return False
    formatters = shell.display_formatter.formatters
    old = formatters["image/png"]
    described = _described_png_formatter()
    if isinstance(old, described):
        return True
    new = described(parent=shell.display_formatter)
    new.enabled = old.enabled
    new.type_printers.update(old.type_printers)
    new.deferred_printers.update(old.deferred_printers)
    new.singleton_printers.update(old.singleton_printers)
    formatters["image/png"] = new
    return True
