"""Shared helpers for the real-browser tests: Debian's Chromium driven by Playwright.

Chromium comes from apt (``/usr/bin/chromium``); Playwright's own browser
download cannot work offline, so it is never used.
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("COURSEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def require_chromium() -> str:
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package (apt-get install chromium)")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output readable
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """Serve ``directory`` over HTTP on a free loopback port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def browser_page(offline: bool = True):
    """A fresh page. With ``offline`` every request that leaves 127.0.0.1 is blocked and recorded.

    Yields ``(page, log)`` where ``log`` has ``'console_errors'``, ``'page_errors'`` and
    ``'external'`` (URLs that tried to leave the machine).
    """
    from playwright.sync_api import sync_playwright

    exe = require_chromium()
    log = {"console_errors": [], "page_errors": [], "external": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            page = context.new_page()

            def route(r):
                host = urlparse(r.request.url).hostname
                if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                    r.continue_()
                else:
                    log["external"].append(r.request.url)
                    r.abort()

            if offline:
                context.route("**/*", route)
            page.on("console", lambda m: m.type == "error" and log["console_errors"].append(m.text))
            page.on("pageerror", lambda e: log["page_errors"].append(str(e)))
            yield page, log
        finally:
            browser.close()
