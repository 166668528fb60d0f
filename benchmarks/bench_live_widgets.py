"""What a student waits for in JupyterLab: key press (or click) on a control to the new image.

Starts a real JupyterLab (``--expose-app-in-browser``) on a copy of the chapters,
opens each chapter in headless Chromium (Debian's, through Playwright), runs
all its cells, then moves every control of every experiment, one step at a
time, the way a reader does: each slider notch by notch to its end and back,
each drop-down and toggle through its options and back. For every move it
times, in the page, from the key press (or the select/click event) to the
moment the image shows the new frame (its ``src`` and its alt text changed
and the image decoded). A frame the reader has not seen yet is *new*; going
back gives *seen* frames.

Between moves it waits ``--pause`` seconds, a reader looking at the figure;
coursekit draws the neighbouring frames in the kernel during that time and
sends them to the browser, which keeps every frame it has received (so a seen
frame, or one drawn ahead, shows with no round trip to the kernel).

    python benchmarks/bench_live_widgets.py [--pause 1.0] [book/ch01_how_a_network_learns.ipynb ...]

Target (issue 16): new frames <= 100 ms median, seen frames <= 30 ms.
The last line is ``live_new_frame_median_ms=<n>``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("COURSEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEFAULT_CHAPTERS = ["book/ch01_how_a_network_learns.ipynb", "book/ch03_optimizers.ipynb",
                    "book/ch07_regularization.ipynb"]

# In the page: remember when a control was used and when each image last changed.
PROBE = """() => {
  if (window.__bench) return;
  const b = window.__bench = {input: 0, changed: new Map()};
  const mark = () => { b.input = performance.now(); };
  document.addEventListener('keydown', mark, true);
  document.addEventListener('change', mark, true);
  document.addEventListener('pointerdown', mark, true);
  new MutationObserver(records => {
    for (const r of records) {
      const img = r.target;
      if (img.tagName !== 'IMG' || !img.closest('.coursekit-live')) continue;
      const t = performance.now();
      img.decode().catch(() => {}).then(() => b.changed.set(img, Math.max(t, performance.now())));
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['src', 'title']});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(work: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    config = tmp / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp / "rt"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("COURSEKIT_WIDGETS", None)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--IdentityProvider.token=", "--ServerApp.password=", "--allow-root", "--ServerApp.disable_check_xsrf=True",
         f"--ServerApp.root_dir={work}", "--expose-app-in-browser", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT, env=env, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(0.5)


def kernel_idle(page) -> None:
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }", timeout=600_000, polling=200)


def moves(page, exp) -> list:
    """(kind, action) for every single step through every control and back."""
    out = []
    for j in range(exp.locator(".noUi-handle").count()):
        h = exp.locator(".noUi-handle").nth(j)
        now, top = (int(float(h.get_attribute(a))) for a in ("aria-valuenow", "aria-valuemax"))
        keys = ["ArrowRight"] * (top - now) + ["ArrowLeft"] * top + ["ArrowRight"] * now
        out += [(lambda h=h, k=k: (h.focus(), page.keyboard.press(k))) for k in keys]
    for j in range(exp.locator("select").count()):
        sel = exp.locator("select").nth(j)
        n, now = sel.locator("option").count(), sel.evaluate("s => s.selectedIndex")
        order = [(now + d) % n for d in range(1, n)] + [(now + d) % n for d in range(n - 2, -1, -1)]
        out += [(lambda sel=sel, i=i: sel.select_option(index=i)) for i in order]
    for j in range(exp.locator(".widget-toggle-buttons").count()):
        buttons = exp.locator(".widget-toggle-buttons").nth(j).locator("button")
        n = buttons.count()
        now = next((k for k in range(n) if "mod-active" in (buttons.nth(k).get_attribute("class") or "")), 0)
        order = [(now + d) % n for d in range(1, n)] + [(now + d) % n for d in range(n - 2, -1, -1)]
        out += [(lambda b=buttons.nth(i): b.click()) for i in order]
    return out


def state(exp) -> tuple:
    """What the controls show now: slider readouts, drop-down and toggle choices."""
    return tuple(exp.evaluate("""e => [...e.querySelectorAll('.widget-readout, select')].map(x => x.value || x.textContent)
        .concat([...e.querySelectorAll('.widget-toggle-button.mod-active')].map(x => x.textContent))"""))


def time_moves(page, exp, pause: float) -> tuple[list[float], list[float]]:
    img = exp.locator("img").first
    new, seen, visited = [], [], {state(exp)}
    for move in moves(page, exp):
        page.wait_for_timeout(pause * 1000)
        before = page.evaluate("i => window.__bench.changed.get(i) || 0", img.element_handle())
        move()
        try:
            page.wait_for_function("([i, t]) => (window.__bench.changed.get(i) || 0) > t",
                                   arg=[img.element_handle(), before], timeout=20_000, polling="raf")
        except Exception:  # noqa: BLE001 - the frame did not change (identical figure): nothing to time
            continue
        ms = page.evaluate("i => window.__bench.changed.get(i) - window.__bench.input", img.element_handle())
        now = state(exp)
        (seen if now in visited else new).append(ms)
        visited.add(now)
    return new, seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chapters", nargs="*", default=DEFAULT_CHAPTERS)
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between moves (a reader looking)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set COURSEKIT_CHROMIUM)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    work = tmp / "work"
    work.mkdir()
    paths = [ROOT / c for c in args.chapters]
    for p in paths:
        shutil.copy(p, work / p.name)
    proc, url = start_lab(work, tmp)
    all_new, all_seen = [], []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            for p in paths:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(120_000)
                t0 = time.perf_counter()
                page.goto(f"{url}/lab/tree/{p.name}?reset")  # a fresh workspace: only this notebook open
                page.wait_for_function("window.jupyterapp !== undefined")
                page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached")
                kernel_idle(page)
                page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_selector(".coursekit-live img", timeout=600_000)
                page.wait_for_timeout(1000)
                kernel_idle(page)
                page.evaluate(PROBE)
                exps = page.locator(".coursekit-experiment.coursekit-live")
                print(f"{p.name}: ran in {time.perf_counter() - t0:.0f} s, {exps.count()} experiment(s)", flush=True)
                for i in range(exps.count()):
                    exp = exps.nth(i)
                    exp.scroll_into_view_if_needed()
                    new, seen = time_moves(page, exp, args.pause)
                    all_new += new
                    all_seen += seen
                    med = lambda xs: f"{statistics.median(xs):.0f}" if xs else "-"  # noqa: E731
                    print(f"  experiment {i}: new frames n={len(new)} median {med(new)} ms (max "
                          f"{max(new, default=0):.0f}); seen frames n={len(seen)} median {med(seen)} ms", flush=True)
                page.evaluate("window.jupyterapp.commands.execute('kernelmenu:shutdown')")
                page.close()
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"pause between moves {args.pause} s; seen frames: n={len(all_seen)} median "
          f"{statistics.median(all_seen) if all_seen else float('nan'):.1f} ms")
    print(f"live_seen_frame_median_ms={statistics.median(all_seen) if all_seen else float('nan'):.1f}")
    print(f"live_new_frame_median_ms={statistics.median(all_new) if all_new else float('nan'):.1f}")


if __name__ == "__main__":
    main()
