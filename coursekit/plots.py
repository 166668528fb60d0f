"""Matplotlib helpers shared by the chapters: learning curves and a few layouts.

Figures are built with :func:`new_figure` (no pyplot state), so experiment
widgets can render hundreds of frames without leaking figures.

>>> from coursekit.plots import plot_curves
>>> fig = plot_curves({"lr=0.1": [1.0, 0.5, 0.3], "lr=1": [1.0, 2.0, 8.0]}, logy=True)
"""
from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .train import History

#: Colour-blind-safe palette (Okabe & Ito) used across the book.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def new_figure(width: float = 6.4, height: float = 3.2, ncols: int = 1, nrows: int = 1,
               layout: str | None = None, **subplot_kw) -> tuple[Figure, Axes | Sequence[Axes]]:
    """A figure and its axes, detached from pyplot (nothing is shown until you display it).

    Margins are fixed in inches, which leaves room for tick labels, axis labels and a
    title. That is about twice as fast to draw as ``layout="constrained"`` (which
    you can still ask for), and widget frames are drawn by the hundred.
    """
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    if layout is None:
        fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                            top=1 - 0.35 / height, wspace=0.85 * ncols / max(width - 0.9, 1.0),
                            hspace=0.9 * nrows / max(height - 0.85, 1.0))
    axes = fig.subplots(nrows, ncols, **subplot_kw)
    return fig, axes


_CANVASES: dict[tuple, FigureCanvasAgg] = {}


def _canvas(fig: Figure, dpi: int) -> FigureCanvasAgg:
    """A shared Agg canvas for figures of this size and dpi.

    Figures of one size share an Agg canvas, so its renderer, and matplotlib's
    text-metrics cache keyed on the renderer, outlive each figure: widget frames
    re-use the measured tick labels (mathtext especially) instead of re-parsing them.
    """
    key = (*fig.get_size_inches().round(3), dpi)
    canvas = _CANVASES.get(key)
    if canvas is None:
        canvas = _CANVASES[key] = FigureCanvasAgg(fig)
    else:
        canvas.figure = fig
        fig.set_canvas(canvas)
    return canvas


def _pixels(fig: Figure, dpi: float) -> np.ndarray:
    """The figure drawn at ``dpi``: an RGB array, or RGBA where it is not opaque."""
    canvas = _canvas(fig, dpi)
    fig.set_dpi(dpi)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3]) if (rgba[..., 3] == 255).all() else rgba.copy()


def to_png(fig: Figure, dpi: float = 80, colors: int | None = 256) -> bytes:
    """Render a figure to PNG bytes, by default as a palette PNG of at most ``colors`` colours.

    Plots are mostly flat colour plus anti-aliased edges, so 256 colours chosen for the
    image (median cut, no dithering) look the same as full colour at about half the bytes,
    and a palette image is also quicker to compress. ``colors=None`` keeps full RGB(A).

    >>> fig, ax = new_figure(2, 2); _ = ax.plot([0, 1])
    >>> to_png(fig)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    if colors is not None and not 2 <= colors <= 256:
        raise ValueError(f"colors must be between 2 and 256, or None; got {colors!r}")
    px = _pixels(fig, dpi)
    img = Image.fromarray(px)
    if colors is not None:
        opaque = px.shape[-1] == 3
        img = img.quantize(colors, method=Image.Quantize.MEDIANCUT if opaque else Image.Quantize.FASTOCTREE,
                           dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6 if colors is not None else 1)
    return buf.getvalue()


def to_webp(fig: Figure, dpi: float = 80, colors: int | None = 256) -> bytes:
    """Render a figure to lossless WebP bytes, by default of the same 256-colour palette image as
    :func:`to_png`: about a third smaller than the PNG, and slower to encode (so the static book
    uses it, live redraws use :func:`to_png`). ``colors=None`` keeps every pixel exact.

    >>> fig, ax = new_figure(2, 2); _ = ax.plot([0, 1])
    >>> to_webp(fig)[8:12]
    b'WEBP'
    """
    if colors is not None and not 2 <= colors <= 256:
        raise ValueError(f"colors must be between 2 and 256, or None; got {colors!r}")
    px = _pixels(fig, dpi)
    img = Image.fromarray(px)
    if colors is not None and px.shape[-1] == 3:
        img = img.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="WEBP", lossless=True, method=4, quality=100)
    return buf.getvalue()


FORMATS = {"png": to_png, "webp": to_webp}


def plot_history(history: History, metrics: Sequence[str] = ("loss", "acc"),
                 title: str | None = None) -> Figure:
    """Train and validation curves per epoch: one panel per metric (``'loss'``, ``'acc'``)."""
    for m in metrics:
        if m not in ("loss", "acc"):
            raise ValueError(f"metrics must contain only 'loss' and 'acc'; got {m!r}")
    fig, axes = new_figure(4.0 * len(metrics), 3.0, ncols=len(metrics), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for split, color in (("train", PALETTE[0]), ("val", PALETTE[1])):
            ax.plot(history.epoch, history[f"{split}_{m}"], color=color, label=split, marker=".")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if m == "loss" else "accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_curves(curves: Mapping[str, Sequence[float]], xlabel: str = "step", ylabel: str = "loss",
                logy: bool = False, highlight: str | None = None, ax: Axes | None = None,
                title: str | None = None) -> Figure:
    """Several named curves on one axis. ``highlight`` draws one curve bold and the rest faint.

    Non-finite values (a diverged run) are cut off and the divergence is marked with an x.
    """
    if highlight is not None and highlight not in curves:
        raise ValueError(f"highlight must be one of the curve names {list(curves)}; got {highlight!r}")
    fig = ax.figure if ax is not None else None
    if ax is None:
        fig, ax = new_figure()
    for i, (name, ys) in enumerate(curves.items()):
        ys = list(ys)
        finite = [y for y in ys if math.isfinite(y)]
        cut = next((j for j, y in enumerate(ys) if not math.isfinite(y)), len(ys))
        style = dict(color=PALETTE[i % len(PALETTE)], label=name, lw=1.5)
        if highlight is not None:
            style.update(lw=2.5 if name == highlight else 1.0, alpha=1.0 if name == highlight else 0.3)
        ax.plot(range(cut), ys[:cut], **style)
        if cut < len(ys) and finite:
            ax.plot(cut - 1, ys[cut - 1], marker="x", color=style["color"], ms=9, mew=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(curves) <= 8:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig
