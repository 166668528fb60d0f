"""Experiments: a function of a few controls that returns a matplotlib figure.

The same :class:`Experiment` works two ways:

* **live** (JupyterLab): moving a control calls the function in Python and
  redraws one image (frames are cached, so going back is instant);
* **static** (the web book, nbval, any frontend without a kernel): every
  combination of control values is rendered once, and the browser switches
  between the frames with ``jslink`` from each control's ``index`` to a nested
  ``Stack`` of images. No kernel and no network are needed.

The mode is ``live`` in a kernel started by a Jupyter server and ``static``
everywhere else; ``COURSEKIT_WIDGETS=live`` or ``static`` forces one.

>>> from coursekit.plots import new_figure
>>> def draw(lr, steps):
...     fig, ax = new_figure(4, 3)
...     ax.plot([(1 - lr) ** t for t in range(steps)])
...     return fig
>>> exp = Experiment(draw, lr=Slider([0.1, 0.5, 0.9]), steps=Dropdown([10, 20]))
>>> exp.n_frames
6
>>> box = exp.widget(mode="static")  # doctest: +SKIP
"""
from __future__ import annotations

import inspect
import itertools
import os
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import ipywidgets as W
from matplotlib.figure import Figure

from .device import MODE_ENV, live_mode  # noqa: F401 (re-exported: widgets' mode)
from .plots import to_png

MAX_FRAMES = 400


class Control:
    """A control over a fixed list of values. Subclasses pick the ipywidget."""

    widget_class: type = W.SelectionSlider

    def __init__(self, values: Sequence[Any], description: str | None = None,
                 labels: Sequence[str] | None = None, default: Any = None, fmt: str | None = None):
        values = list(values)
        if not values:
            raise ValueError("values must hold at least one value")
        if labels is not None and len(labels) != len(values):
            raise ValueError(f"labels must have one entry per value ({len(values)}); got {len(labels)}")
        if default is not None and default not in values:
            raise ValueError(f"default must be one of the values {values}; got {default!r}")
        self.values, self.description = values, description
        self.labels = list(labels) if labels is not None else [
            format(v, fmt) if fmt else (f"{v:g}" if isinstance(v, float) else str(v)) for v in values]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"control labels must be distinct; got {self.labels}")
        self.default_index = values.index(default) if default is not None else 0

    def make(self, name: str) -> W.Widget:
        kw = dict(options=list(zip(self.labels, range(len(self.values)))),
                  index=self.default_index, description=self.description or name)
        if self.widget_class is W.SelectionSlider:
            kw.update(continuous_update=True, style={"description_width": "initial"},
                      layout=W.Layout(width="420px"))
        else:
            kw.update(style={"description_width": "initial"})
        return self.widget_class(**kw)


class Slider(Control):
    """A slider over ordered values (learning rates, depths, ...)."""

    widget_class = W.SelectionSlider


class Dropdown(Control):
    """A drop-down list (optimizer names, schedules, ...)."""

    widget_class = W.Dropdown


class Toggle(Control):
    """Side-by-side buttons for two to four choices (dropout on/off, ...)."""

    widget_class = W.ToggleButtons


class Experiment:
    """``fn(**controls) -> matplotlib Figure``, shown with one widget per control.

    Controls are keyword arguments: a :class:`Control` or a plain list (a slider).
    The function's parameter names must match the control names.
    """

    def __init__(self, fn: Callable[..., Figure], *, dpi: int = 80, cache_size: int = 256,
                 **controls: Control | Sequence[Any]):
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        if not controls:
            raise ValueError("give at least one control, e.g. Experiment(draw, lr=Slider([0.01, 0.1]))")
        self.fn, self.dpi = fn, dpi
        self.controls: dict[str, Control] = {
            k: c if isinstance(c, Control) else Slider(c) for k, c in controls.items()}
        params = inspect.signature(fn).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = [k for k in self.controls if k not in params]
            if unknown:
                raise ValueError(f"controls {unknown} are not parameters of {fn.__name__}"
                                 f"({', '.join(params)}); rename the control or the parameter")
        if self.n_frames > MAX_FRAMES:
            raise ValueError(f"{self.n_frames} combinations of control values is more than {MAX_FRAMES}; "
                             "use fewer values per control so the static book stays small")
        self._cache: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._cache_size = cache_size
        self.last_redraw_s: float | None = None
        self.links: list[W.Widget] = []  # the jslinks of the last static widget

    @property
    def n_frames(self) -> int:
        n = 1
        for c in self.controls.values():
            n *= len(c.values)
        return n

    def render(self, index: tuple[int, ...]) -> bytes:
        """PNG bytes of the frame for one index per control (cached)."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        kwargs = {k: c.values[i] for (k, c), i in zip(self.controls.items(), index)}
        fig = self.fn(**kwargs)
        if not isinstance(fig, Figure):
            raise TypeError(f"{getattr(self.fn, '__name__', 'fn')} must return a matplotlib Figure; "
                            f"got {type(fig).__name__}")
        png = to_png(fig, self.dpi)
        self._cache[index] = png
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return png

    def widget(self, mode: str = "auto") -> W.VBox:
        """The controls and the figure. ``mode`` is ``'auto'``, ``'live'`` or ``'static'``."""
        if mode not in ("auto", "live", "static"):
            raise ValueError(f"mode must be one of 'auto', 'live', 'static'; got {mode!r}")
        live = live_mode() if mode == "auto" else mode == "live"
        ctrls = [c.make(k) for k, c in self.controls.items()]
        box = W.VBox([W.HBox(ctrls, layout=W.Layout(flex_flow="row wrap"))],
                     layout=W.Layout(align_items="flex-start"))
        box.add_class("coursekit-experiment")
        box.add_class("coursekit-live" if live else "coursekit-static")
        view = self._live_view(ctrls) if live else self._static_view(ctrls)
        box.children = (*box.children, view)
        return box

    def _live_view(self, ctrls: list[W.Widget]) -> W.Image:
        start = tuple(c.default_index for c in self.controls.values())
        image = W.Image(value=self.render(start), format="png", layout=W.Layout(max_width="100%"))

        def redraw(_change=None):
            t0 = time.perf_counter()
            image.value = self.render(tuple(c.index for c in ctrls))
            self.last_redraw_s = time.perf_counter() - t0

        for c in ctrls:
            c.observe(redraw, names="index")
        return image

    def _static_view(self, ctrls: list[W.Widget]) -> W.Widget:
        sizes = [len(c.values) for c in self.controls.values()]
        frames = {idx: self.render(idx) for idx in itertools.product(*map(range, sizes))}

        def build(prefix: tuple[int, ...]) -> W.Widget:
            level = len(prefix)
            if level == len(sizes):
                return W.Image(value=frames[prefix], format="png", layout=W.Layout(max_width="100%"))
            stack = W.Stack([build(prefix + (i,)) for i in range(sizes[level])],
                            selected_index=ctrls[level].index)
            self.links.append(W.jslink((ctrls[level], "index"), (stack, "selected_index")))
            return stack

        self.links = []
        return build(())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
