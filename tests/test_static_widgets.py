"""The static book's experiments in a real browser, drawn by book/_static/coursekit-widgets.js.

Each test writes a page the way MyST-NB does (the widget state in the head, a view script where the
experiment is shown) from a real ``Experiment.widget(mode="static")``, so it needs no book build.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import ipywidgets as W
import pytest
from ipywidgets.embed import dependency_state

from browser import browser_page, serve
from coursekit.plots import new_figure
from coursekit.widgets import Dropdown, Experiment, Slider, Toggle

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "book" / "_static"
pytestmark = pytest.mark.browser


def _experiment() -> Experiment:
    def draw(lr, opt, grid):
        """Loss curves"""
        fig, ax = new_figure(3, 2)
        ax.plot([(1 - lr * (0.5 if opt == "adam" else 1)) ** t for t in range(20)])
        ax.grid(grid == "on")
        ax.set_title(f"{opt}, lr = {lr}")
        return fig

    return Experiment(draw, lr=Slider([0.1, 0.5, 0.9], description="learning rate η"),
                      opt=Dropdown(["sgd", "adam"], description="optimizer"),
                      grid=Toggle(["off", "on"], description="grid"))


def _page(folder: Path, exp: Experiment, *extra: W.Widget) -> str:
    """A page with the experiment (and ``extra`` widget models, not shown), as a chapter has it."""
    if not STATIC.joinpath("vendor", "embed-amd.js").exists():
        pytest.skip("run `make vendor` (npm assets) first")
    box = exp.widget(mode="static")
    state = dependency_state([box, *exp.links, *extra], drop_defaults=False)
    doc = json.dumps({"version_major": 2, "version_minor": 0, "state": state}).replace("</", "<\\/")
    view = json.dumps({"version_major": 2, "version_minor": 0, "model_id": box.model_id})
    (folder / "_static").symlink_to(STATIC, target_is_directory=True)
    (folder / "page.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>An experiment</title>
<link rel="stylesheet" href="_static/coursekit.css">
<script type="application/vnd.jupyter.widget-state+json">{doc}</script>
<script defer src="_static/coursekit-widgets.js"></script></head>
<body><main><h1>An experiment</h1>
<div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">{view}</script></div>
</main></body></html>""")
    return "page.html"


def _shown(page) -> dict:
    """The one frame the experiment shows: its alt text and (when it is inline data) its bytes."""
    frames = page.evaluate("""() => [...document.querySelectorAll('.coursekit-experiment img')]
        .filter(i => i.offsetParent !== null).map(i => ({alt: i.alt, src: i.src.startsWith('data:') ? i.src : null,
                                                         ok: i.complete && i.naturalWidth > 0}))""")
    assert len(frames) == 1, f"expected exactly one visible frame, saw {frames}"
    return frames[0]


def _wait_for_frame(page, exp: Experiment, index: tuple[int, ...]) -> dict:
    want = exp.describe(index)
    page.wait_for_function("""want => [...document.querySelectorAll('.coursekit-experiment img')].some(
        i => i.offsetParent !== null && i.complete && i.naturalWidth > 0 && i.alt.split('; also ').includes(want))""",
                           arg=want, timeout=10_000)
    return _shown(page)


def test_experiment_is_drawn_natively_with_accessible_controls(tmp_path):
    exp = _experiment()
    rel = _page(tmp_path, exp)
    with serve(tmp_path) as base, browser_page(offline=True) as (page, log):
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{base}/{rel}", wait_until="load")
        shown = _wait_for_frame(page, exp, (0, 0, 0))
        assert page.evaluate("window.coursekitWidgets.mode") == "native"
        assert not [u for u in requests if "embed-amd" in u or "require.js" in u], "the widget manager was loaded"
        assert base64.b64decode(shown["src"].split(",", 1)[1]) == exp.render((0, 0, 0), "webp")

        # The slider: a native range named after its control that reads out its value.
        rng = page.locator(".coursekit-experiment input[type=range]")
        assert rng.get_attribute("aria-label") == "learning rate η"
        readout = page.locator(".coursekit-experiment .widget-readout")
        assert (rng.get_attribute("aria-valuetext"), readout.text_content()) == ("0.1", "0.1")
        rng.focus()
        page.keyboard.press("ArrowRight")
        shown = _wait_for_frame(page, exp, (1, 0, 0))
        assert (rng.get_attribute("aria-valuetext"), readout.text_content()) == ("0.5", "0.5")
        assert base64.b64decode(shown["src"].split(",", 1)[1]) == exp.render((1, 0, 0), "webp")

        # The drop-down: a labelled <select>.
        select = page.locator(".coursekit-experiment select")
        assert select.evaluate("s => s.labels[0].textContent") == "optimizer"
        select.select_option(label="adam")
        _wait_for_frame(page, exp, (1, 1, 0))

        # Toggle buttons: a named group; the pressed one says so.
        group = page.locator(".coursekit-experiment [role=group]")
        assert group.evaluate("g => document.getElementById(g.getAttribute('aria-labelledby')).textContent") == "grid"
        buttons = group.locator("button")
        assert [buttons.nth(k).get_attribute("aria-pressed") for k in range(2)] == ["true", "false"]
        buttons.nth(1).click()
        _wait_for_frame(page, exp, (1, 1, 1))
        assert [buttons.nth(k).get_attribute("aria-pressed") for k in range(2)] == ["false", "true"]
        page.keyboard.press("Shift+Tab")  # back past the buttons and the drop-down to the slider; End: its last value
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("End")
        shown = _wait_for_frame(page, exp, (2, 1, 1))
        assert base64.b64decode(shown["src"].split(",", 1)[1]) == exp.render((2, 1, 1), "webp")

        # Only the five frames the reader has seen have an image (of 12): the others are built when shown.
        assert page.locator(".coursekit-experiment img").count() == 5
        assert log["page_errors"] == [] and log["console_errors"] == [] and log["external"] == [], log


def test_a_page_with_a_widget_it_does_not_know_falls_back_to_the_widget_manager(tmp_path):
    exp = _experiment()
    rel = _page(tmp_path, exp, W.FloatProgress(value=0.5))
    with serve(tmp_path) as base, browser_page(offline=True) as (page, log):
        page.goto(f"{base}/{rel}", wait_until="load")
        _wait_for_frame(page, exp, (0, 0, 0))
        assert page.evaluate("window.coursekitWidgets.mode") == "manager"
        handle = page.locator(".coursekit-experiment .noUi-handle")
        assert handle.get_attribute("aria-label") == "learning rate η"  # widgets-assets.js still names it
        handle.focus()
        page.keyboard.press("ArrowRight")
        _wait_for_frame(page, exp, (1, 0, 0))
        page.locator(".coursekit-experiment select").select_option(label="adam")
        _wait_for_frame(page, exp, (1, 1, 0))
        assert log["page_errors"] == [] and log["console_errors"] == [] and log["external"] == [], log
