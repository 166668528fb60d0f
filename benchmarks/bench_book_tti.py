"""Time to interactive of the web book's chapters on a throttled phone, and frame switches there.

Side by side on the same build, alternating in each round: the experiments drawn by
book/_static/coursekit-widgets.js ("native") and by its fallback, the 3.6 MB ipywidgets manager
(forced with ``?widgets=manager``; it is loaded after the page is parsed, so it is a little slower
than a page that loads the manager in its head, as the book did before).

* TTI: first visit (empty cache) at 10 Mbit/s, 40 ms latency, a 4x slower CPU and 390 px
  (tests/browser.py PHONE), text gzipped; from navigation to every experiment showing a loaded
  frame with its alt text (tests/browser.py time_to_interactive, as tests/test_book.py measures it).
* Switch: on the same profile, from a key press on the first slider to the new frame on screen
  (decoded), for a frame not seen before and for one seen before.

Needs the built book (``make book``) and Debian's chromium.

    python benchmarks/bench_book_tti.py [--rounds 3] [book/ch01_how_a_network_learns ...]

The last line is ``book_tti_worst_chapter_s=<n>``: the slowest chapter's median TTI (target <= 5 s).
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import PHONE, chromium, serve, throttle, time_to_interactive  # noqa: E402

HTML = ROOT / "_build" / "html"
# Resolves with the ms from the next key press on the slider to a different frame shown and decoded.
ARM = """() => {
    const slider = document.querySelector('.coursekit-experiment input[type=range], .coursekit-experiment .noUi-handle');
    const exp = slider.closest('.coursekit-experiment');
    const shown = () => [...exp.querySelectorAll('img')].find(i => i.offsetParent !== null);
    const before = shown();
    window.__switch = new Promise(done => {
        slider.addEventListener('keydown', ev => {
            const t0 = performance.now();
            (function poll() {
                const now = shown();
                if (now && now !== before && now.complete && now.naturalWidth > 0) done(performance.now() - t0);
                else requestAnimationFrame(poll);
            })();
        }, {capture: true, once: true});
        setTimeout(() => done(null), 10000);  // no new frame: reported, not waited for
    });
    slider.focus();
}"""


def chapters() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return [f for f in re.findall(r"file:\s*(\S+)", toc) if (ROOT / f"{f}.ipynb").exists()]


def visit(browser, url: str) -> tuple[float, list[float]]:
    """TTI in s, then the switch times in ms (two new frames, then the first one again)."""
    ctx = browser.new_context(viewport=PHONE["viewport"])
    page = ctx.new_page()
    throttle(page)
    tti = time_to_interactive(page, url)
    switches = []
    if page.locator(".coursekit-experiment input[type=range], .coursekit-experiment .noUi-handle").count():
        page.wait_for_timeout(3000)  # let MathJax start and settle: the reader moves a control later
        for key in ("ArrowRight", "ArrowRight", "ArrowLeft"):
            page.evaluate(ARM)
            # [value, min, max] of the focused slider (a range input, or the widget manager's handle)
            v, lo, hi = page.evaluate("""() => { const s = document.activeElement;
                return s.tagName === 'INPUT' ? [+s.value, +s.min, +s.max]
                     : ['aria-valuenow', 'aria-valuemin', 'aria-valuemax'].map(a => +s.getAttribute(a)); }""")
            if (key == "ArrowRight" and v >= hi) or (key == "ArrowLeft" and v <= lo):
                key = "ArrowLeft" if key == "ArrowRight" else "ArrowRight"
            page.keyboard.press(key)
            ms = page.evaluate("window.__switch")
            if ms is None:
                print(f"{url}: {key} on the first slider showed no new frame within 10 s", flush=True)
            else:
                switches.append(ms)
    ctx.close()
    return tti, switches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("chapters", nargs="*", default=None)
    args = ap.parse_args()
    if not (HTML / "index.html").exists():
        sys.exit("build the book first: make book")
    names = args.chapters or chapters()
    modes = {"native": "", "manager": "?widgets=manager"}
    tti = {(c, m): [] for c in names for m in modes}
    new, seen = {m: [] for m in modes}, {m: [] for m in modes}
    with serve(HTML, compress=True) as base, chromium() as browser:
        for r in range(args.rounds):
            for c in names:
                for m in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
                    t, sw = visit(browser, f"{base}/{c}.html{modes[m]}")
                    tti[(c, m)].append(t)
                    new[m] += sw[:2]
                    seen[m] += sw[2:]
    print(f"{'chapter':32s} {'native TTI s':>12s} {'manager TTI s':>14s} {'ratio':>6s}")
    worst = 0.0
    for c in names:
        a, b = statistics.median(tti[(c, "native")]), statistics.median(tti[(c, "manager")])
        worst = max(worst, a)
        print(f"{c:32s} {a:12.2f} {b:14.2f} {b / a:5.1f}x")
    for m in modes:
        if new[m]:
            print(f"{m}: frame switch on the phone profile, median {statistics.median(new[m]):.0f} ms for a new frame, "
                  f"{statistics.median(seen[m]):.0f} ms for one seen before ({len(new[m]) + len(seen[m])} presses)")
    print(f"book_tti_worst_chapter_s={worst:.2f}")


if __name__ == "__main__":
    main()
