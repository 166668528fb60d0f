"""What a run cost: FLOPs per training step, steps to a target, wall seconds, and one line to say it.

A fair comparison of two training settings asks what each *paid* for a result,
not only which ends higher. The cost of a run to a target is

    steps to the target × FLOPs per training step = total FLOPs,

and its wall time. Steps and FLOPs do not depend on the machine or its load, so
a book prints and checks them; seconds vary from run to run, so they are shown
but never checked.

FLOPs per step are counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``
over one forward pass, the loss and the backward pass. It counts matrix products
(``mm``, ``addmm``, convolutions, attention): 2 FLOPs per multiply-add. A
``Linear(n_in, n_out)`` on a batch of B costs 2·B·n_in·n_out forward, the same again
for the weight gradient, and the same again for the input gradient, which autograd
skips for a first layer whose input needs no gradient. Element-wise work
(activations, the loss, the optimizer's update) is not counted: it is a few FLOPs
per number against a few hundred for a product. Batch norm is the exception this
module adds, because chapters compare it: :data:`BATCH_NORM_FLOPS` per element
forward and backward in training, a stated count (below). In evaluation it is a
fixed scale and shift that folds into the layer before it, and is not counted.

>>> import torch
>>> from coursekit import mlp
>>> from coursekit.cost import Cost, flops_per_step, format_cost, steps_to_target
>>> model = mlp(40, 10, depth=1, width=100)
>>> f = flops_per_step(model, torch.randn(32, 40), torch.randint(0, 10, (32,)))
>>> f  # forward 2·32·(40·100 + 100·10), as much for the weight gradients, 2·32·100·10 for an input's
704000
>>> steps_to_target([0.9, 0.7, 0.55, 0.48, 0.45], 0.5, every=10)  # val loss each 10 steps
40
>>> print(format_cost(Cost("adam", 40, f), "val loss 0.50", baseline=Cost("sgd", 150, f)))
cost: adam reaches val loss 0.50 in 40 steps = 28 MFLOP (sgd: 150 steps = 110 MFLOP; 3.8x more)
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

#: Batch norm, in training mode, per element of its input (a stated count, not measured).
#: Forward: mean (1 add), variance (subtract, square, add: 3), normalize (subtract,
#: multiply by 1/σ: 2), scale and shift (2) = 8. Backward: β's gradient (1 add), γ's
#: (multiply, add: 2), the input's (x̂ times a sum, two subtractions, two scalings: 5) = 8.
BATCH_NORM_FLOPS = {"forward": 8, "backward": 8}

_aten = torch.ops.aten


def _batch_norm_forward(input_shape, *args, **kwargs) -> int:
    return BATCH_NORM_FLOPS["forward"] * math.prod(input_shape)


def _batch_norm_backward(grad_out_shape, *args, **kwargs) -> int:
    return BATCH_NORM_FLOPS["backward"] * math.prod(grad_out_shape)


_CUSTOM = {
    _aten.native_batch_norm: _batch_norm_forward,
    _aten._native_batch_norm_legit: _batch_norm_forward,
    _aten._native_batch_norm_legit_functional: _batch_norm_forward,
    _aten.native_batch_norm_backward: _batch_norm_backward,
}


def flops_per_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> int:
    """FLOPs of one training step (forward, loss, backward) of ``model`` on the batch ``(x, y)``.

    Counted by ``FlopCounterMode`` on a copy of the model in training mode, so the
    model's gradients and batch-norm running statistics are untouched. The
    optimizer's update is element-wise and not counted.

    >>> flops_per_step(torch.nn.Linear(10, 3), torch.randn(4, 10), torch.tensor([0, 1, 2, 0]))
    480
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors (one batch); got {type(x).__name__} and {type(y).__name__}")
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples; got {len(x)} and {len(y)}")
    twin = copy.deepcopy(model).train()
    device = next(twin.parameters(), torch.empty(0)).device
    with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        loss_fn(twin(x.to(device)), y.to(device)).backward()
    return int(counter.get_total_flops())


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one prediction pass of ``model`` on ``x`` (evaluation mode, no gradients): what serving costs.

    >>> forward_flops(torch.nn.Linear(10, 3), torch.randn(4, 10))  # 2 * 4 * 10 * 3
    240
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    twin = copy.deepcopy(model).eval()
    device = next(twin.parameters(), torch.empty(0)).device
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
        twin(x.to(device))
    return int(counter.get_total_flops())


def steps_to_target(curve: Sequence[float] | torch.Tensor, target: float, every: int = 1,
                    higher_is_better: bool = False) -> int | None:
    """Steps until ``curve`` first reaches ``target``; ``None`` if it never does.

    ``curve[i]`` is the metric after ``(i + 1) * every`` steps: ``every=1`` for a
    value per step, ``every=steps_per_epoch`` for a value per epoch. A loss reaches
    its target at or below it; with ``higher_is_better=True`` (an accuracy), at or above.

    >>> steps_to_target([0.5, 0.8, 0.95, 0.97], 0.9, every=17, higher_is_better=True)
    51
    >>> steps_to_target([0.9, 0.8], 0.5) is None
    True
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive whole number of steps; got {every!r}")
    values = curve.detach().double().cpu() if isinstance(curve, torch.Tensor) \
        else torch.as_tensor(curve, dtype=torch.float64)
    if values.ndim != 1:
        raise ValueError(f"curve must be one value per evaluation (1-D); got shape {tuple(values.shape)}")
    reached = values >= target if higher_is_better else values <= target
    hits = torch.nonzero(reached).flatten()
    return None if len(hits) == 0 else (int(hits[0]) + 1) * every


@dataclass(frozen=True)
class Cost:
    """A run's cost to a target: ``steps`` (``None``: never reached it within ``max_steps``)
    times ``flops_per_step``; ``seconds`` of wall time if measured.

    >>> Cost("sgd", 1400, 8e6).flops
    11200000000.0
    """

    name: str
    steps: float | None
    flops_per_step: float
    seconds: float | None = None
    max_steps: int | None = None  # the run's length, when it never reached the target

    def __post_init__(self):
        if self.steps is None and self.max_steps is None:
            raise ValueError(f"{self.name}: a run that never reached the target needs max_steps (how long it ran)")
        if self.steps is not None and not self.steps >= 0:
            raise ValueError(f"steps must be a non-negative number or None; got {self.steps!r}")
        if not self.flops_per_step >= 0:
            raise ValueError(f"flops_per_step must be a non-negative number; got {self.flops_per_step!r}")

    @property
    def reached(self) -> bool:
        return self.steps is not None

    @property
    def flops(self) -> float:
        """Total FLOPs: to the target, or of the whole run when it never got there."""
        return (self.steps if self.reached else self.max_steps) * self.flops_per_step


_PREFIXES = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")]


def format_flops(flops: float) -> str:
    """FLOPs to two significant figures with an SI prefix: ``1.9 GFLOP``, ``11 GFLOP``, ``850 MFLOP``.

    >>> format_flops(1.93e9), format_flops(11.2e9), format_flops(8.5e8), format_flops(0)
    ('1.9 GFLOP', '11 GFLOP', '850 MFLOP', '0 FLOP')
    """
    if not flops >= 0:
        raise ValueError(f"flops must be a non-negative number; got {flops!r}")
    if flops == 0:
        return "0 FLOP"
    rounded = float(f"{flops:.2g}")  # two significant figures first, so 999e6 becomes 1.0 GFLOP
    scale, prefix = next((s, p) for s, p in _PREFIXES if rounded >= s) if rounded >= 1 else (1.0, "")
    value = rounded / scale
    return f"{value:.1f} {prefix}FLOP" if value < 10 else f"{value:,.0f} {prefix}FLOP"


def _steps(cost: Cost) -> str:
    return f"{cost.steps:,.0f} steps" if cost.reached else f"not within {cost.max_steps:,} steps"


def format_cost(run: Cost, target: str, baseline: Cost | None = None, seconds: bool = False) -> str:
    """One line on what ``run`` paid to reach ``target``, against ``baseline`` if given.

    Wall seconds appear only with ``seconds=True`` (they vary from run to run: keep
    them out of checked outputs).

    >>> adam, sgd = Cost("adam", 240, 7.9e6), Cost("sgd", 1400, 7.9e6)
    >>> print(format_cost(adam, "val loss 0.50", baseline=sgd))
    cost: adam reaches val loss 0.50 in 240 steps = 1.9 GFLOP (sgd: 1,400 steps = 11 GFLOP; 5.8x more)
    >>> print(format_cost(adam, "val loss 0.50", Cost("sgd", None, 7.9e6, max_steps=2000)))
    cost: adam reaches val loss 0.50 in 240 steps = 1.9 GFLOP (sgd: not within 2,000 steps = 16 GFLOP; > 8.3x more)
    """
    if not run.reached:
        line = f"cost: {run.name} does not reach {target} within {run.max_steps:,} steps = {format_flops(run.flops)}"
    else:
        line = f"cost: {run.name} reaches {target} in {run.steps:,.0f} steps = {format_flops(run.flops)}"
    if seconds and run.seconds is not None:
        line += f", {run.seconds:.2f} s"
    if baseline is not None:
        line += f" ({baseline.name}: {_steps(baseline)} = {format_flops(baseline.flops)}"
        if seconds and baseline.seconds is not None:
            line += f", {baseline.seconds:.2f} s"
        if run.reached and run.flops > 0:
            ratio = baseline.flops / run.flops
            bound = "" if baseline.reached else "> "
            line += f"; {bound}{ratio:.1f}x more" if ratio >= 1 else f"; {1 / ratio:.1f}x less"
        line += ")"
    return line


@contextmanager
def stopwatch() -> Iterator[dict]:
    """Wall seconds of a block: ``with stopwatch() as t: ...`` then ``t["seconds"]``.

    >>> with stopwatch() as t:
    ...     _ = sum(range(1000))
    >>> t["seconds"] >= 0
    True
    """
    timing = {"seconds": None}
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing["seconds"] = time.perf_counter() - start


def optimizer_state_numbers(optimizer: torch.optim.Optimizer) -> int:
    """How many numbers an optimizer keeps besides the weights: its per-weight buffers
    (momentum, running squares...), counted from ``optimizer.state`` after at least one
    step (the state is created lazily). Scalar step counters are left out.

    >>> w = torch.nn.Parameter(torch.ones(10)); opt = torch.optim.Adam([w])
    >>> w.sum().backward(); opt.step(); optimizer_state_numbers(opt)  # m and v: 2 per weight
    20
    """
    return sum(t.numel() for p, state in optimizer.state.items() for t in state.values()
               if isinstance(t, torch.Tensor) and t.shape == p.shape)
