"""Live mode: a real JupyterLab on localhost, chapter 1 run in a real kernel, a slider moved in Chromium.

The figure must be redrawn by the Python callback (the kernel), not switched
from precomputed frames: the test checks the widget is the live kind and that
the kernel's image changes after the slider moves. A frame seen before must come
from the browser's own cache: going back to it shows it before any message from
the kernel reaches the page.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from browser import browser_page, jupyterlab_server

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "ch01_how_a_network_learns.ipynb"
pytestmark = pytest.mark.browser
# The open notebook's kernel, in the page (JupyterLab runs with --expose-app-in-browser).
KERNEL = ("() => { const w = window.jupyterapp.shell.currentWidget;"
          " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;")


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free loopback port, serving a copy of the chapter; yields its URL."""
    with jupyterlab_server(tmp_path, [ROOT / "book" / CHAPTER]) as url:
        yield url


def test_live_chapter_redraws_from_python_and_shows_seen_frames_without_the_kernel(jupyterlab):
    with browser_page(offline=True) as (page, log):
        page.set_default_timeout(60_000)
        page.goto(f"{jupyterlab}/lab/tree/{CHAPTER}")
        page.wait_for_function("window.jupyterapp !== undefined")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        # Wait for the kernel, then run every cell as a student would from the Run menu.
        page.wait_for_function(KERNEL + " return k && k.status === 'idle'; }", timeout=120_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        live = page.locator(".coursekit-experiment.coursekit-live").first
        live.wait_for(state="visible", timeout=180_000)
        assert page.locator(".coursekit-static").count() == 0, "JupyterLab should get the live widget"
        img = live.locator("img").first
        img.wait_for(state="visible")
        first_src, first_alt = img.get_attribute("src"), img.get_attribute("alt")
        live.scroll_into_view_if_needed()
        handle = live.locator(".noUi-handle").first
        name = live.locator(".widget-slider").first.locator(".widget-label").first.text_content().strip()
        # Accessible in JupyterLab too: the frame says what it shows, the handle its name and value.
        assert name and f"{name} = 0.4," in first_alt, (name, first_alt)
        page.wait_for_function("h => h.getAttribute('aria-valuetext') === '0.4'", arg=handle.element_handle())
        assert handle.get_attribute("aria-label") == name

        # A new frame: drawn by the kernel's Python callback.
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([el, old]) => el.getAttribute('src') !== old", arg=[img.element_handle(), first_src], timeout=30_000)
        label = live.locator(".widget-readout").first.inner_text()
        assert label.strip() == "0.7", f"the slider should have moved from 0.4 to 0.7; it reads {label!r}"
        assert f"{name} = 0.7," in img.get_attribute("alt")
        page.wait_for_function("h => h.getAttribute('aria-valuetext') === '0.7'", arg=handle.element_handle())

        # A seen frame comes from the browser's own cache: going back shows the first frame again
        # before any message from the kernel has reached the page (it switches in the key press's
        # own task; the kernel's answer to the slider's move comes later, if at all).
        page.evaluate("""img => {
          const w = window.jupyterapp.shell.currentWidget, k = w.sessionContext.session.kernel;
          const c = window.__count = {recv: 0, atPress: -1, atSwitch: -1};
          k.anyMessage.connect((_, m) => { if (m.direction === 'recv') c.recv++; });
          document.addEventListener('keydown', () => { c.atPress = c.recv; }, true);
          new MutationObserver(() => { if (c.atSwitch < 0) c.atSwitch = c.recv; })
            .observe(img, {attributes: true, attributeFilter: ['src']});
        }""", img.element_handle())
        handle.focus()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("([el, old]) => el.getAttribute('src') === old",
                               arg=[img.element_handle(), first_src], timeout=5_000)
        count = page.evaluate("window.__count")
        assert count["atPress"] >= 0 and count["atSwitch"] == count["atPress"], \
            f"kernel messages arrived between the key press and the cached frame: {count}"
        assert img.get_attribute("alt") == first_alt
        page.wait_for_function("h => h.getAttribute('aria-valuetext') === '0.4'", arg=handle.element_handle())
        assert log["external"] == [], f"requests tried to leave the machine: {log['external']}"
        assert log["page_errors"] == [], log["page_errors"]
