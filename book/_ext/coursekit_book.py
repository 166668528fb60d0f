"""Sphinx extension for the book: keep every page self-contained and its scripts unique.

* sphinx-thebe (pulled in by Jupyter Book 1) registers its inline config once
  per build pass, so incremental builds repeat it and the page throws
  "THEBE_JS_URL has already been declared". We do not use Thebe (the launch
  buttons go to Binder, Colab and JupyterHub), so its scripts are dropped.
* Any other script registered twice is kept once: a second copy of the widget
  manager would render every widget twice.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", clean_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
