"""Every measured-looking number in a chapter's prose is printed by that chapter.

A sentence such as "the loss falls to about 0.17" must rest on code that runs in the
book. This test reads the markdown of every chapter in ``_toc.yml``, picks out the numbers
that look measured, and fails on each one that no output of that chapter contains,
naming the chapter, the sentence and the number.

**Where the outputs come from.** Executing fourteen chapters a third time (after the book
build and nbval) would cost CI minutes, so the test reads outputs that are already
executed and already checked: the text of the ``# NBVAL_CHECK_OUTPUT`` cells, which the
committed notebooks keep and which nbval, in the same ``make test`` run, re-executes and
compares with what the code prints today. A number found there is printed by the chapter
now, or nbval fails. Outputs of unchecked cells are not kept in the repository and nothing
checks that they stay the same, so a number only they show does not count: print it in a
checked cell near the sentence, or use MyST-NB's ``glue`` (a ``{glue:text}`` role holds no
literal number, so there is nothing to check in the prose).

**What looks measured** (see :func:`prose_numbers`):

- a decimal (``0.17``, ``1.8``), a number in e-notation (``3e-08``), a percentage, a number
  with a thousands separator (``33,000``) or an integer of 100 or more that is not a year;
- any number after a hedge ("about 8", "roughly", "nearly", "a factor of 6", ``\\approx``)
  or before "times" / "x" / "×", digits or a word ("a factor of about eight");
- a hedged power of ten (``about $10^{-9}$``).

Small plain integers ("30 layers", "chapter 6", "Lab 5") are structure, not measurements.
Inline code, fenced code, citations and other roles, links and years are skipped.

**What counts as evidence** for a number (see :func:`supported`): a number in a checked
output of the same chapter that rounds to it (prose rounds: "0.17" is supported by
``0.1712``; "95%" by ``0.951``); for a plain decimal or large integer, also a literal in
the chapter's code or in coursekit (a hyperparameter set in code, such as ``lr=0.003``);
and for any number, the short :data:`CONSTANTS` list of formula constants. A hedged
number ("about 6") is a claim about a result, so a code literal does not support it.
"""
from __future__ import annotations

import json
import math
import math as math_
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "# NBVAL_CHECK_OUTPUT"

#: Constants of formulas that prose may quote without printing them (value: what it is).
CONSTANTS = {
    0.25: "1/4, the sigmoid's largest slope",
    0.5: "1/2",
    1 / 3: "1/3",
    2 / 3: "2/3",
    5 / 3: "5/3, the tanh gain",
    math.sqrt(2): "sqrt 2, the ReLU gain",
    math.log(2): "ln 2",
    math.log(10): "ln 10, the loss of a uniform guess over 10 classes",
    math.e: "e",
    math.pi: "pi",
    2.0**-23: "float32 machine epsilon (about 1.2e-7)",
    2.0**-52: "float64 machine epsilon (about 2.2e-16)",
    2.0**-126: "float32's smallest normal number (about 1.2e-38)",
    65504.0: "float16's largest number",
}

#: Words that make a number a claim about a result ("only", "over", "at least" usually state a setting).
HEDGES = r"about|around|roughly|approximately|nearly|almost|close to|factor of|\\approx|\\sim|≈|~"
WORDS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())}
WORDS.update(twenty=20.0, thirty=30.0, forty=40.0, fifty=50.0, hundred=100.0, thousand=1000.0)
#: Words so common in ordinary prose ("only one", "about two of them") that only a ratio makes them a measurement.
WEAK_WORDS = {"zero", "one", "two"}

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+−]?\d+)?"
_TOKEN = re.compile(
    rf"(?P<hedge>(?:(?:{HEDGES})\s*(?:of\s+)?(?:about\s+)?)?)"
    rf"(?P<sign>[-−])?"
    rf"(?:(?P<sci>(?P<mant>\d+(?:\.\d+)?)\s*\\(?:times|cdot)\s*10\s*\^\s*\{{?\s*(?P<sexp>[-−]?\d+)\s*\}}?)|"
    rf"(?P<pow>10\s*\^\s*\{{?\s*(?P<exp>[-−]?\d+)\s*\}}?)|(?P<num>{_NUMBER})|"
    rf"(?P<word>\b(?:{'|'.join(WORDS)})\b))"
    rf"(?P<after>\s*(?:%|\\%|\s?percent|-?fold|\s?times\b|\s?×|x\b)?)",
    re.IGNORECASE,
)


# -- reading a chapter ----------------------------------------------------------------------
def _prose(markdown: str) -> str:
    """Markdown with code, roles, links and directive options removed, so only prose and math remain."""
    kept, fence = [], None
    for line in markdown.splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,}|:{3,})(.*)$", line)
        if fence is None and m:
            info = m.group(2).strip()
            # A directive ({admonition}, {note}, ...) holds prose; a fence with a language holds code.
            fence = (m.group(1), info.startswith("{") and not info.startswith(("{code", "{literalinclude")))
            continue
        if fence is not None and m and m.group(1) == fence[0] and not m.group(2).strip():
            fence = None
            continue
        if fence is not None and (not fence[1] or re.match(r"^\s*:\w[\w-]*:", line)):
            continue
        kept.append(line)
    text = "\n".join(kept)
    text = re.sub(r"\{[\w:.-]+\}`[^`]*`", " ", text)          # {cite}`x`, {glue:text}`x`, {numref}`x`
    text = re.sub(r"`+[^`]*`+", " ", text)                       # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)                     # link targets
    text = re.sub(r"https?://\S+", " ", text)
    text = re.sub(r"^#+\s.*$", " ", text, flags=re.MULTILINE)    # headings ("## 1. ...")
    text = re.sub(r"\\(?:t|d)?frac\s*(\d)(\d)", r"\\frac{\1}{\2}", text)  # \tfrac12: not "12"
    text = text.replace("{,}", ",")                               # 16{,}771
    return text


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence around text[start:end], on one line."""
    left = max(text.rfind(". ", 0, start), text.rfind("\n\n", 0, start), text.rfind(".\n", 0, start))
    right = min([i for i in (text.find(". ", end), text.find("\n\n", end), text.find(".\n", end)) if i >= 0]
                or [len(text)])
    sentence = " ".join(text[left + 1:right + 1].split())
    return sentence if len(sentence) <= 220 else sentence[:217] + "..."


def _value(token: re.Match) -> tuple[float, int | None]:
    """(value, decimals) of a token; decimals is None for a power of ten (an order of magnitude)."""
    if token["sci"]:  # 5.7\times10^{-5}
        exp = int(token["sexp"].replace("−", "-"))
        decimals = len(token["mant"].split(".")[1]) if "." in token["mant"] else 0
        return float(token["mant"]) * 10.0**exp, decimals - exp
    if token["pow"]:
        return 10.0 ** int(token["exp"].replace("−", "-")), None
    if token["word"]:
        return WORDS[token["word"].lower()], 0
    raw = token["num"].replace(",", "").replace("−", "-")
    mantissa = raw.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    if "e" in raw.lower():  # e-notation: precision is relative to the exponent
        decimals = decimals - int(raw.lower().split("e")[1])
    return float(raw), decimals


_RELATION = re.compile(r"=|\\approx|≈|\\geq?|\\leq?|<|>|\\sim|\\quad|,")


def _formula_before(text: str, math: list[tuple[int, int]], start: int) -> float | None:
    """The value of the formula just before a number in math ($\\sqrt{1/160} \\approx 0.079$ gives 0.0791)."""
    span = next((a for a, b in math if a < start < b), None)
    if span is None:
        return None
    pieces = _RELATION.split(text[span:start].strip("$ "))
    if len(pieces) < 2 or not pieces[-1].strip() == "":
        return None  # the number is not right after a relation sign
    expr = pieces[-2]
    for pattern, repl in ((r"\\left|\\right|\\[,!;]", ""), (r"\\(?:t|d)?frac\s*\{", "frac{"),
                          (r"\\sqrt", "sqrt"), (r"\\ln|\\log", "log"), (r"\\exp", "exp"),
                          (r"\\cdot|\\times", "*"), (r"\\pi", "pi"), (r"\^", "**"), (r"\{", "("),
                          (r"\}", ")"), (r"\)\s*\(", ")*("), (r"(?<=[\d)])\s*(?=[a-z(])", "*")):
        expr = re.sub(pattern, repl, expr)
    expr = re.sub(r"frac\(([^()]*)\)\(([^()]*)\)", r"((\1)/(\2))", expr)
    expr = re.sub(r"(sqrt|log|exp)\*?\s*(\d+(?:\.\d+)?)", r"\1(\2)", expr)  # \ln 10 -> log(10)
    if not expr.strip() or re.search(r"[^\d.+\-*/() ]", re.sub(r"sqrt|log|exp|pi", "", expr)):
        return None  # a symbol, not arithmetic
    try:
        value = eval(expr, {"__builtins__": {}}, {"sqrt": math_.sqrt, "log": math_.log,  # noqa: S307
                                                  "exp": math_.exp, "pi": math_.pi})
        return float(value)
    except Exception:  # noqa: BLE001 (not arithmetic after all)
        return None


def prose_numbers(markdown: str) -> list[dict]:
    """The measured-looking numbers of one markdown text: ``{text, value, decimals, hedged, kind, sentence}``.

    >>> [n["text"] for n in prose_numbers("A loss of about 0.17 after 30 epochs, 5x faster.")]
    ['about 0.17', '5x']
    """
    text, found = _prose(markdown), []
    math = [m.span() for m in re.finditer(r"\$\$.+?\$\$|\$[^$]+\$", text, re.DOTALL)]
    for t in _TOKEN.finditer(text):
        group = next(g for g in ("sci", "pow", "num", "word") if t[g])
        start = t.start(group)
        before = text[max(0, start - 1):start]
        if before and (before.isalnum() or before in "_\\^{.") and not t["hedge"]:
            continue  # part of a name, a LaTeX command, an exponent or a version string
        if t["num"] and re.match(r"\.\d", text[t.end("num"):t.end("num") + 2]):
            continue  # 2.13.0
        if t["num"] and "/" in (before + text[t.end("num"):t.end("num") + 1]) and not t["hedge"]:
            continue  # a fraction in a formula, 1/160
        hedged = bool(t["hedge"].strip())
        after = t["after"].strip().lower()
        ratio = bool(after) and "%" not in after and "percent" not in after
        percent = "%" in after or "percent" in after
        value, decimals = _value(t)
        if t["word"]:
            if not (hedged or ratio) or (t["word"].lower() in WEAK_WORDS and not ratio):
                continue
            kind = "word"
        elif t["sci"]:
            kind = "e-notation"
        elif t["pow"]:
            if not hedged:
                continue  # an order of magnitude inside a formula
            kind = "power of ten"
        elif percent:
            kind = "percentage"
        elif "e" in t["num"].lower():
            kind = "e-notation"
        elif "." in t["num"]:
            kind = "decimal"
        elif "," in t["num"]:
            kind = "thousands"
        elif hedged or ratio:
            kind = "hedged" if hedged else "ratio"
        elif value >= 100 and not (1900 <= value <= 2099 and decimals == 0):
            kind = "large integer"
        else:
            continue
        if percent:
            value, decimals = value / 100, decimals + 2
        found.append(dict(text=t.group(0).strip(), value=value, decimals=decimals, hedged=hedged,
                          kind=kind, sentence=_sentence(text, t.start(), t.end()),
                          formula=_formula_before(text, math, start)))
    return found


def output_numbers(text: str) -> list[float]:
    """Every number printed in an output text, with percentages also as fractions."""
    values = []
    for m in re.finditer(rf"[-−]?(?:{_NUMBER}|\.\d+)(%?)", text):
        raw = m.group(0).rstrip("%").replace(",", "").replace("−", "-")
        try:
            v = float(raw)
        except ValueError:
            continue
        values.append(v)
        if m.group(1):
            values.append(v / 100)
    return values


def code_literals(source: str) -> set[float]:
    """Numeric literals written in code (hyperparameters set in code), e.g. ``lr=0.003`` gives 0.003."""
    found = set()
    for m in re.finditer(r"(?<![\w.])(\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)", source):
        try:
            found.add(float(m.group(1).replace("_", "")))
        except ValueError:
            pass
    return found


def _rounds_to(candidate: float, value: float, decimals: int | None) -> bool:
    candidate, value = abs(candidate), abs(value)
    if decimals is None:  # "about 10^-9": the same order of magnitude
        return candidate > 0 and abs(math.log10(candidate) - math.log10(value)) <= 0.5
    return abs(candidate - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9) + 1e-15


def supported(number: dict, outputs: list[float], literals: set[float]) -> str | None:
    """What supports a prose number (a checked output, a code literal or a constant), or None."""
    value, decimals = number["value"], number["decimals"]
    if any(_rounds_to(o, value, decimals) for o in outputs):
        return "output"
    if any(_rounds_to(c, value, decimals) for c in CONSTANTS):
        return "constant"
    if number.get("formula") is not None and _rounds_to(number["formula"], value, decimals):
        return "formula"  # worked out in the sentence itself: sqrt{1/160} \approx 0.079
    if number["kind"] == "ratio" and value and (abs(value) in literals or 1 / abs(value) in literals):
        return "code"  # "lr x30", "falls 10x": a setting written as a ratio
    if not number["hedged"] and abs(value) in literals:
        return "code"
    return None


# -- the chapters -----------------------------------------------------------------------------
def chapters() -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text()
    return [ROOT / f"{f}.ipynb" for f in re.findall(r"file:\s*(\S+)", toc) if (ROOT / f"{f}.ipynb").exists()]


def _output_text(cell: dict) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if "text" in o:
            parts.append("".join(o["text"]))
        for mime, data in o.get("data", {}).items():
            if mime.startswith("text/"):
                parts.append("".join(data))
    return "\n".join(parts)


#: "a ± b" (or LaTeX's ``a \\pm b``): a measurement and its uncertainty, quoted together.
_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\\pm|±)\s*(\d+(?:\.\d+)?)")


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def unpaired_intervals(prose: str, printed: str) -> list[str]:
    """One line per "a ± b" of the prose that no "x ± y" of the printed text rounds to, as a pair.

    Each number on its own may well be printed somewhere else in the chapter (the digits of
    a small interval are common), so a stale interval passes the number-by-number check; the
    pair is what a reader takes from the sentence."""
    pairs = [(float(m.group(1)), float(m.group(2))) for m in _INTERVAL.finditer(printed)]
    problems = []
    for m in _INTERVAL.finditer(prose):
        a, b = m.group(1), m.group(2)
        if not any(_rounds_to(x, float(a), _decimals(a)) and _rounds_to(y, float(b), _decimals(b))
                   for x, y in pairs):
            problems.append(f'{m.group(0)!r} (interval) in: "{_sentence(prose, m.start(), m.end())}"')
    return problems


def unsupported_numbers(notebook: dict, extra_literals: set[float] = frozenset()) -> list[str]:
    """One line per prose number of the notebook that no checked output, code literal or constant
    supports, and per interval "a ± b" that no checked output prints as a pair."""
    cells = notebook["cells"]
    checked = "\n".join(_output_text(c) for c in cells
                        if c["cell_type"] == "code" and MARK in "".join(c["source"]))
    outputs = output_numbers(checked)
    literals = set(extra_literals) | code_literals("\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "code"))
    problems = []
    for c in cells:
        if c["cell_type"] != "markdown":
            continue
        for n in prose_numbers("".join(c["source"])):
            if not supported(n, outputs, literals):
                problems.append(f'{n["text"]!r} ({n["kind"]}) in: "{n["sentence"]}"')
        problems += unpaired_intervals(_prose("".join(c["source"])), checked)
    return problems


def _coursekit_literals() -> set[float]:
    return code_literals("\n".join(p.read_text() for p in (ROOT / "coursekit").rglob("*.py")))


@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_every_measured_number_in_the_prose_is_printed_by_the_chapter(chapter):
    problems = unsupported_numbers(json.loads(chapter.read_text()), _coursekit_literals())
    assert not problems, (
        f"{chapter.relative_to(ROOT)}: {len(problems)} number(s) in the prose that no checked output "
        f"(# NBVAL_CHECK_OUTPUT) of the chapter prints:\n  " + "\n  ".join(problems))


def unlabelled_spreads(notebook: dict) -> list[str]:
    """One line per printed line of a checked output with a "±" that does not say what it is.

    The book's one convention (coursekit.stats): after a mean of one setting "±" is the SD between
    seeds ("mean ± SD"); after a paired difference it is the 95% confidence interval ("95% CI").
    """
    problems = []
    for i, c in enumerate(notebook["cells"]):
        if c["cell_type"] != "code" or MARK not in "".join(c["source"]):
            continue
        for line in _output_text(c).splitlines():
            if "±" in line and not re.search(r"\bSD\b|\bCI\b", line):
                problems.append(f"cell {i}: {line.strip()!r}")
    return problems


def notebooks() -> list[Path]:
    """Every chapter, and every lab (student and instructor copies)."""
    return chapters() + sorted((ROOT / "labs").rglob("*.ipynb"))


@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_printed_spread_says_whether_it_is_an_sd_or_a_ci(notebook):
    problems = unlabelled_spreads(json.loads(notebook.read_text()))
    assert not problems, (
        f"{notebook.relative_to(ROOT)}: a checked output prints '±' without saying what it is; print "
        "'mean ± SD' (coursekit.stats.summarize) or '95% CI' (verdict, Comparison.line):\n  " + "\n  ".join(problems))


_EVAL = re.compile(r"\{eval\}`([^`]+)`")


def unbound_prose_values(notebook: dict) -> list[str]:
    """One line per {eval}`name` of the prose that no cell above hands to ``prose(name=...)``."""
    bound, problems = set(), []
    for i, c in enumerate(notebook["cells"]):
        source = "".join(c["source"])
        if c["cell_type"] == "code":
            for call in re.finditer(r"\bprose\(", source):
                bound |= set(re.findall(r"\b([A-Za-z_]\w*)\s*=(?!=)", source[call.end():]))
        elif c["cell_type"] == "markdown":
            problems += [f"cell {i}: {{eval}}`{name}`" for name in _EVAL.findall(source) if name.strip() not in bound]
    return problems


@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_every_prose_value_is_computed_in_a_cell_above_it(chapter):
    problems = unbound_prose_values(json.loads(chapter.read_text()))
    assert not problems, (f"{chapter.relative_to(ROOT)}: prose quotes values that no cell above computes; "
                          "hand each to coursekit.prose.prose(name=...) before the text:\n  " + "\n  ".join(problems))


# -- the checker itself ---------------------------------------------------------------------------
def _notebook(markdown: str, printed: str, checked: bool = True, code: str = "print(x)") -> dict:
    source = (MARK + "\n" if checked else "") + code
    return {"cells": [{"cell_type": "markdown", "source": markdown},
                      {"cell_type": "code", "source": source,
                       "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]}]}


def test_a_number_that_no_output_prints_fails_and_names_the_sentence():
    problems = unsupported_numbers(_notebook("Training is fast. The loss falls to about 0.42 here.",
                                             "final loss 0.31\n"))
    assert len(problems) == 1 and "'about 0.42'" in problems[0]
    assert "The loss falls to about 0.42 here." in problems[0]


def test_a_printed_number_passes_when_the_prose_rounds_it():
    assert not unsupported_numbers(_notebook("The loss falls to about 0.42, 95% accuracy.",
                                             "final loss 0.4213, accuracy 0.951\n"))


def test_only_checked_outputs_count():
    assert unsupported_numbers(_notebook("The loss falls to 0.42.", "0.42\n", checked=False))


def test_a_hedged_number_needs_an_output_even_if_the_code_has_the_literal():
    nb = _notebook("It shrinks by a factor of 6 per layer.", "done\n", code="a = math.sqrt(6 / n)")
    assert unsupported_numbers(nb)
    assert not unsupported_numbers(_notebook("We train with lr 0.003.", "done\n", code="lr = 0.003"))


def test_words_powers_of_ten_and_e_notation_are_read():
    nb = _notebook("A factor of about eight. It ends near $\\approx 10^{-9}$. The error is 3e-08.",
                   "ratio 7.9, output 9.3e-10, error 3.0e-08\n")
    assert not unsupported_numbers(nb)
    nb = _notebook("A factor of about eight. It ends near $\\approx 10^{-9}$. The error is 3e-08.",
                   "ratio 6.1, output 9.3e-06, error 5.0e-08\n")
    assert len(unsupported_numbers(nb)) == 3


def test_code_citations_structure_and_constants_are_not_numbers():
    md = ("See {cite}`he2015delving` and chapter 6, `init_std=0.5`, 30 layers in 2015, torch 2.13.0.\n"
          "```python\nlr = 0.123\n```\n"
          "A uniform guess gives $\\ln 10 \\approx 2.30$; the slope is at most $\\tfrac14 = 0.25$.")
    assert prose_numbers(md) == [] or not unsupported_numbers(_notebook(md, "\n"))
    assert [n["text"] for n in prose_numbers(md)] == ["\\approx 2.30", "0.25"]


def test_the_answer_of_a_dropdown_is_prose():
    md = "```{admonition} Answer\n:class: dropdown\nBy epoch 15 the loss is about 0.17.\n```"
    assert [n["text"] for n in prose_numbers(md)] == ["about 0.17"]


def test_an_interval_must_be_printed_as_a_pair():
    printed = "dropout vs none: +2.1 ± 1.5 points\ntest acc 44.2 ± 0.5, 1.9 and 1.4 elsewhere\n"
    assert not unsupported_numbers(_notebook("Dropout helps by $2.1 \\pm 1.5$ points.", printed))
    problems = unsupported_numbers(_notebook("Dropout helps by $1.9 \\pm 1.4$ points.", printed))
    assert len(problems) == 1 and "'1.9 \\\\pm 1.4' (interval)" in problems[0], problems
    assert "Dropout helps by" in problems[0]


def test_a_spread_must_say_what_it_is():
    sd = "dropout 65.4 ± 1.5 (mean ± SD, 5 seeds)\n"
    ci = "dropout vs none: +3.4 ± 0.7 points (5 seeds, 95% CI) -> helps\n"
    assert not unlabelled_spreads(_notebook("", sd + ci))
    bad = unlabelled_spreads(_notebook("", "after 600 steps: mean ± 95% interval\nReLU 0.74 ± 0.07 (8 seeds)\n"))
    assert len(bad) == 2 and "0.74 ± 0.07" in bad[1]
    assert not unlabelled_spreads(_notebook("", "ReLU 0.74 ± 0.07\n", checked=False))  # only checked cells count


def test_a_prose_value_must_be_computed_above_the_text():
    md = {"cell_type": "markdown", "source": "Dropout adds {eval}`gain` points."}
    code = {"cell_type": "code", "source": "prose(gain=f'{g:+.1f}', n=3)", "outputs": []}
    assert not unbound_prose_values({"cells": [code, md]})
    assert unbound_prose_values({"cells": [md, code]}) == ["cell 0: {eval}`gain`"]
    other = {"cell_type": "code", "source": "gain = 3\nprint(gain)", "outputs": []}
    assert unbound_prose_values({"cells": [other, md]}) == ["cell 1: {eval}`gain`"]
