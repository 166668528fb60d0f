"""Experiment frames: small, stored once, described in words, and drawn ahead in live mode."""
from __future__ import annotations

import io
import time

import ipywidgets as W
import numpy as np
import pytest
from PIL import Image

from coursekit.plots import new_figure, to_png
from coursekit.widgets import Dropdown, Experiment, LiveFigure, Slider


def _draw(lr, opt="sgd"):
    fig, ax = new_figure(3, 2)
    t = np.linspace(0, 5, 50)
    ax.plot(t, np.exp(-lr * t), label=opt)
    ax.contour(*np.meshgrid(t, t), np.add.outer(t, lr * t), levels=8, colors="0.6", linewidths=0.7)
    ax.set_title(f"{opt}, $\\eta$ = {lr}")
    ax.legend()
    return fig


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_palette_frames_are_smaller_and_look_the_same():
    full, palette = to_png(_draw(0.5), colors=None), to_png(_draw(0.5))
    assert Image.open(io.BytesIO(palette)).mode == "P"
    assert len(palette) < 0.75 * len(full), (len(palette), len(full))
    diff = np.abs(_pixels(palette) - _pixels(full))
    assert diff.mean() < 0.5 and np.percentile(diff.max(-1), 99.9) <= 16, (diff.mean(), diff.max())
    with pytest.raises(ValueError, match="colors must be between 2 and 256"):
        to_png(_draw(0.5), colors=1000)


def test_lossless_webp_frames_are_exact_and_smaller_than_png():
    from coursekit.plots import to_webp

    exact, full = to_webp(_draw(0.5), colors=None), to_png(_draw(0.5), colors=None)
    assert (_pixels(exact) == _pixels(full)).all() and len(exact) < len(full)
    webp, png = to_webp(_draw(0.5)), to_png(_draw(0.5))
    assert (_pixels(webp) == _pixels(png)).all() and len(webp) < len(png)  # the same palette image, smaller


def test_wide_figures_are_drawn_at_most_as_wide_as_the_text_column():
    def wide(lr):
        fig, ax = new_figure(12, 3)
        ax.plot([0, lr])
        return fig

    exp = Experiment(wide, lr=[1, 2], dpi=100)
    assert Image.open(io.BytesIO(exp.render((0,)))).size == (exp.max_width_px, exp.max_width_px // 4)
    with pytest.raises(ValueError, match="fmt must be one of"):
        exp.render((0,), fmt="gif")


def test_identical_frames_are_stored_once_and_every_frame_says_what_it_shows():
    def draw(lr, opt):  # opt does not change this figure
        """Loss curves."""
        return _draw(lr)

    exp = Experiment(draw, lr=Slider([0.1, 0.5, 1.0], description="learning rate"), opt=Dropdown(["sgd", "adam"]))
    box = exp.widget(mode="static")
    images = {id(w): w for w in _walk(box) if isinstance(w, W.Image)}
    assert len(images) == 3  # six combinations, three distinct figures
    assert all(i.format == "webp" and bytes(i.value)[8:12] == b"WEBP" for i in images.values())
    alts = sorted(i.tooltip for i in images.values())
    assert alts[0] == "Loss curves: learning rate = 0.1, opt = sgd; also Loss curves: learning rate = 0.1, opt = adam"
    assert exp.describe((2, 1)) == "Loss curves: learning rate = 1, opt = adam"
    assert Experiment(_draw, alt="Decay", lr=[1]).alt == "Decay"


def test_live_mode_draws_the_neighbouring_frames_in_the_background_and_sends_them(monkeypatch):
    # What the kernel sends the browser (the browser's side is tested in test_live_lab.py).
    sent: list = []
    real_send = LiveFigure.send
    monkeypatch.setattr(LiveFigure, "send", lambda self, content, buffers=None: (
        sent.append((content, buffers)), real_send(self, content, buffers)))
    exp = Experiment(_draw, lr=Slider([0.1, 0.2, 0.4, 0.8]), opt=Dropdown(["sgd", "adam", "rmsprop"]))
    box = exp.widget(mode="live")
    slider, drop = box.children[0].children
    figure = box.children[1]
    assert figure.alt == "Figure: lr = 0.1, opt = sgd"  # no docstring, no alt: a plain name
    deadline = time.monotonic() + 30
    wanted = {(1, 0), (0, 1), (0, 2)}
    while not wanted <= figure.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wanted <= figure.sent, f"drawn ahead and sent: {sorted(figure.sent)}"
    assert {((i, "png")) for i in wanted} <= set(exp._cache)
    frame = next(c for c in sent if c[0]["frame"] == [1, 0])
    assert frame[0]["alt"] == "Figure: lr = 0.2, opt = sgd" and bytes(frame[1][0]) == exp.render((1, 0))
    n = len(sent)
    slider.index = 1  # a frame the browser has: the kernel sends nothing
    assert exp.last_redraw_s < 0.05
    time.sleep(0.5)
    assert all(c[0]["frame"] != [1, 0] for c in sent[n:])
    # Drawn ahead after that move: the neighbours, and two notches on along the slider.
    assert exp._ahead((1, 0), moved=0, step=1)[:3] == [(2, 0), (3, 0), (0, 0)]
    assert exp.neighbours((1, 0), moved=0, step=1)[:2] == [(2, 0), (0, 0)]


def test_a_view_that_starts_afresh_gets_its_frame_again(monkeypatch):
    # After a page reload the browser holds only the first frame and says hello: the kernel forgets
    # what it sent and sends the frame the controls show now.
    sent: list = []
    monkeypatch.setattr(LiveFigure, "send", lambda self, content, buffers=None: sent.append(content))
    exp = Experiment(_draw, lr=Slider([0.1, 0.2, 0.4, 0.8]), prefetch=False)
    box = exp.widget(mode="live")
    (slider,), figure = box.children[0].children, box.children[1]
    slider.index = 2
    slider.index = 3
    assert figure.sent == {(0,), (2,), (3,)} and sent[-1]["frame"] == [3]
    n = len(sent)
    figure._handle_custom_msg({"hello": True}, [])
    assert [c["frame"] for c in sent[n:]] == [[3]] and figure.sent == {(0,), (3,)}
    slider.index = 2  # sent before the reload, lost with it: sent again
    slider.index = 0  # the first frame came with the view: nothing to send
    assert [c["frame"] for c in sent[n:]] == [[3], [2]]
