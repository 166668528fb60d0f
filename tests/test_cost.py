"""coursekit.cost: FLOPs counted by PyTorch agree with a hand count; steps, totals and the cost line."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from coursekit import mlp
from coursekit.cost import (BATCH_NORM_FLOPS, Cost, flops_per_step, format_cost, format_flops, forward_flops,
                            optimizer_state_numbers, steps_to_target, stopwatch)


def test_a_linear_layers_step_is_six_flops_per_weight_per_example_less_the_first_input_gradient():
    B, n_in, hidden, n_out = 32, 40, 100, 10
    model = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    x, y = torch.randn(B, n_in), torch.randint(0, n_out, (B,))
    forward = 2 * B * (n_in * hidden + hidden * n_out)          # a multiply and an add per weight per example
    weight_grads = 2 * B * (n_in * hidden + hidden * n_out)     # x^T delta, the same size of product
    input_grads = 2 * B * hidden * n_out                        # delta W^T, not needed for the data itself
    assert flops_per_step(model, x, y) == forward + weight_grads + input_grads


def test_an_input_that_needs_a_gradient_costs_the_first_layers_input_product_too():
    model = nn.Linear(8, 4)
    x, y = torch.randn(5, 8, requires_grad=True), torch.randint(0, 4, (5,))
    assert flops_per_step(model, x, y) == 6 * 5 * 8 * 4


def test_a_prediction_costs_the_forward_products_only():
    model = mlp(40, 10, depth=1, width=100, batch_norm=True)
    x = torch.randn(7, 40)
    # eval-mode batch norm is not counted (it folds into the layer); products: 2 FLOPs per weight per example
    assert forward_flops(model, x) == 2 * 7 * (40 * 100 + 100 * 10)
    # a training step: forward, the weight gradients (as much again), the second layer's input gradient,
    # and training-mode batch norm at its stated count, forward and backward
    step = flops_per_step(model, x, torch.zeros(7, dtype=torch.long))
    assert step == 2 * forward_flops(model, x) + 2 * 7 * 100 * 10 + 16 * 7 * 100
    with pytest.raises(TypeError, match="model must be"):
        forward_flops(None, x)


def test_counting_leaves_the_model_untouched():
    model = mlp(6, 3, depth=1, width=5, batch_norm=True).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flops_per_step(model, torch.randn(4, 6), torch.tensor([0, 1, 2, 0]))
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats too
    assert not model.training


def test_batch_norm_adds_its_stated_count_per_element():
    B, width = 16, 12
    x, y = torch.randn(B, 7), torch.randint(0, 3, (B,))
    plain = flops_per_step(mlp(7, 3, depth=1, width=width), x, y)
    normed = flops_per_step(mlp(7, 3, depth=1, width=width, batch_norm=True), x, y)
    assert normed - plain == (BATCH_NORM_FLOPS["forward"] + BATCH_NORM_FLOPS["backward"]) * B * width


def test_regression_loss_and_bad_batches():
    model = nn.Linear(3, 1)
    assert flops_per_step(model, torch.randn(4, 3), torch.randn(4, 1), loss_fn=nn.functional.mse_loss) == 2 * 4 * 3 * 2
    with pytest.raises(ValueError, match="same number of examples"):
        flops_per_step(model, torch.randn(4, 3), torch.randn(5, 1))
    with pytest.raises(TypeError, match="model must be"):
        flops_per_step("net", torch.randn(4, 3), torch.randn(4, 1))


def test_steps_to_target_reads_the_first_evaluation_that_reaches_it():
    assert steps_to_target([0.9, 0.6, 0.5, 0.4], 0.5) == 3
    assert steps_to_target(torch.tensor([0.9, 0.6, 0.5, 0.4]), 0.5, every=20) == 60
    assert steps_to_target([0.2, 0.97, 0.95], 0.97, every=17, higher_is_better=True) == 34
    assert steps_to_target([0.2, 0.5], 0.97, higher_is_better=True) is None
    with pytest.raises(ValueError, match="every must be"):
        steps_to_target([0.5], 0.5, every=0)
    with pytest.raises(ValueError, match="1-D"):
        steps_to_target(torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="1-D"):
        steps_to_target([[0.9, 0.4], [0.8, 0.3]], 0.5)


def test_flops_are_written_to_two_significant_figures():
    assert format_flops(1.896e9) == "1.9 GFLOP"
    assert format_flops(11.06e9) == "11 GFLOP"
    assert format_flops(999e6) == "1.0 GFLOP"
    assert format_flops(5.2032e6) == "5.2 MFLOP"
    assert format_flops(123) == "120 FLOP"
    assert format_flops(4.2e22) == "42,000 EFLOP"
    with pytest.raises(ValueError, match="non-negative"):
        format_flops(-1)


def test_the_cost_line_compares_total_flops():
    adam, sgd = Cost("adam", 240, 7.9e6), Cost("sgd", 1400, 7.9e6)
    assert sgd.flops == 1400 * 7.9e6
    assert format_cost(adam, "val loss 0.50", sgd) == (
        "cost: adam reaches val loss 0.50 in 240 steps = 1.9 GFLOP (sgd: 1,400 steps = 11 GFLOP; 5.8x more)")
    # a dearer step can still be the cheaper run: the ratio is of FLOPs, not steps
    bn = Cost("batch norm", 100, 10e6)
    assert format_cost(bn, "97%", Cost("plain", 150, 5e6)).endswith("(plain: 150 steps = 750 MFLOP; 1.3x less)")
    never = Cost("sgd", None, 7.9e6, max_steps=2000)
    assert never.flops == 2000 * 7.9e6 and not never.reached
    assert format_cost(adam, "x", never).endswith("(sgd: not within 2,000 steps = 16 GFLOP; > 8.3x more)")
    assert format_cost(never, "x") == "cost: sgd does not reach x within 2,000 steps = 16 GFLOP"
    timed = Cost("adam", 240, 7.9e6, seconds=3.14159)
    assert "s" not in format_cost(timed, "x").split("GFLOP")[1]  # seconds only when asked
    assert format_cost(timed, "x", seconds=True).endswith("1.9 GFLOP, 3.14 s")
    with pytest.raises(ValueError, match="max_steps"):
        Cost("sgd", None, 1.0)


def test_stopwatch_measures_the_block_even_when_it_raises():
    with pytest.raises(RuntimeError):
        with stopwatch() as t:
            raise RuntimeError
    assert t["seconds"] >= 0


@pytest.mark.parametrize("make, per_weight", [
    (lambda p: torch.optim.SGD(p, lr=0.1), 0),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), 1),
    (lambda p: torch.optim.RMSprop(p), 1),
    (lambda p: torch.optim.Adam(p), 2),
    (lambda p: torch.optim.AdamW(p), 2),
])
def test_optimizer_state_counts_buffers_per_weight(make, per_weight):
    model = mlp(5, 2, depth=1, width=4)
    opt = make(model.parameters())
    model(torch.randn(3, 5)).sum().backward()
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    assert optimizer_state_numbers(opt) == per_weight * n


def test_the_docstring_examples_hold():
    import doctest

    import coursekit.cost

    assert doctest.testmod(coursekit.cost).failed == 0
