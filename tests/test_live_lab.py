"""Live mode: a real JupyterLab on localhost, chapter 1 run in a real kernel, a slider moved in Chromium.

The figure must be redrawn by the Python callback (the kernel), not switched
from precomputed frames: the test checks the widget is the live kind and that
the kernel's image changes after the slider moves. A frame seen before must come
from the browser's own cache: going back to it shows it before any message from
the kernel reaches the page.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from browser import browser_page

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "ch01_how_a_network_learns.ipynb"
pytestmark = pytest.mark.browser
# The open notebook's kernel, in the page (JupyterLab runs with --expose-app-in-browser).
KERNEL = ("() => { const w = window.jupyterapp.shell.currentWidget;"
          " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free loopback port, serving a copy of the chapter; yields its URL."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "book" / CHAPTER, work / CHAPTER)
    config = tmp_path / "config"
    (config / "labconfig").mkdir(parents=True)
    # No news pop-up over the notebook.
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    env.pop("COURSEKIT_WIDGETS", None)
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={work}", "--expose-app-in-browser", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
