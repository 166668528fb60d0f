"""Lab sources, generated student versions and self-checks (no sandbox needed)."""
from __future__ import annotations

import json

import nbformat
import pytest
import torch

from coursekit.checks.compare import compare
from autograder.lab import DEFAULT_LABS_DIR, student_notebook_text, visible_expectations
from coursekit.checks.plain import PlainDataError, decode, encode
from autograder.source import SourceError, segments, strip_markers, student_version
from coursekit.checks import run_check

from ag_helpers import LABS, lab

LABS_DIR = DEFAULT_LABS_DIR


def test_there_are_at_least_seven_labs():
    assert len(LABS) >= 7


@pytest.mark.parametrize("name", LABS)
def test_student_version_is_in_sync_with_its_source(name):
    committed = (LABS_DIR / f"{name}.ipynb").read_text()
    assert committed == student_notebook_text(lab(name)), (
        f"labs/{name}.ipynb is stale: run `python -m autograder assign --lab {name}` and commit it")
    stored = json.loads((LABS_DIR / "checks" / f"{name}.json").read_text())["cases"]
    fresh = visible_expectations(lab(name))
    assert set(stored) == set(fresh), f"labs/checks/{name}.json is stale: run assign"
    # In sync means: the stored answer passes the case's own check against the answer computed here.
    # Not bit for bit: on another CPU a float32 layer rounds differently, and a trained model may
    # change a few of its 1000 predictions, and the case's tolerance is made for exactly that.
    cases = {c.key: c for c in lab(name).cases}
    for key in fresh:
        c = cases[key]
        assert c.judge(decode(fresh[key]), decode(stored[key]), None, c.steps(c.seed())) is None, (
            f"labs/checks/{name}.json: {key} no longer passes its own check: run assign")


def _blocks(text: str, begin: str, end: str) -> list[list[str]]:
    out, inside = [], None
    for line in text.splitlines():
        if line.strip() == begin:
            inside = []
        elif line.strip() == end:
            out.append(inside)
            inside = None
        elif inside is not None and line.strip() and not line.strip().startswith("#"):
            inside.append(line.strip())
    return out


@pytest.mark.parametrize("name", LABS)
def test_student_version_has_no_solutions_or_hidden_tests(name):
    text = (LABS_DIR / f"{name}.ipynb").read_text()
    cells = nbformat.reads(text, 4).cells
    joined = "\n".join(line.strip() for c in cells for line in c.source.splitlines())
    code_lines = {line.strip() for c in cells if c.cell_type == "code" for line in c.source.splitlines()}
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN", "END HIDDEN", "hidden=True"):
        assert marker not in text
    solutions, hidden = [], []
    for cell in lab(name).source.cells:
        solutions += _blocks(cell.source, "### BEGIN SOLUTION", "### END SOLUTION")
        hidden += _blocks(cell.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
    assert solutions and hidden
    for block in solutions + hidden:
        if len(block) == 1:
            assert block[0] not in code_lines, f"labs/{name}.ipynb leaks {block[0]!r}"
        else:
            assert "\n".join(block) not in joined, f"labs/{name}.ipynb leaks a block starting {block[0]!r}"
    for c in lab(name).cases:
        if c.hidden:
            assert c.name not in text, f"labs/{name}.ipynb names the hidden case {c.name!r}"
    stored = (LABS_DIR / "checks" / f"{name}.json").read_text()
    assert not [c.key for c in lab(name).cases if c.hidden and c.key in stored]
    assert all(c.metadata["autograder"]["locked"] == (c.metadata["autograder"]["role"] != "solution")
               for c in cells)


@pytest.mark.parametrize("name", LABS)
def test_reference_passes_every_visible_self_check(name):
    for q in lab(name).questions:
        if any(not c.hidden for c in lab(name).cases if c.question == q):
            result = run_check(q, lab(name).reference, lab(name).cases)
            assert result, repr(result)


def test_self_check_explains_a_failure_with_expected_and_actual():
    ns = dict(lab("03_optimizers").reference)
    ns["momentum_step"] = lambda w, grad, v, lr=0.01, momentum=0.9: (w - lr * grad, momentum * v + grad)  # w ignores v
    result = run_check("q1", ns, lab("03_optimizers").cases)
    text = repr(result)
    assert not result and result.score == 1.0   # the first step from zero velocity is still right
    assert "✗ matches torch.optim.SGD over 5 steps" in text
    assert "wrong values" in text and "expected [" in text and "got [" in text
    assert "AssertionError" not in text


def test_self_check_names_a_missing_function_and_a_type_error():
    ns = {k: v for k, v in lab("04_lr_schedules").reference.items() if k != "step_lr"}
    cases = lab("04_lr_schedules").cases
    assert "not implemented yet: step_lr is not defined" in repr(run_check("q1", ns, cases))
    ns["step_lr"] = lambda step, lr0, step_size, gamma: torch.tensor(lr0 * gamma ** (step // step_size))
    assert "wrong type: expected float, got Tensor" in repr(run_check("q1", ns, cases))


def test_strip_markers_and_unbalanced_markers_name_the_cell():
    code = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    assert "return 2 * x" not in strip_markers(code, "cell 3")
    with pytest.raises(SourceError, match=r"cell 3: '### BEGIN SOLUTION' on line 2 is never closed"):
        strip_markers("def f():\n    ### BEGIN SOLUTION\n    pass\n", "cell 3")
    with pytest.raises(SourceError, match="must say hidden=True"):
        segments("### BEGIN HIDDEN TESTS\ncase('q1', 'x', 1, fn='f', inputs=None)\n### END HIDDEN TESTS\n", "cell 4")


def test_student_version_rejects_duplicate_cell_ids():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("y = 2")]
    nb.cells[1]["id"] = nb.cells[0]["id"]
    with pytest.raises(SourceError, match="duplicate cell id"):
        student_version(nb, "demo", "demo.ipynb")


def test_plain_data_round_trip_and_strict_decoding():
    value = {"w": torch.randn(2, 3, dtype=torch.float64), "n": 3, "lr": 0.1, "t": (1, [2.5, float("nan")]),
             "ok": True, "none": None, "a": torch.arange(4).numpy()}
    back = decode(json.loads(json.dumps(encode(value))))
    assert torch.equal(back["w"], value["w"]) and back["w"].dtype == torch.float64
    assert back["t"][0] == 1 and type(back["t"]) is tuple and back["a"].dtype == value["a"].dtype
    for bad in [{"__pickle__": "gASV"}, {"a": 1, "b": 2}, {"__tensor__": {"dtype": "object", "shape": [1], "data": ""}},
                {"__tensor__": {"dtype": "float32", "shape": [3], "data": "AAAA"}}]:
        with pytest.raises(PlainDataError):
            decode(bad)
    class Sneaky:
        def __eq__(self, other):
            return True
    assert compare(1.0, decode(encode(Sneaky()))) is not None


def test_compare_is_strict_about_types_shapes_and_dtypes():
    t = torch.ones(3)
    assert compare(t, t.clone()) is None
    assert "wrong shape" in compare(t, torch.ones(3, 1)).reason
    assert "wrong dtype" in compare(t, t.double()).reason
    assert "wrong type: expected Tensor, got ndarray" in compare(t, t.numpy()).reason
    assert "expected tuple, got list" in compare((1.0, 2.0), [1.0, 2.0]).reason
    assert compare(float("nan"), float("nan")) is not None
    assert compare(0.5, 0.5 + 1e-12) is None and compare(2.0, 2) is None
    hidden = compare(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]))
    assert "2." not in hidden.safe() and "got [1., 3.]" in hidden.full()


def test_a_stale_stored_answer_fails_its_own_check():
    """The sync test's rule catches a stale expectation: one from a reference that has since changed."""
    name = "03_optimizers"
    stored = json.loads((LABS_DIR / "checks" / f"{name}.json").read_text())["cases"]
    c = next(c for c in lab(name).cases if not c.hidden)
    old = decode(stored[c.key])

    def drift(x):
        if isinstance(x, torch.Tensor):
            return x * 1.01 + 0.01
        return type(x)(drift(v) for v in x) if isinstance(x, (list, tuple)) else x

    stale = drift(old)
    assert c.judge(decode(stored[c.key]), old, None, c.steps(c.seed())) is None
    assert c.judge(decode(stored[c.key]), stale, None, c.steps(c.seed())) is not None
