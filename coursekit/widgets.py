"""Experiments: a function of a few controls that returns a matplotlib figure.

The same :class:`Experiment` works two ways:

* **live** (JupyterLab): moving a control calls the function in Python, which
  draws the frame and sends it to the browser; the browser keeps every frame it
  gets and shows one it has at once, with no round trip to the kernel
  (:class:`LiveFigure`, ``live_figure.js``);
* **static** (the web book, nbval, any frontend without a kernel): every
  combination of control values is rendered once, and the browser switches
  between the frames with ``jslink`` from each control's ``index`` to a nested
  ``Stack`` of images. No kernel and no network are needed.

The mode is ``live`` in a kernel started by a Jupyter server and ``static``
everywhere else; ``COURSEKIT_WIDGETS=live`` or ``static`` forces one.

Every frame carries a text alternative that names the figure and the control
values it shows (``Experiment(..., alt="Loss curves")``; by default the first
line of the function's docstring). In the static book identical frames are
stored once, and frames are palette PNGs (see :func:`coursekit.plots.to_png`).
In live mode, after each move the neighbouring frames of every control are
drawn in a background thread and pushed to the browser, so the next key press
usually finds its frame there already.

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

import atexit
import inspect
import itertools
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import anywidget
import ipywidgets as W
from traitlets import Bytes, Instance, Int, List, Unicode
from matplotlib.figure import Figure

from .device import MODE_ENV, live_mode  # noqa: F401 (re-exported: widgets' mode)
from .plots import FORMATS

MAX_FRAMES = 400

# Frames share matplotlib canvases (coursekit.plots), so only one thread draws at a time.
_DRAW_LOCK = threading.RLock()
# Background drawing stops before the interpreter does (a thread killed inside Agg aborts it).
_STOPPING = threading.Event()
_WORKERS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


@atexit.register
def _stop_workers() -> None:
    _STOPPING.set()
    for t in list(_WORKERS):
        t.join(timeout=5)


class _Frame(W.Image):
    """An Image whose tooltip works: ipywidgets' views read ``description`` before they set the
    title from ``tooltip``, and Image has none (the view fails to render). The book's script
    turns the title into the image's alt text."""

    description = Unicode("").tag(sync=True)


class LiveFigure(anywidget.AnyWidget):
    """The figure of a live :class:`Experiment` in JupyterLab: the kernel draws, the browser keeps.

    The browser (``live_figure.js``) keeps every frame it receives, keyed by the controls'
    indices, and switches to a frame it has as soon as a control moves, with no round trip to
    the kernel. The kernel sees the same move through the control's own model, draws the frame
    if the browser lacks it, and pushes it with :meth:`push`; after each move it also pushes the
    neighbouring frames, drawn in the background. ``value``, ``index`` and ``alt`` are the frame a
    new view starts with.
    """

    _esm = Path(__file__).with_name("live_figure.js")
    controls = List(Instance(W.Widget)).tag(sync=True, **W.widget_serialization)
    value = Bytes(b"").tag(sync=True)
    index = List(Int()).tag(sync=True)
    alt = Unicode("").tag(sync=True)
    format = Unicode("png").tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: Frames the browser holds (as far as the kernel knows); a view that starts afresh says hello.
        self.sent: set[tuple[int, ...]] = {tuple(self.index)}
        self._sent_lock = threading.Lock()

    def push(self, index: tuple[int, ...], data: bytes, alt: str, again: bool = False) -> bool:
        """Send one frame to the browser unless it has it (or ``again``); True if sent."""
        with self._sent_lock:
            if index in self.sent and not again:
                return False
            self.sent.add(index)
        self.send({"frame": list(index), "alt": alt}, [data])
        return True

    def forget(self, keep: tuple[int, ...]) -> None:
        """A view started afresh (a reload, a second view): the browser holds only ``keep``."""
        with self._sent_lock:
            self.sent = {keep}


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
            # 420 px where there is room; on a phone the track shrinks and the value stays visible.
            kw.update(continuous_update=True, style={"description_width": "initial"},
                      layout=W.Layout(width="420px", max_width="100%"))
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

    ``alt`` says what the figure shows (default: the first docstring line of ``fn``); each
    frame's text alternative adds its control values. Frames are drawn at ``dpi``, but never
    wider than ``max_width_px``. ``prefetch`` (live mode) draws neighbouring frames ahead.
    """

    def __init__(self, fn: Callable[..., Figure], *, dpi: int = 80, max_width_px: int = 720,
                 cache_size: int = 256, alt: str | None = None, prefetch: bool = True,
                 **controls: Control | Sequence[Any]):
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        if not controls:
            raise ValueError("give at least one control, e.g. Experiment(draw, lr=Slider([0.01, 0.1]))")
        self.fn, self.dpi, self.prefetch = fn, dpi, prefetch
        # The book's text column is about 700 px wide: pixels beyond that only cost bytes.
        self.max_width_px = max_width_px
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        #: What every frame shows; each frame's alt text adds its control values.
        name = getattr(fn, "__name__", "").strip("_<>").removeprefix("draw").replace("_", " ").strip()
        self.alt = alt or (doc[0].rstrip(".") if doc else f"Figure ({name})" if name else "Figure")
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
        self._cache: OrderedDict[tuple[tuple[int, ...], str], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._urgent = 0  # redraws the reader waits for; the background thread lets them go first
        self._todo: list[tuple[int, ...]] = []  # frames to draw ahead (live mode, PNG)
        self._then: Callable[[tuple[int, ...]], None] | None = None  # called after each is drawn
        self._todo_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.last_redraw_s: float | None = None
        self.links: list[W.Widget] = []  # the jslinks of the last static widget

    @property
    def n_frames(self) -> int:
        n = 1
        for c in self.controls.values():
            n *= len(c.values)
        return n

    def describe(self, index: tuple[int, ...]) -> str:
        """The text alternative of one frame: what it shows, and the control values.

        >>> Experiment(lambda lr: None, alt="Loss curves", lr=[0.1, 1.0]).describe((1,))
        'Loss curves: lr = 1'
        """
        values = ", ".join(f"{c.description or k} = {c.labels[i]}"
                           for (k, c), i in zip(self.controls.items(), index))
        return f"{self.alt}: {values}"

    def _cached(self, key: tuple[tuple[int, ...], str]) -> bytes | None:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        return None

    def render(self, index: tuple[int, ...], fmt: str = "png") -> bytes:
        """Image bytes (``fmt`` 'png' or 'webp') of the frame for one index per control (cached)."""
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}; got {fmt!r}")
        data = self._cached((index, fmt))
        if data is not None:
            return data
        self._urgent += 1
        try:
            with _DRAW_LOCK:
                return self._draw(index, fmt)
        finally:
            self._urgent -= 1

    def _draw(self, index: tuple[int, ...], fmt: str = "png") -> bytes:
        """Draw one frame; the caller holds the draw lock."""
        data = self._cached((index, fmt))  # drawn by the background thread while we waited
        if data is not None:
            return data
        kwargs = {k: c.values[i] for (k, c), i in zip(self.controls.items(), index)}
        fig = self.fn(**kwargs)
        if not isinstance(fig, Figure):
            raise TypeError(f"{getattr(self.fn, '__name__', 'fn')} must return a matplotlib Figure; "
                            f"got {type(fig).__name__}")
        data = FORMATS[fmt](fig, min(self.dpi, self.max_width_px / fig.get_figwidth()))
        with self._cache_lock:
            self._cache[(index, fmt)] = data
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return data

    def neighbours(self, index: tuple[int, ...], moved: int | None = None,
                   step: int = 1) -> list[tuple[int, ...]]:
        """Frames one step away: each slider one notch either way, every other option of a drop-down
        or toggle. The control moved last comes first, the way it was moved (``step``) first,
        since readers tend to keep moving it.

        >>> exp = Experiment(lambda a, b: None, a=[1, 2, 3], b=Dropdown(["x", "y"]))
        >>> exp.neighbours((1, 0), moved=0, step=-1)
        [(0, 0), (2, 0), (1, 1)]
        """
        controls = list(self.controls.values())
        order = sorted(range(len(index)), key=lambda k: k != moved)
        out = []
        for k in order:
            n = len(controls[k].values)
            if isinstance(controls[k], Slider):
                ahead = 1 if (k != moved or step >= 0) else -1
                candidates = [index[k] + ahead, index[k] - ahead]
            else:
                candidates = [(index[k] + d) % n for d in range(1, n)]
            out += [index[:k] + (i,) + index[k + 1:] for i in candidates if 0 <= i < n and i != index[k]]
        return out

    def _prefetch(self, indices: list[tuple[int, ...]],
                  then: Callable[[tuple[int, ...]], None] | None = None) -> None:
        """Draw these frames in a background thread (replacing any not yet drawn), calling
        ``then(index)`` after each one (live mode pushes it to the browser)."""
        with self._todo_lock:
            self._todo, self._then = list(indices), then
            if not self._todo or (self._worker is not None and self._worker.is_alive()):
                return
            self._worker = threading.Thread(target=self._prefetch_loop, daemon=True,
                                            name=f"coursekit-prefetch-{getattr(self.fn, '__name__', '')}")
            _WORKERS.add(self._worker)
            self._worker.start()

    def _prefetch_loop(self) -> None:
        """Draw the wanted frames one by one; the thread ends when none are left."""
        while not _STOPPING.is_set():
            with self._todo_lock:
                if not self._todo:
                    self._worker = None
                    return
                index, then = self._todo.pop(0), self._then
            while self._urgent:  # a redraw the reader waits for goes first
                time.sleep(0.002)
            try:
                with _DRAW_LOCK:
                    self._draw(index)
                if then is not None:
                    then(index)
            except Exception:  # noqa: BLE001 - the reader sees the error if they move there
                pass
            time.sleep(0.001)  # let the kernel's thread take the GIL between frames

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
        # One layout model for every frame and one for every stack: 60 frames, 2 models, not 80.
        self._frame_layout, self._stack_layout = W.Layout(max_width="100%"), W.Layout()
        view = self._live_view(ctrls) if live else self._static_view(ctrls)
        box.children = (*box.children, view)
        return box

    def _frame(self, data: bytes, alt: str, fmt: str = "png") -> W.Image:
        # The tooltip becomes the image's title; the book's script copies it to alt.
        image = _Frame(value=data, format=fmt, layout=self._frame_layout, tooltip=alt)
        image.add_class("coursekit-frame")
        return image

    def _ahead(self, index: tuple[int, ...], moved: int | None, step: int) -> list[tuple[int, ...]]:
        """The frames to draw ahead, likeliest first: one notch on along the slider moved last, two
        notches on, then the other neighbours (readers tend to keep moving a slider one way)."""
        out = self.neighbours(index, moved, step)
        control = list(self.controls.values())[moved] if moved is not None else None
        if isinstance(control, Slider) and step:
            i = index[moved] + (2 if step > 0 else -2)
            if 0 <= i < len(control.values):
                out.insert(1, index[:moved] + (i,) + index[moved + 1:])
        return out

    def _live_view(self, ctrls: list[W.Widget]) -> LiveFigure:
        start = tuple(c.default_index for c in self.controls.values())
        fig = LiveFigure(controls=ctrls, value=self.render(start), index=list(start),
                         alt=self.describe(start), layout=self._frame_layout)
        last = [start]

        def push(index: tuple[int, ...], again: bool = False) -> None:
            if again or index not in fig.sent:
                fig.push(index, self.render(index), self.describe(index), again)

        def ahead(index: tuple[int, ...], moved: int | None = None, step: int = 0) -> None:
            if self.prefetch:
                self._prefetch([i for i in self._ahead(index, moved, step) if i not in fig.sent], push)

        def redraw(_change=None) -> None:
            # The browser switched already if it had the frame; otherwise it waits for this one.
            t0 = time.perf_counter()
            index = tuple(c.index for c in ctrls)
            push(index)
            self.last_redraw_s = time.perf_counter() - t0
            moved = next((k for k, (a, b) in enumerate(zip(index, last[0])) if a != b), None)
            step = 0 if moved is None else index[moved] - last[0][moved]
            last[0] = index
            ahead(index, moved, step)

        def hello(_widget, content: dict, _buffers) -> None:
            # A view that starts afresh (a reload, a second view) holds only the first frame.
            if isinstance(content, dict) and content.get("hello"):
                fig.forget(start)
                index = tuple(c.index for c in ctrls)
                push(index, again=index != start)
                ahead(index)

        for c in ctrls:
            c.observe(redraw, names="index")
        fig.on_msg(hello)
        ahead(start)
        return fig

    def _static_view(self, ctrls: list[W.Widget]) -> W.Widget:
        sizes = [len(c.values) for c in self.controls.values()]
        # Palette WebP: the palette PNG's pixels in fewer bytes; the static book is drawn once.
        frames = {idx: self.render(idx, "webp") for idx in itertools.product(*map(range, sizes))}
        # Identical frames (a control that does not change this panel, a run that stopped early)
        # are stored once: one Image model, shown in several places of the stack.
        shows: dict[bytes, list[tuple[int, ...]]] = {}
        for idx, png in frames.items():
            shows.setdefault(png, []).append(idx)
        images = {data: self._frame(data, "; also ".join(self.describe(i) for i in idxs[:3])
                                    + (f" (and {len(idxs) - 3} more settings)" if len(idxs) > 3 else ""), "webp")
                  for data, idxs in shows.items()}

        def build(prefix: tuple[int, ...]) -> W.Widget:
            level = len(prefix)
            if level == len(sizes):
                return images[frames[prefix]]
            stack = W.Stack([build(prefix + (i,)) for i in range(sizes[level])],
                            selected_index=ctrls[level].index, layout=self._stack_layout)
            self.links.append(W.jslink((ctrls[level], "index"), (stack, "selected_index")))
            return stack

        self.links = []
        return build(())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
