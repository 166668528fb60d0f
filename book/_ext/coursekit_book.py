"""Sphinx extension for the book: self-contained, light pages and honest buttons.

* sphinx-thebe (pulled in by Jupyter Book 1) registers its inline config once
  per build pass, so incremental builds repeat it and the page throws
  "THEBE_JS_URL has already been declared". We do not use Thebe (the launch
  buttons go to Binder, Colab and JupyterHub), so its scripts are dropped.
* Any other script registered twice is kept once: a second copy of the widget
  manager would render every widget twice.
* The theme loads Font Awesome twice: as a web font from its CSS, and as a
  1.5 MB script that swaps each icon for an SVG. The web font is enough, so the
  script is dropped from every page (a reader's first visit is 1.5 MB lighter).
* Experiments are drawn by book/_static/coursekit-widgets.js (the script ``nb_ipywidgets_js``
  adds to pages with widgets), which loads the 3.6 MB widget manager only for widgets it does
  not know. MathJax (1.2 MB) is fetched after the experiments are drawn, not before: on a slow
  phone it held up the first usable widget by seconds.
* Figures drawn by code cells load lazily, so they do not hold up the experiments, and their
  alt text says what they show (from the description coursekit puts in each PNG), not their path.
* Buttons go only where something is set: with no ``repository.url`` in
  ``_config.yml`` there is no repository, issue, edit or launch button, and a
  launch button shows only when its own URL is set.
* Numbers in the prose come from the run that built the page: ``{eval}`name``` shows the value a
  cell handed to ``coursekit.prose.prose(name=...)``. MyST-NB's own ``eval`` role needs inline
  execution (no cache); ours reads the value from the cached cell's output, and JupyterLab
  (jupyterlab-myst) asks the kernel for the same name, so one source renders in both.
* The ``.ipynb`` a reader downloads (like the one Colab or Binder opens) starts with a hidden
  cell that installs coursekit when it is missing: every chapter's first cell, kept in step with
  ``_config.yml`` by ``tools/notebooks.py install-cell``.
"""
from __future__ import annotations

import re
from pathlib import Path

# The theme's search field is named "Search" but shows "Search Ctrl+K": its name must contain its
# text (axe-core: label-content-name-mismatch). Without the aria-label the name is the text.
_SEARCH_LABEL = re.compile(r'(<button class="btn search-button-field[^"]*"[^>]*?) aria-label="[^"]*"')
# sphinxcontrib-bibtex gives its role="list" entries the deprecated role doc-biblioentry, which
# is no list item (axe-core: aria-required-children, critical).
_BIBENTRY = re.compile(r'(<div class="citation"[^>]*?) role="doc-biblioentry"')
# Figures that code cells drew are loaded lazily, so they do not compete with the experiments' frames
# on a slow link (and where a page needs the widget manager, it draws on `load`, which waits for them).
_STATIC_FIGURE = re.compile(r'<img (?![^>]*\bloading=)([^>]*src="[^"]*_images/)')
_FONTAWESOME_JS = re.compile(r'\s*<script[^>]*\ssrc="[^"]*_static/scripts/fontawesome\.js[^"]*"[^>]*></script>')
#: The launch buttons' URL keys in the theme options, and each button's name.
LAUNCH_URLS = ("binderhub_url", "colab_url", "jupyterhub_url", "deepnote_url")


def _key(js) -> tuple:
    return (getattr(js, "filename", js), tuple(sorted(getattr(js, "attributes", {}).items())))


def _is_thebe(js) -> bool:
    name = str(getattr(js, "filename", js) or "")
    body = str(getattr(js, "attributes", {}).get("body", ""))
    return "thebe" in name or "THEBE_JS_URL" in body


def clean_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for js in context.get("script_files", []):
        if _is_thebe(js) or _key(js) in seen:
            continue
        seen.add(_key(js))
        kept.append(js)
    context["script_files"] = kept


def _mathjax_later(html: str, mathjax_path: str) -> str:
    """On a page with experiments, turn MathJax's script tag into one the browser neither fetches
    nor runs: book/_static/coursekit-widgets.js fetches it once the experiments are drawn."""
    if "coursekit-widgets.js" not in html:
        return html
    tag = re.compile(r'<script (?:defer="defer" |async="async" )?src="([^"]*' + re.escape(mathjax_path)
                     + r'[^"]*)"(?: defer="defer"| async="async")?></script>')
    return tag.sub(r'<script src="\1" type="text/x-coursekit-later"></script>', html)


def only_buttons_with_targets(app, config) -> None:
    """Turn off every header button whose target is not configured."""
    opts = dict(config.html_theme_options or {})
    repo = (opts.get("repository_url") or "").strip()
    # Jupyter Book refuses these flags without a URL, so _config.yml leaves them off and they go on here.
    for flag in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        opts[flag] = bool(repo)
    if not repo:
        opts.pop("repository_url", None)
    launch = dict(opts.get("launch_buttons") or {})
    for key in LAUNCH_URLS:
        if not repo or not (launch.get(key) or "").strip():
            launch.pop(key, None)
    if not any(k in launch for k in LAUNCH_URLS):
        launch = {}
    opts["launch_buttons"] = launch
    config.html_theme_options = opts


def alt_text_from_figures(app, doctree) -> None:
    """Figures drawn by code cells say what they show, not where their file is.

    MyST-NB gives a cell's PNG output no ``alt``, so the HTML writer falls back to the file path.
    coursekit (``coursekit/figure_alt.py``) writes a description of each figure it shows (titles,
    axis labels, legend) into the PNG's ``Description`` text chunk; it becomes the image's alt text.
    """
    from docutils import nodes
    from PIL import Image

    for image in doctree.findall(nodes.image):
        uri = image.get("uri", "")
        if image.get("alt") or not uri.endswith(".png") or "://" in uri:
            continue
        # Sphinx's image collector (also on doctree-read) may have made the URI relative to the source folder.
        found = (image.get("candidates") or {}).get("*")
        path = Path(app.srcdir, found) if found else Path(app.env.relfn2path(uri, app.env.docname)[1])
        try:
            with Image.open(path) as png:
                text = (png.text or {}).get("Description", "").strip()
        except (OSError, ValueError):
            continue
        if text:
            image["alt"] = text


def _eval_role():
    """``{eval}`name```: the text a cell gave ``coursekit.prose.prose(name=...)``, read from the executed
    notebook (MyST-NB glue data), so it works with the execution cache."""
    from docutils import nodes
    from myst_nb.core.variables import RetrievalError
    from myst_nb.ext.glue.utils import glue_warning, retrieve_glue_data
    from myst_nb.ext.utils import RoleBase

    class ProseValue(RoleBase):
        def run(self):
            name = self.text.strip()
            try:
                data = retrieve_glue_data(self.document, name).data
            except RetrievalError:
                return [], [glue_warning(f"{{eval}}`{name}`: no value named {name!r} in this chapter; hand it to "
                                         f"coursekit.prose.prose({name}=...) in a cell above", self.document, self.line)]
            text = str(data.get("text/plain", ""))
            node = nodes.inline(text, text, classes=["pasted-text", "prose-value"])
            self.set_source_info(node)
            return [node], []

    return ProseValue()


def register_eval_role(app) -> None:
    app.add_role("eval", _eval_role(), override=True)


def finish(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        lean = _FONTAWESOME_JS.sub("", text)
        lean = _BIBENTRY.sub(r'\1 role="listitem"', _SEARCH_LABEL.sub(r"\1", lean))
        lean = _mathjax_later(_STATIC_FIGURE.sub(r'<img loading="lazy" \1', lean), app.config.mathjax_path)
        if lean != text:
            page.write_text(lean, encoding="utf-8")
    for name in ("fontawesome.js", "fontawesome.js.map", "fontawesome.js.LICENSE.txt"):
        (out / "_static" / "scripts" / name).unlink(missing_ok=True)


def setup(app):
    app.connect("config-inited", only_buttons_with_targets, priority=100)
    app.connect("html-page-context", clean_scripts, priority=900)
    app.connect("build-finished", finish)
    app.connect("builder-inited", register_eval_role)
    app.connect("doctree-read", alt_text_from_figures)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
