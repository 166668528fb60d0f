"""The web book: it builds with no warnings, and its pages work in a real browser with no network.

The build runs first (one module: one xdist worker under --dist loadscope, file order), then the
browser tests open what it produced.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from browser import browser_page, serve

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")



def chapters() -> list[str]:
    """Notebook chapters listed in _toc.yml, in order."""
    toc = (ROOT / "_toc.yml").read_text()
    return [f for f in re.findall(r"file:\s*(\S+)", toc) if (ROOT / f"{f}.ipynb").exists()]


def test_book_builds_without_warnings():
    vendor = ROOT / "book" / "_static" / "vendor"
    assert (vendor / "embed-amd.js").exists(), "run `make vendor` (npm assets) before building the book"
    proc = subprocess.run([str(JUPYTER_BOOK), "build", str(ROOT), "--warningiserror", "--keep-going"],
                          capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert not re.search(r"WARNING: (?!.*Kernel is running over TCP)", log), log[-4000:]
    assert (HTML / "index.html").exists()
    for chapter in chapters():
        page = (HTML / f"{chapter}.html").read_text()
        assert "application/vnd.jupyter.widget-state+json" in page, f"{chapter}: no widget state embedded"
        # Every script the page loads is the book's own (launch links are plain <a> tags).
        srcs = re.findall(r'<script[^>]*\ssrc="([^"]+)"', page)
        assert srcs and not [s for s in srcs if s.startswith(("http:", "https:", "//"))], srcs
        assert page.count("vendor/embed-amd.js") == 1, "the widget manager is loaded more than once"
    intro = (HTML / "index.html").read_text() + (HTML / "book" / "intro.html").read_text()
    assert "How to read this book" in intro and "Using a GPU" in intro


def _visible_frame(experiment):
    """src of the one image the experiment currently shows."""
    imgs = experiment.locator("img")
    shown = [imgs.nth(i) for i in range(imgs.count()) if imgs.nth(i).is_visible()]
    assert len(shown) == 1, f"expected exactly one visible frame, saw {len(shown)}"
    return shown[0].get_attribute("src")


def _control_moves(page, exp) -> list:
    """One (name, action) per control of an experiment: each action changes that control's value."""
    moves = []
    handles = exp.locator(".noUi-handle")
    for j in range(handles.count()):
        def slide(h=handles.nth(j)):
            h.focus()
            page.keyboard.press("ArrowRight" if h.get_attribute("aria-valuenow") != h.get_attribute("aria-valuemax")
                                else "ArrowLeft")
        moves.append((f"slider {j}", slide))
    selects = exp.locator("select")
    for j in range(selects.count()):
        def choose(sel=selects.nth(j)):
            n, current = sel.locator("option").count(), sel.evaluate("s => s.selectedIndex")
            sel.select_option(index=(current + 1) % n)
        moves.append((f"drop-down {j}", choose))
    groups = exp.locator(".widget-toggle-buttons")
    for j in range(groups.count()):
        def toggle(g=groups.nth(j)):
            buttons = g.locator("button")
            pressed = [k for k in range(buttons.count()) if "mod-active" in (buttons.nth(k).get_attribute("class") or "")]
            buttons.nth(((pressed[0] if pressed else 0) + 1) % buttons.count()).click()
        moves.append((f"toggle group {j}", toggle))
    return moves


@pytest.mark.browser
@pytest.mark.parametrize("chapter", chapters())
def test_static_chapter_is_interactive_offline(chapter):
    with serve(HTML) as base, browser_page(offline=True) as (page, log):
        page.goto(f"{base}/{chapter}.html", wait_until="load")
        page.wait_for_selector(".coursekit-experiment img", state="visible", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('mjx-container').length > 5", timeout=30_000)
        experiments = page.locator(".coursekit-experiment")
        assert experiments.count() >= 1
        for i in range(experiments.count()):
            exp = experiments.nth(i)
            exp.scroll_into_view_if_needed()
            moves = _control_moves(page, exp)
            assert moves, f"experiment {i} of {chapter} has no slider, drop-down or toggle buttons"
            for what, move in moves:
                before = _visible_frame(exp)
                move()
                page.wait_for_timeout(300)
                assert _visible_frame(exp) != before, f"experiment {i} of {chapter}: moving the {what} changed nothing"
        page.wait_for_timeout(500)
        assert log["external"] == [], f"requests tried to leave the machine: {log['external']}"
        assert log["page_errors"] == [], log["page_errors"]
        assert log["console_errors"] == [], log["console_errors"]


@pytest.mark.browser
def test_every_page_loads_offline_without_errors():
    pages = sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html") if "_static" not in p.parts)
    with serve(HTML) as base, browser_page(offline=True) as (page, log):
        for rel in pages:
            page.goto(f"{base}/{rel}", wait_until="load")
            page.wait_for_timeout(200)
        assert log["external"] == [], f"requests tried to leave the machine: {log['external']}"
        assert log["page_errors"] == [] and log["console_errors"] == [], log
