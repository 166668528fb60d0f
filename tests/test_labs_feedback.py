"""What a student reads after a typical mistake: the quantity is named, the slip is
described, and the answer of a choice question is never shown.

Each test takes the lab's reference namespace (every solution written), swaps in
one function with a classic mistake, and runs the lab's own self-check on it.
"""
from __future__ import annotations

import functools
import types

import pytest
import torch

from autograder.lab import load_lab
from coursekit.checks import run_check
from coursekit.checks.hints import choice, slip


@functools.lru_cache(maxsize=None)
def lab(name: str):
    return load_lab(name)


def namespace(name: str, swap: dict) -> dict:
    """The reference namespace with ``swap`` in it; its helper functions see the swapped names too."""
    ref = lab(name).reference
    ns = {**ref, **swap}
    for k, v in ref.items():
        if isinstance(v, types.FunctionType) and v.__globals__ is ref and k not in swap:
            ns[k] = types.FunctionType(v.__code__, ns, v.__name__, v.__defaults__, v.__closure__)
    return ns


def self_check(name: str, question: str, **swap) -> str:
    """The self-check text of ``question`` with the reference's functions, except ``swap``."""
    return repr(run_check(question, namespace(name, swap), declared=lab(name).cases))


def hidden_message(name: str, key: str, **swap) -> str:
    """The grader's message for a hidden case (``Mismatch.safe``), with ``swap`` in the namespace."""
    from coursekit.checks.plain import decode, encode
    from coursekit.checks.probe import run_steps
    c = next(c for c in lab(name).cases if c.key == key)
    steps = c.steps(c.seed(12345))
    expected = lab(name).expected([steps])[0]
    actual = decode(encode(run_steps(namespace(name, swap), steps)))
    m = c.judge(decode(expected), actual, None, steps)
    return "passed" if m is None else m.safe()


def test_slip_names_a_factor_a_sign_and_a_transpose():
    e = torch.arange(1.0, 7.0).reshape(2, 3)
    assert "4 times the expected one" in slip(e, 4 * e)
    assert slip(e, -e) == "every value has the wrong sign"
    assert "transposed" in slip(e, e.T.contiguous())
    assert slip(e, e + torch.tensor([[0.0, 1, 0], [0, 0, 0]])) is None     # an ordinary error gets no hint
    assert slip(e, torch.full_like(e, float("nan"))) is None


def test_choice_never_reveals_the_expected_option():
    same = choice(["a", "b", "c"], hint="look again")
    assert same(["b"], ["b"]) is None
    assert same(["b"], ["a"]) == "not the right choice: look again"
    assert "'b'" not in same(["b"], ["c"])
    assert "not one of the options" in same(["b"], ["z"])


def test_lab1_missing_mean_names_dW1_and_the_factor():
    def no_mean(x, y, W1, b1, W2, b2):
        loss, *grads = lab("01_backprop").reference["loss_and_grads"](x, y, W1, b1, W2, b2)
        return (loss, *[g * x.shape[0] for g in grads])
    text = self_check("01_backprop", "q2", loss_and_grads=no_mean)
    assert "✗" in text and "dW1 of loss_and_grads(...)" in text and "[1]" not in text
    assert "5 times the expected one" in text and "1/n" in text


def test_lab1_transposed_dW_is_called_transposed():
    ref = lab("01_backprop").reference["affine_relu_backward"]

    def transposed(dout, cache):
        dx, dW, db = ref(dout, cache)
        return dx, dW.T.contiguous(), db
    text = self_check("01_backprop", "q6", affine_relu_backward=transposed)
    assert "dW of affine_relu_grads(...)" in text and "the shape is transposed: expected (4, 5), got (5, 4)" in text


def test_lab1_planted_bug_answer_is_never_printed():
    assert "db1" not in (lab("01_backprop").labs_dir / "checks" / "01_backprop.json").read_text()
    text = self_check("01_backprop", "q5", BUGGY_GRAD="dW1")     # wrong, but one of the options
    assert "✓" in text and "db1" not in text                         # the self-check checks the form only
    assert "not one of the four" not in self_check("01_backprop", "q5", BUGGY_GRAD="db2")
    assert "✗" in self_check("01_backprop", "q5", BUGGY_GRAD="b1")
    msg = hidden_message("01_backprop", "q5/hidden: names the wrong gradient", BUGGY_GRAD="dW1")
    assert msg.startswith("not the right choice") and "db1" not in msg
    assert hidden_message("01_backprop", "q5/hidden: names the wrong gradient") == "passed"


def test_lab3_learning_rate_inside_the_buffer_names_v_and_the_factor():
    def lr_in_buffer(w, grad, v, lr=0.01, momentum=0.9):
        v = momentum * v + lr * grad
        return w - v, v
    text = self_check("03_optimizers", "q1", momentum_step=lr_in_buffer)
    assert "v of step 0" in text or "v of momentum_step" in text
    assert "0.1 times the expected one" in text


def test_lab5_batchnorm_backward_with_the_wrong_sign_says_so():
    ref = lab("05_init_batchnorm").reference["batchnorm_backward"]

    def flipped(dout, x, gamma, eps=1e-5):
        dx, dgamma, dbeta = ref(dout, x, gamma, eps)
        return -dx, dgamma, dbeta
    text = self_check("05_init_batchnorm", "q5", batchnorm_backward=flipped)
    assert "dx of batchnorm_backward(...)" in text and "wrong sign" in text


def test_lab6_old_early_stopping_rule_fails_on_patience_zero():
    class OldRule:
        def __init__(self, patience, min_delta=0.0):
            self.patience, self.min_delta, self.best, self.num_bad = patience, min_delta, float("inf"), 0

        def step(self, val_loss):
            if val_loss < self.best - self.min_delta:
                self.best, self.num_bad = val_loss, 0
            else:
                self.num_bad += 1
            return self.num_bad >= self.patience
    OldRule.__name__ = OldRule.__qualname__ = "EarlyStopping"
    OldRule.__module__ = "__main__"          # as if defined in the notebook
    text = self_check("06_regularization", "q3", EarlyStopping=OldRule)
    assert "✗ patience 0 never stops on an improvement" in text
    assert "✓ patience 2" in text


def test_lab6_restore_best_without_a_copy_fails():
    base = lab("06_regularization").reference["EarlyStopping"]

    class NoCopy(base):
        def __init__(self, patience, min_delta=0.0):
            super().__init__(patience, min_delta)
            self.best_weights = None

        def step(self, val_loss, weights):
            stop = super().step(val_loss)
            if self.num_bad == 0:
                self.best_weights = weights      # a reference, changed in place later
            return stop
    text = self_check("06_regularization", "q7", RestoreBest=NoCopy)
    assert "✗ best epoch's weights, not the last" in text


def test_lab7_learning_curve_answers_are_graded_as_choices_without_showing_them():
    text = (lab("07_hyperparameter_search").labs_dir / "checks" / "07_hyperparameter_search.json").read_text()
    assert "overfitting" not in text and "lower the learning rate" not in text
    wrong = {"A": "underfitting", "B": "overfitting", "C": "unstable"}
    msg = hidden_message("07_hyperparameter_search", "q6/hidden: diagnosis of run A", DIAGNOSIS=wrong)
    assert msg == "not the right choice" and "overfitting" not in msg
    assert hidden_message("07_hyperparameter_search", "q6/hidden: diagnosis of run C", DIAGNOSIS=wrong) == "passed"


@pytest.mark.parametrize("name", ["01_backprop", "02_gradient_descent", "03_optimizers", "04_lr_schedules",
                                  "05_init_batchnorm", "06_regularization", "07_hyperparameter_search", "08_capstone"])
def test_every_lab_has_written_questions_whose_rubric_stays_out_of_the_student_copy(name):
    l = lab(name)
    assert 2 <= len(l.written) <= 3
    student = "".join(c.source for c in l.student.cells)
    for w in l.written:
        assert w.rubric not in student
