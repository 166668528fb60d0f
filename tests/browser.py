"""Shared helpers for the real-browser tests: Debian's Chromium driven by Playwright.

Chromium comes from apt (``/usr/bin/chromium``); Playwright's own browser
download cannot work offline, so it is never used.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import io
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


ROOT = Path(__file__).resolve().parents[1]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
#: The throttled profile a reader on a phone gets: 10 Mbit/s, 40 ms latency, a 4x slower CPU, 390 px.
PHONE = {"mbit_s": 10, "latency_ms": 40, "cpu_slowdown": 4, "viewport": {"width": 390, "height": 844}}
_COMPRESSIBLE = (".html", ".js", ".css", ".json", ".svg", ".txt", ".map", ".ipynb", ".ttf", ".eot")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output readable
        pass


class _GzipHandler(_QuietHandler):
    """Like any static host (GitHub Pages, Netlify, nginx's gzip_static), text goes out gzipped."""

    _cache: dict[str, bytes] = {}

    def send_head(self):
        path = self.translate_path(self.path)
        if (not path.endswith(_COMPRESSIBLE) or "gzip" not in self.headers.get("Accept-Encoding", "")
                or not os.path.isfile(path)):
            return super().send_head()
        key = f"{path}:{os.path.getmtime(path)}"
        body = self._cache.get(key)
        if body is None:
            body = self._cache[key] = gzip.compress(Path(path).read_bytes(), compresslevel=6)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a page closed mid-download is no error
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(directory: Path, compress: bool = False):
    """Serve ``directory`` over HTTP on a free loopback port; yields the base URL.

    ``compress`` gzips text (HTML, JS, CSS) as production static hosts do.
    """
    handler = functools.partial(_GzipHandler if compress else _QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def require_axe() -> Path:
    if not AXE_JS.exists():
        pytest.skip(f"no axe-core at {AXE_JS}: run `npm ci` (package.json lists axe-core)")
    return AXE_JS


def axe_violations(page, impacts=("critical", "serious")) -> list[dict]:
    """Run axe-core (served from node_modules, never a network) on the page; the violations of these impacts.

    Each is ``{'id', 'impact', 'help', 'nodes': [target selectors]}``.
    """
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(require_axe()))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in impacts]


#: Runs in a page before the page's own scripts: on each animation frame it checks whether every
#: experiment shows a loaded frame with alt text, and records the first time it does (ms since
#: navigation) in window.__coursekitTTI. Polling from the page itself keeps the test's own
#: machinery (Playwright's injected scripts) out of the figure.
TTI_PROBE = """(() => {
  const ready = () => {
    const exps = [...document.querySelectorAll('.coursekit-experiment')];
    return exps.length > 0 && exps.every(e => [...e.querySelectorAll('img')].some(
      i => i.offsetParent !== null && i.complete && i.naturalWidth > 0 && i.alt));
  };
  // every frame, and every 100 ms too: a page the browser counts as hidden gets no animation frames
  let timer = null;
  const check = () => {
    if (window.__coursekitTTI !== undefined) return;
    if (ready()) { window.__coursekitTTI = performance.now(); clearInterval(timer); }
    else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
  timer = setInterval(check, 100);
})();"""


def time_to_interactive(page, url: str, timeout_s: float = 60) -> float:
    """Open ``url`` and return the seconds from navigation until every experiment shows its figure."""
    import time

    page.add_init_script(TTI_PROBE)
    page.goto(url, wait_until="commit")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ms = page.evaluate("window.__coursekitTTI")
        if ms is not None:
            return ms / 1000
        page.wait_for_timeout(100)
    state = page.evaluate("""() => [...document.querySelectorAll('.coursekit-experiment')].map((e, n) =>
        `experiment ${n}: ` + ([...e.querySelectorAll('img')].map(i => `img complete=${i.complete} ` +
        `width=${i.naturalWidth} shown=${i.offsetParent !== null} alt=${!!i.alt}`).join('; ') || 'no img'))""")
    raise TimeoutError(f"{url}: the experiments did not show their figures within {timeout_s} s; "
                       f"visibility {page.evaluate('document.visibilityState')}; " + " | ".join(state or ["no experiments"]))


def throttle(page, profile: dict = PHONE) -> None:
    """Throttle network and CPU through Chromium's DevTools protocol (as Lighthouse's mobile profile does)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    bytes_s = profile["mbit_s"] * 1e6 / 8
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": profile["latency_ms"],
                                                  "downloadThroughput": bytes_s, "uploadThroughput": bytes_s})
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": profile["cpu_slowdown"]})


@contextlib.contextmanager
def chromium():
    """A headless Debian Chromium; yields Playwright's Browser."""
    from playwright.sync_api import sync_playwright

    exe = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


#: Errors of other projects' code that we know and cannot fix here, by a function on their stack.
#: JupyterLab 4's cell toolbar measures a markdown cell's rendered node, which jupyterlab-myst's
#: renderer does not have (harmless: the toolbar just does not move out of the way).
UPSTREAM_ERRORS = ("_markdownOverlapsToolbar",)


def _upstream(error) -> bool:
    stack = getattr(error, "stack", "") or ""
    return any(name in stack for name in UPSTREAM_ERRORS)


@contextlib.contextmanager
def browser_page(offline: bool = True):
    """A fresh page. With ``offline`` every request that leaves 127.0.0.1 is blocked and recorded.

    Yields ``(page, log)`` where ``log`` has ``'console_errors'``, ``'page_errors'``,
    ``'external'`` (URLs that tried to leave the machine) and ``'upstream'`` (the known errors of
    other projects' code, :data:`UPSTREAM_ERRORS`, kept apart from ``'page_errors'``).
    """
    from playwright.sync_api import sync_playwright

    exe = require_chromium()
    log = {"console_errors": [], "page_errors": [], "external": [], "upstream": []}
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
            page.on("pageerror", lambda e: log["upstream" if _upstream(e) else "page_errors"].append(str(e)))
            yield page, log
        finally:
            browser.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyterlab_server(tmp_path, files):
    """A real JupyterLab on a free loopback port, serving copies of ``files``; yields its URL.

    It runs with ``--expose-app-in-browser``, so a test can drive it through ``window.jupyterapp``."""
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    work = tmp_path / "work"
    work.mkdir()
    for f in files:
        shutil.copy(f, work / Path(f).name)
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
