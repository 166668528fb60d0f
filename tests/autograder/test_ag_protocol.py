"""The strict parts that need no sandbox: frames, their schema, non-finite answers, the allow-list."""
from __future__ import annotations

import math
import os
import sys

import pytest
import torch

from autograder.grader import ROOT, submission_seed
from autograder.sandbox.jail import allow_list
from autograder.sandbox.wire import FrameReader, WireError, check_child_frame, frame, write_all
from coursekit.checks import Case
from coursekit.checks.compare import inside, nonfinite, within
from coursekit.checks.probe import call


def read_back(data: bytes):
    r, w = os.pipe()
    write_all(w, data)
    os.close(w)
    try:
        return FrameReader(r).read(None)
    finally:
        os.close(r)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_frames_with_nan_or_infinity_are_refused(literal):
    body = b'{"t":' + literal + b"}"
    with pytest.raises(WireError, match="not allowed"):
        read_back(b"%d\n" % len(body) + body)


def test_a_frame_cannot_be_written_with_nan():
    with pytest.raises(ValueError):
        frame({"t": math.nan})


END = {"ev": "cell", "phase": "end", "i": 0, "status": "ok", "message": "", "output": "", "t": 0.1}


@pytest.mark.parametrize("bad", [
    {**END, "i": True},                       # a bool is not an index
    {**END, "i": 1.0},
    {**END, "t": -1.0},
    {**END, "status": "passed"},              # the child does not decide what passed
    {**END, "extra": 1},
    {k: v for k, v in END.items() if k != "output"},
    {"ev": "heartbeat", "phase": "end"},
    {"ev": "done", "phase": None},
    [END],
    {"ev": ["cell"], "phase": "end"},
])
def test_frames_off_the_schema_are_protocol_errors(bad):
    with pytest.raises(WireError):
        check_child_frame(bad)


def test_valid_frames_pass_the_schema():
    assert check_child_frame(END) == ("cell", "end")
    assert check_child_frame({"ev": "probe", "phase": "start", "j": 2}) == ("probe", "start")
    assert check_child_frame({"ev": "done"}) == ("done", None)


def case_with(compare=None) -> Case:
    return Case("lab", "q1", "c", 1.0, fn="f", inputs=lambda g: (1,), compare=compare)


def test_nan_fails_before_a_custom_compare_that_would_pass_anything():
    c = case_with(compare=lambda expected, actual: None)
    steps = [call("f", 1)]
    assert c.judge([torch.ones(3)], [torch.tensor([1.0, math.nan, 1.0])], None, steps).reason \
        == "nan where a finite number is expected"
    assert c.judge([(1.0, {"loss": 0.5})], [(1.0, {"loss": math.inf})], None, steps) is not None
    assert c.judge([torch.ones(3)], [torch.ones(3)], None, steps) is None


def test_the_non_finite_check_lets_nan_through_only_where_the_reference_is_nan_too():
    assert nonfinite([torch.tensor([math.nan, 1.0])], [torch.tensor([math.nan, 1.0])]) is None
    c = case_with(compare=lambda expected, actual: None)
    assert c.judge([torch.tensor([math.nan, 1.0])], [torch.tensor([math.nan, 1.0])], None, [call("f", 1)]) is None
    assert nonfinite([torch.tensor([math.nan, 1.0])], [torch.tensor([1.0, math.nan])]) is not None


def test_within_and_inside_pass_only_inside_the_tolerance():
    assert within(0.105, 0.1, 0.01) is None
    assert within(0.2, 0.1, 0.01) is not None
    assert within(math.nan, 0.1, 0.01) is not None
    assert within(torch.tensor(math.nan), 0.1, 0.01) is not None
    assert within("x", 0.1, 0.01) == "the value is not a number"
    assert inside(torch.tensor([0.0, 1.0]), 0.0, 1.0) is None
    assert inside(torch.tensor([0.5, math.nan]), 0.0, 1.0) is not None


def test_the_allow_list_leaves_out_folders_that_hold_the_course():
    hide = [str(ROOT), str(ROOT / "labs" / "source")]
    allowed = [os.path.realpath(p) for p in allow_list([str(ROOT / "coursekit")], hide)]
    assert os.path.realpath(ROOT) not in allowed and "/" not in allowed
    assert os.path.realpath(ROOT / "coursekit") in allowed
    assert os.path.realpath(sys.executable) in [os.path.realpath(p) for p in allow_list([], hide)] or \
        sys.executable in allow_list([], hide)


def test_each_student_gets_an_own_reproducible_seed():
    assert submission_seed(7, "alice") == submission_seed(7, "alice")
    assert len({submission_seed(7, s) for s in ("alice", "bob", "carol")}) == 3
    assert len({submission_seed(r, "alice") for r in range(5)}) == 5
    assert 0 <= submission_seed(2**62, "alice") < 2**62


def test_an_amplifying_frame_costs_the_reader_no_more_than_an_honest_frame_of_its_size():
    """31 MB of "[]," parsed would be 10 million lists (gigabytes, outside the submission's cgroup): the
    reader refuses it from its bytes, and its peak memory stays within twice an honest frame's."""
    import base64
    import os
    import threading
    import tracemalloc

    from autograder.sandbox.wire import FrameReader, WireError, write_all

    def peak_of(body: bytes) -> tuple[int, object]:
        r, w = os.pipe()
        writer = threading.Thread(target=write_all, args=(w, b"%d\n" % len(body) + body))
        writer.start()
        tracemalloc.start()
        try:
            got = FrameReader(r, max_bytes=64_000_000).read(deadline=None)
        except WireError as e:
            got = e
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        writer.join()
        os.close(r)
        os.close(w)
        return peak, got

    attack = b'{"answer":[' + b"[]," * 10_000_000 + b"[]]}"
    honest = b'{"answer":[{"__tensor__":{"dtype":"float32","shape":[1],"data":"' + \
        base64.b64encode(os.urandom(len(attack) * 3 // 4 - 64)) + b'"}}]}'
    attack_peak, refused = peak_of(attack)
    honest_peak, parsed = peak_of(honest)
    assert isinstance(refused, WireError) and "more than 500,000 values" in str(refused)
    assert isinstance(parsed, dict)
    assert attack_peak <= 2 * honest_peak, (attack_peak / 1e6, honest_peak / 1e6)
