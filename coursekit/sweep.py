"""Vectorized sweeps: train K copies of a model that differ in hyperparameters, all at once.

The K models' parameters live in one tensor ``w`` of shape ``[K, P]`` (one row
per model), and the optimizer update is a handful of element-wise operations on
``[K, P]`` tensors whose hyperparameters are ``[K, 1]`` columns. Two paths
compute the gradients:

- **fast** (plain MLPs: ``nn.Linear`` and element-wise activations, what
  ``coursekit.mlp`` builds without batch norm or dropout). Each ``Linear`` is one
  batched matrix product over the leading K dimension (``torch.baddbmm``), and
  backprop is written out with the same products (dW = dz^T a, db = sum of dz,
  da = dz W); taking autograd's bookkeeping out of the loop about halves the CPU
  time per step.
- **general, wide** (an ``nn.Sequential`` of the layers the course's models use:
  ``Linear``, ``Conv1d``, ``BatchNorm1d``, ``Dropout``, activations, ``Flatten``,
  ``Unflatten``, 1-D pooling): the K models run as one wide network
  (:mod:`coursekit.wide`), every layer one kernel over all K, with backprop written
  out layer by layer as on the fast path; a step costs about the operations of one model.
- **general, torch.func** (any other ``nn.Module``; ``path="func"`` forces it),
  built on ``torch.func``: ``vmap`` of ``functional_call`` over the K rows of
  ``w`` runs the K forward passes as one, and a single autograd call on the sum of
  the K losses gives each model the gradient of its own loss (no parameter is
  shared). Batch norm keeps running statistics per model (its buffers are stacked
  along K, as ``torch.func.stack_module_state`` does) and uses them in eval mode;
  batch norm and ``Conv1d`` run as plain tensor operations there (the same
  formulas), which vmap batches into a few large kernels. Every ``nn.Dropout``
  draws its masks from its model's own generator
  (:func:`mask_generator`), so masks differ between models and model k's run does
  not depend on which other models share the sweep; any other random layer draws
  from torch's generator with ``randomness="different"``.

So a 16-model sweep costs a few single-model runs, not sixteen
(``benchmarks/bench_sweep.py``), and it runs on the GPU when there is one. Each
model trains exactly as it would alone with ``torch.optim`` and
``torch.optim.lr_scheduler`` (``tests/test_sweep.py`` checks it, optimizer by
optimizer; Adam and AdamW run torch's fused kernel, as ``torch.optim.Adam(fused=True)``
does, which rounds a little differently from torch's default for-loop and foreach
versions). Model k's initial weights are ``torch.manual_seed(seed[k]); model_fn()``;
the batch order is shared by all K models or given per model (``fit(data_seed=...)``).

Nothing is ever summed across models, so a model that diverges keeps its NaN
and inf to itself; ``history.diverged_step`` records where it happened.

>>> import torch
>>> from torch import nn
>>> from coursekit import load_dataset, mlp
>>> data = load_dataset("moons", n=200, seed=0)
>>> sweep = Sweep(lambda: mlp(2, 2, width=16), K=4, optimizer="momentum",
...               lr=torch.logspace(-3, 0, 4), device="cpu")
>>> history = sweep.fit(data, epochs=2, batch_size=32)
>>> history.val_loss.shape          # [K, epochs]
torch.Size([4, 2])

Seeds are an axis like any other: five seeds of two dropout rates of a
batch-norm MLP, with a cosine schedule, in one pass (the general path):

>>> from coursekit.stats import seed_grid, verdict
>>> g = seed_grid(5, dropout=[0.0, 0.5])
>>> sweep = Sweep(lambda: mlp(2, 2, width=64, batch_norm=True, dropout=0.5), K=10,
...               optimizer="rmsprop", lr=1e-3, dropout=g["dropout"], seed=g["seed"],
...               scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 2))
>>> acc = sweep.fit(data, epochs=2).val_acc[:, -1].view(2, 5)
>>> line = verdict(acc[1], acc[0], "dropout 0.5", "none")   # '... -> no clear difference'
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import Dataset
from . import wide
from .device import get_device, keep_freed_memory, live_mode

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")
LOSSES = ("auto", "cross_entropy", "mse")
PATHS = ("auto", "fast", "general", "func")
SCHEDULER_INTERVALS = ("epoch", "step")
# a progress bar appears (live notebooks only) once a fit has run this long
PROGRESS_DELAY_S = 3.0
# Element-wise layers act on [K, batch, features] unchanged, so any of these may sit between Linears.
ELEMENTWISE = wide.ELEMENTWISE
# Backprop through an element-wise layer (the wide network's rules; others fall back to autograd).
_DERIVATIVE = wide.DERIVATIVE
_DEFAULT_MOMENTUM = {"sgd": 0.0, "momentum": 0.9, "nesterov": 0.9, "rmsprop": 0.0, "adam": 0.0, "adamw": 0.0}
_DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "momentum": 0.0, "nesterov": 0.0, "rmsprop": 0.0, "adam": 0.0,
                         "adamw": 1e-2}

Numbers = float | Sequence[float] | torch.Tensor


# -- checking and broadcasting arguments -------------------------------------------------
def _per_model(name: str, value, K: int, low: float | None = None, low_open: bool = False,
               high: float | None = None, high_open: bool = False) -> torch.Tensor:
    """``value`` (a number, or K numbers) as a float64 CPU tensor of shape [K], range-checked."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a sequence of K={K} numbers; got a bool")
    if isinstance(value, (int, float)):
        t = torch.full((K,), float(value), dtype=torch.float64)
    else:
        try:
            t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().flatten()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a number or a sequence of K={K} numbers; "
                            f"got {type(value).__name__}") from None
        if t.numel() == 1:
            t = t.expand(K).clone()
        if t.numel() != K:
            raise ValueError(f"{name} must be a number or a sequence of K={K} numbers; "
                             f"got {t.numel()} values")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite; got {t.tolist()}")
    bad = torch.zeros(K, dtype=torch.bool)
    if low is not None:
        bad |= (t <= low) if low_open else (t < low)
    if high is not None:
        bad |= (t >= high) if high_open else (t > high)
    if bad.any():
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else (f"< {high}" if high_open else f"<= {high}")
        rule = " and ".join(s for s in (lo, hi) if s)
        raise ValueError(f"{name} must be {rule}; got {t[bad][0].item()!r} (model {int(bad.nonzero()[0])})")
    return t


def _per_model_seed(name: str, value, K: int) -> list[int]:
    values = [value] * K if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str) or \
            not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise TypeError(f"{name} must be an int or a sequence of K={K} ints; got {value!r}")
    if len(values) != K:
        raise ValueError(f"{name} must be an int or a sequence of K={K} ints; got {len(values)} values")
    return list(values)


def _per_model_optimizer(value, K: int) -> list[str]:
    names = [value] * K if isinstance(value, str) else value
    if not isinstance(names, Sequence) or len(names) != K:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))} "
                         f"or a sequence of K={K} of them; got {value!r}")
    for name in names:
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}; got {name!r}")
    return list(names)


def _sqrt_floor(eps: torch.Tensor, bc2_sqrt_min: float | torch.Tensor) -> float:
    """The floor below which the second moment may be raised before its square root, with no
    effect on the result: 0 (no floor) or float32's smallest normal number.

    A tiny second moment turns denormal, and a CPU takes ~15x longer for the square root of
    a denormal (measured: 1.1 ms vs 0.07 ms for 16 x 9,034 values). Raising it to the smallest
    normal number 2^-126 changes sqrt(v) / bc2_sqrt by less than 2^-63 / bc2_sqrt, which is
    less than half a float32 step of eps when 2^-63 / bc2_sqrt < eps * 2^-25. Then
    sqrt(v) / bc2_sqrt + eps rounds to the same number either way: bit for bit as torch.optim.
    """
    if float(eps.min()) > 2.0 ** -63 / float(bc2_sqrt_min) * 2.0 ** 25:
        return torch.finfo(torch.float32).tiny
    return 0.0


#: Adam and AdamW use torch's fused kernel where torch has one for the device (CPU since torch
#: 2.4). False, or no kernel: the ten element-wise passes of ``Sweep._update``, bit for bit as
#: torch.optim.Adam's default (not fused) implementations.
FUSED_ADAM = True


def fused_adam_supported(device: torch.device) -> bool:
    """Does this torch have the fused Adam kernel for ``device`` (and is it switched on)?"""
    return FUSED_ADAM and device.type in _fused_kernel_devices()


@functools.lru_cache(maxsize=None)
def _fused_kernel_devices() -> tuple[str, ...]:
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return ()
    return tuple(_get_fused_kernels_supported_devices())


def _fused_groups(hp: dict) -> list[tuple[tuple, list[int] | None]]:
    """Adam's hyperparameters per row as Python floats, grouped: [((lr, beta1, beta2, eps,
    weight_decay), rows)], rows None when every row shares them."""
    keys = list(zip(*(hp[n].tolist() for n in ("lr", "beta1", "beta2", "eps", "weight_decay"))))
    groups: dict[tuple, list[int]] = {}
    for k, key in enumerate(keys):
        groups.setdefault(key, []).append(k)
    if len(groups) == 1:
        return [(keys[0], None)]
    return list(groups.items())


def _rows_of(state: dict, key: str, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rows of ``t`` as views, kept in ``state`` while ``t`` is the same tensor (w, m and v
    are, every step, unless the sweep mixes optimizers and gathers each one's rows): 64 fresh
    views a step cost 0.09 ms of a 1.4 ms step."""
    kept = state.get(f"rows:{key}")
    if kept is None or kept[0] is not t:
        kept = state[f"rows:{key}"] = (t, t.unbind(0))
    return kept[1]


def _sqrt(v: torch.Tensor, floor: float, out: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(v, floor, out=out).sqrt_() if floor else torch.sqrt(v, out=out)


# -- history -------------------------------------------------------------------------------
@dataclass
class SweepHistory:
    """What a :meth:`Sweep.fit` call recorded; every tensor has the K models along dim 0.

    ``step_loss`` is [K, steps] (the mini-batch loss, as ``History.step_loss``);
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` and ``lr`` are [K, epochs]
    (accuracies are NaN for regression; ``lr`` is logged as ``History.lr`` is, after
    the epoch's steps and before an epoch-level scheduler step). ``diverged_step`` is
    [K]: the first step (counted from 0 within this call) whose loss was NaN or inf,
    or -1. ``hparams`` holds each model's hyperparameters as [K] tensors, for labels.
    """

    step_loss: torch.Tensor
    train_loss: torch.Tensor
    train_acc: torch.Tensor
    val_loss: torch.Tensor
    val_acc: torch.Tensor
    diverged_step: torch.Tensor
    hparams: dict = field(default_factory=dict)
    lr: torch.Tensor | None = None

    @property
    def diverged(self) -> torch.Tensor:
        """[K] bool: did the model's loss ever become NaN or inf?"""
        return self.diverged_step >= 0

    @property
    def K(self) -> int:
        return int(self.step_loss.shape[0])

    def __len__(self) -> int:
        return int(self.train_loss.shape[1])


# -- the general path: any module, through torch.func --------------------------------------
def mask_generator(seed: int) -> np.random.SFC64:
    """The stream of a model's dropout masks in a sweep, derived from its ``seed``.

    Each step, every ``nn.Dropout`` of model k (in forward order), whose input ``x`` has
    shape [B, *rest], takes n = ``x.numel()`` numbers from ``g = mask_generator(seed[k])``:
    ``g.random_raw(ceil(n / 4))`` gives 64-bit words, read as 16-bit integers ``u`` (little
    endian, the first n), in the order of shape [*rest, B] (the batch innermost). Element i
    is kept when ``u[i] < round(float32(1 - p) * 2**16)``, and a kept element is multiplied by
    ``1 / (1 - p)``; :func:`dropout_masks` writes the rule out. The stream is numpy's SFC64,
    mixed from the seed, so it is not the stream that drew the initial weights.

    Why not ``torch.rand``: one 64-bit word makes four elements' masks, at about 0.5 ns an
    element on a CPU against 3 ns for a float from torch's generator, and the keep
    probability is still within 2^-17 of 1 - p. The masks were a fifth of a batch-norm +
    dropout sweep's step before (``benchmarks/bench_sweep.py``).

    >>> dropout_masks([mask_generator(0)], (2, 3), np.float32([0.5]))[0].shape
    torch.Size([2, 3])
    """
    return np.random.SFC64(np.random.SeedSequence([int(seed) % 2**64, 0xD5]))


def dropout_masks(gens: Sequence[np.random.SFC64], shape: tuple, keep: np.ndarray,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """This step's masks of one dropout layer for K models, [K, *shape] (``shape`` = [B, *rest],
    one model's input): model k's from its stream ``gens[k]`` with keep probability ``keep[k]``,
    by :func:`mask_generator`'s rule, on ``device``. The result is a view in torch's layout of
    a tensor stored with the batch innermost, [K, *rest, B], the layout of ``coursekit.wide``.
    The numbers are drawn on the CPU, so a GPU run gets the same masks; only one byte an
    element (kept or not) crosses to the device. :func:`dropout_masks_layers` draws several
    layers' masks at once."""
    return dropout_masks_layers(gens, [shape], np.asarray(keep).reshape(1, -1), device)[0]


def dropout_masks_layers(gens: Sequence[np.random.SFC64], shapes: Sequence[tuple], keep: np.ndarray,
                         device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """One step's masks of every dropout layer, in forward order: ``shapes[i]`` is layer i's
    one-model input [B, *rest] and ``keep`` [layers, K] its keep probabilities. The same
    masks as :func:`dropout_masks` layer after layer (each model's stream read in that
    order), with one draw a model for all the layers."""
    K = len(gens)
    ns = [math.prod(shape) for shape in shapes]
    words = [-(-n // 4) for n in ns]
    raw = np.empty((K, sum(words)), dtype=np.uint64)
    for k, g in enumerate(gens):   # model k's numbers straight into its own row
        raw[k] = g.random_raw(raw.shape[1])
    # kept when u < round(keep * 2^16), i.e. u <= that - 1, which fits 16 bits (a threshold
    # of 0 keeps nothing through its scale of 0), so the comparison runs on the 16-bit numbers
    keep = np.asarray(keep, dtype=np.float32).reshape(len(shapes), K, 1)
    threshold = np.rint(keep.astype(np.float64) * 2.0 ** 16)
    last = np.maximum(threshold - 1, 0).astype(np.uint16)
    with np.errstate(divide="ignore"):   # a threshold of 0 keeps nothing: a scale of 0 says so
        scale = np.where(threshold > 0, np.float32(1) / keep, np.float32(0)).astype(np.float32)
    on_cpu = torch.device(device).type == "cpu"
    masks, start = [], 0
    for shape, n, w, last_i, scale_i in zip(shapes, ns, words, last, scale):
        u = raw[:, start:start + w].view("<u2")[:, :n]
        start += w
        kept = np.less_equal(u, last_i, out=np.empty((K, n), dtype=bool))
        if on_cpu:
            out = torch.from_numpy(np.multiply(kept, scale_i, out=np.empty((K, n), dtype=np.float32)))
        else:
            out = torch.from_numpy(kept).to(device) * torch.from_numpy(scale_i).to(device)
        masks.append(out.view(K, *shape[1:], shape[0]).movedim(-1, 1))
    return masks


class _MaskedDropout(nn.Module):
    """``nn.Dropout`` whose mask the sweep hands in (one per model, from that model's generator)."""

    def __init__(self, p: float):
        super().__init__()
        self.p, self.mask, self.seen = p, None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.shape  # the shape probe reads it
        if not self.training:
            return x
        if self.mask is None:
            raise RuntimeError("internal: a sweep dropout layer ran without its mask")
        return x * self.mask


def _batch_norm_ops(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` written with plain tensor operations, which vmap batches well (about twice as
    fast on a CPU as vmap's rule for torch's fused kernel, forward and backward). Same formulas as torch:
    y = (x - mean) / sqrt(var + eps) * weight + bias, with the batch's biased variance; the
    running averages take the unbiased one, weighted by ``momentum``."""
    dims = [0, *range(2, x.dim())]                 # every dimension but the channels
    shape = [1, -1] + [1] * (x.dim() - 2)
    if bn.training or bn.running_mean is None:
        mean = x.mean(dims)
        centered = x - mean.view(shape)
        var = centered.square().mean(dims)          # two passes, as torch's own kernel
        if bn.training and bn.track_running_stats:
            n = x.numel() // x.shape[1]
            m = bn.momentum
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                bn.running_mean.mul_(1 - m).add_(mean.detach() * m)
                bn.running_var.mul_(1 - m).add_(var.detach() * (m * n / max(n - 1, 1)))
    else:
        centered, var = x - bn.running_mean.view(shape), bn.running_var
    scale = torch.rsqrt(var + bn.eps)               # per channel, so cheap
    if not bn.affine:
        return centered * scale.view(shape)
    return torch.addcmul(bn.bias.view(shape), centered, (scale * bn.weight).view(shape))


def _conv1d_ops(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` as patches times a matrix, which vmap turns into one batched matrix
    product (vmap's rule for torch's convolution is a grouped convolution, measured 10-20%
    slower on a CPU): out[b, o, l] = bias[o] + sum over c, j of W[o, c, j] x[b, c, l*stride + j*dilation]."""
    (k,), (stride,), (dilation,) = conv.kernel_size, conv.stride, conv.dilation
    if conv.padding == "same":
        total = dilation * (k - 1)
        x = F.pad(x, (total // 2, total - total // 2))
    elif conv.padding != "valid" and conv.padding[0]:
        x = F.pad(x, (conv.padding[0], conv.padding[0]))
    x = x.transpose(1, 2)                                            # [B, L, C_in]
    length = (x.shape[1] - dilation * (k - 1) - 1) // stride + 1
    # row l of tap j holds x[:, l*stride + j*dilation]; side by side: [B, L_out, k * C_in]
    patches = torch.cat([x[:, j * dilation: j * dilation + stride * (length - 1) + 1: stride]
                         for j in range(k)], dim=-1)
    W = conv.weight.permute(0, 2, 1).reshape(conv.out_channels, -1)  # [C_out, (j, c)], as the patches
    out = patches @ W.T if conv.bias is None else torch.addmm(conv.bias, patches.flatten(0, 1), W.T).view(
        patches.shape[0], length, -1)
    return out.transpose(1, 2)


_SCALED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # init_scale multiplies these weights


class _Functional:
    """K copies of one architecture as a function of the flat rows of ``w`` [K, P] (torch.func)."""

    def __init__(self, models: list[nn.Module], init_scale: torch.Tensor, device: torch.device,
                 force_vmap: bool = False):
        net = models[0]
        self.names = [n for n, _ in net.named_parameters()]
        if not self.names:
            raise ValueError("model_fn must build a model with parameters to train")
        self.shapes = [p.shape for _, p in net.named_parameters()]
        self.sizes = [p.numel() for _, p in net.named_parameters()]
        spec = self._spec(net)
        for k, m in enumerate(models[1:], 1):
            if self._spec(m) != spec:
                raise ValueError("model_fn must build the same architecture every time; "
                                 f"model {k} differs from model 0")
        scaled = {f"{name}.weight" if name else "weight" for name, m in net.named_modules()
                  if isinstance(m, _SCALED)}
        self.w = torch.stack([torch.cat([(p.detach().float() * (float(c) if n in scaled else 1.0)).flatten()
                                         for n, p in m.named_parameters()])
                              for m, c in zip(models, init_scale)]).to(device)
        # per-model buffers (batch norm's running statistics), stacked along K
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]).to(device)
                        for n, _ in net.named_buffers()}
        self.buffers = {n: b.float() if b.is_floating_point() else b for n, b in self.buffers.items()}
        base = copy.deepcopy(net)
        self.dropouts: list[_MaskedDropout] = []
        for name, m in list(base.named_modules()):
            if type(m) is nn.Dropout:
                parent, _, child = name.rpartition(".")
                layer = _MaskedDropout(m.p)
                base.get_submodule(parent)._modules[child] = layer
                self.dropouts.append(layer)
            elif type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d) and m.momentum is not None:
                m.forward = functools.partial(_batch_norm_ops, m)
            elif type(m) is nn.Conv1d and m.groups == 1 and m.padding_mode == "zeros":
                m.forward = functools.partial(_conv1d_ops, m)
        self.base = base.to("meta")  # the architecture only; functional_call brings the tensors
        self.device = device
        # the wide network, when every layer is one it knows (see coursekit.wide); vmap otherwise
        layers = None if force_vmap else wide.plan(net)
        self.wide = None if layers is None else wide.WideNet(layers, self.names, self.shapes)
        self._shape_cache: dict[tuple, list] = {}
        self._fns: dict[tuple, Callable] = {}
        self._loss_fn: Callable = F.cross_entropy

    @staticmethod
    def _spec(net: nn.Module) -> tuple:
        return (tuple((n, tuple(p.shape)) for n, p in net.named_parameters()),
                tuple((n, tuple(b.shape)) for n, b in net.named_buffers()),
                tuple(type(m).__name__ for m in net.modules()))

    def params(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One model's parameters as views into its row of ``w`` (inside vmap, a [P] tensor)."""
        return {n: c.view(shape) for n, c, shape in zip(self.names, row.split(self.sizes), self.shapes)}

    def probe(self, example_shape: tuple) -> tuple[tuple, list]:
        """Output shape and dropout input shapes for one model's input of ``example_shape``,
        worked out on the meta device (no arithmetic)."""
        if example_shape not in self._shape_cache:
            self.base.eval()
            with torch.no_grad():
                out = self.base(torch.empty(example_shape, device="meta"))
            self._shape_cache[example_shape] = (tuple(out.shape), [d.seen for d in self.dropouts])
        return self._shape_cache[example_shape]

    def _loss_one(self, row, buffers, x, y, masks):
        """One model's loss and outputs on its batch (vmap maps this over the K rows)."""
        for layer, mask in zip(self.dropouts, masks):
            layer.mask = mask
        try:
            out = torch.func.functional_call(self.base, (self.params(row), buffers), (x,))
        finally:
            for layer in self.dropouts:
                layer.mask = None
        return self._loss_fn(out, y), out

    def step(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor],
             classification: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(grad [K, P], loss [K], out [K, B, ...]) of every model on its batch, in train mode.

        ``x`` is [B, ...] (the same batch for all) or [K, B, ...]; batch norm's running
        statistics are updated in place, per model. The forward pass is vmapped; the
        backward pass is one autograd call on the sum of the K losses. That gives each
        model the gradient of its own loss (no parameter is shared between models, so
        d(sum)/dw_k = d(loss_k)/dw_k), and its kernels run on the whole [K, ...] tensors,
        where ``vmap(grad(...))`` measured 1.4x slower (and has no batching rule for
        some backward kernels, such as unfold's).
        """
        # a leading K dimension, beyond the batch's, means one batch per model
        key = (x.dim() > len(self._example) + 1, y.dim() > self._y_dims + 1)
        if self.uses_wide(self._example):
            return self.wide.step(w, self.buffers, x, y, masks, classification, key[0])
        fn = self._fns.get(key)
        if fn is None:
            in_dims = (0, 0, 0 if key[0] else None, 0 if key[1] else None, 0)
            fn = self._fns[key] = torch.func.vmap(self._loss_one, in_dims=in_dims, randomness="different")
        self._loss_fn = F.cross_entropy if classification else F.mse_loss
        self.base.train()
        w = w.detach().requires_grad_()  # shares w's storage; the update writes into w in place
        with torch.enable_grad():
            loss, out = fn(w, self.buffers, x, y, masks)
            grad, = torch.autograd.grad(loss.sum(), w)
        return grad, loss.detach(), out.detach()

    def bind(self, example: tuple, y_dims: int) -> None:
        """Remember one model's input shape (without the batch) and target rank, to read vmap's dims."""
        self._example, self._y_dims = example, y_dims

    def uses_wide(self, example: tuple) -> bool:
        """Does a batch of examples of shape ``example`` go through the wide network?"""
        return self.wide is not None and self.wide.accepts(example)

    @torch.no_grad()
    def forward(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """All K models' outputs for a shared batch ``x`` in eval mode: [K, N, ...]."""
        if self.uses_wide(tuple(x.shape[1:])):
            # chunks small enough for the K models' activations to stay in the CPU's cache
            n = self.wide.eval_chunk()
            return torch.cat([self.wide.to_torch(self.wide.run(w, self.buffers, x[i:i + n], [], False, False))
                              for i in range(0, len(x), n)], dim=1)
        self.base.eval()
        fn = torch.func.vmap(lambda row, buffers, xb: torch.func.functional_call(
            self.base, (self.params(row), buffers), (xb,)), in_dims=(0, 0, None), randomness="different")
        return torch.cat([fn(w, self.buffers, x[i:i + 1024]) for i in range(0, len(x), 1024)], dim=1)


# -- the sweep -----------------------------------------------------------------------------
class Sweep:
    """K copies of the model built by ``model_fn``, trained together in one vectorized pass.

    Every hyperparameter below is a number (shared by all K models) or a
    sequence / 1-D tensor of K numbers (one per model).

    - ``model_fn``: a function of no arguments returning the model, e.g.
      ``lambda: mlp(40, 10, batch_norm=True, dropout=0.3)`` or a small CNN. It is
      called once per model with torch's RNG seeded by ``seed[k]``, so model k
      starts exactly where ``torch.manual_seed(seed[k]); model_fn()`` would; the
      global RNG is left untouched. Plain MLPs take the fast path, other modules the
      general path (``path="general"`` forces it; ``path="fast"`` insists on the fast one;
      ``path="func"`` takes the general path through ``torch.func`` even where the wide
      network would do). :attr:`engine` says which one runs.
    - ``optimizer``: ``'sgd'``, ``'momentum'``, ``'nesterov'``, ``'rmsprop'``, ``'adam'``
      or ``'adamw'`` (the ``make_optimizer`` names), or K of them for a race.
      Updates follow ``torch.optim.SGD`` / ``RMSprop`` / ``Adam`` / ``AdamW`` step for step
      (Adam and AdamW as with ``fused=True``).
    - ``lr``, ``weight_decay`` (L2 for SGD, RMSProp and Adam, decoupled for AdamW;
      default 0, or 1e-2 for AdamW as in torch), ``momentum`` (SGD family and
      RMSProp; default 0 for 'sgd' and 'rmsprop', 0.9 for 'momentum' and 'nesterov'),
      ``alpha`` (RMSProp's smoothing, default 0.99), ``betas`` (a pair, each a number
      or K numbers) and ``eps`` (Adam family and RMSProp).
    - ``dropout``: None keeps each ``nn.Dropout``'s own rate; a number or K numbers
      set the rate of every ``nn.Dropout`` of model k (0 switches it off).
    - ``scheduler``: a function of a torch optimizer that returns a
      ``torch.optim.lr_scheduler`` object, as for ``Trainer`` (or K such functions).
      Each model gets its own scheduler on a stand-in optimizer with its
      hyperparameters, stepped every epoch (``ReduceLROnPlateau`` with the model's
      validation loss) or every batch with ``scheduler_interval="step"``; the
      learning rate, momentum and betas it sets are the ones the model trains with.
    - ``init_scale``: multiplies every ``Linear`` and ``Conv`` weight (not biases) after init.
    - ``grad_clip``: clip each model's own gradient norm, as ``clip_grad_norm_``.
    - ``loss``: ``'auto'`` (cross-entropy for classification, MSE for regression),
      ``'cross_entropy'`` or ``'mse'``; always the mean over the batch, per model.

    The state (weights, buffers, optimizer moments, schedulers, step count)
    persists, so a second :meth:`fit` continues training.

    >>> from coursekit import load_dataset, mlp
    >>> sweep = Sweep(lambda: mlp(64, 10), K=12, optimizer="adam", lr=torch.logspace(-4, 0, 12))
    >>> history = sweep.fit(load_dataset("digits"), epochs=5)            # doctest: +SKIP
    >>> history.val_acc[:, -1]                                           # doctest: +SKIP
    """

    def __init__(self, model_fn: Callable[[], nn.Module], K: int, *, optimizer: str | Sequence[str] = "adam",
                 lr: Numbers = 1e-3, weight_decay: Numbers | None = None, momentum: Numbers | None = None,
                 alpha: Numbers = 0.99, betas: tuple[Numbers, Numbers] = (0.9, 0.999), eps: Numbers = 1e-8,
                 dropout: Numbers | None = None, init_scale: Numbers = 1.0, seed: int | Sequence[int] = 0,
                 grad_clip: float | None = None, loss: str = "auto",
                 scheduler: Callable | Sequence[Callable] | None = None, scheduler_interval: str = "epoch",
                 path: str = "auto", device: torch.device | str | None = None):
        if isinstance(model_fn, nn.Module) or not callable(model_fn):
            raise TypeError("model_fn must be a function that builds the model, e.g. "
                            f"lambda: mlp(64, 10); got {type(model_fn).__name__}")
        if not isinstance(K, int) or isinstance(K, bool) or K < 1:
            raise ValueError(f"K must be a positive int; got {K!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}; got {loss!r}")
        if path not in PATHS:
            raise ValueError(f"path must be one of {', '.join(map(repr, PATHS))}; got {path!r}")
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ValueError(f"scheduler_interval must be one of {', '.join(map(repr, SCHEDULER_INTERVALS))}; "
                             f"got {scheduler_interval!r}")
        if grad_clip is not None and (isinstance(grad_clip, bool) or not isinstance(grad_clip, (int, float))
                                      or not grad_clip > 0):
            raise ValueError(f"grad_clip must be None or a positive number; got {grad_clip!r}")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        names = _per_model_optimizer(optimizer, K)
        self.K, self.model_fn, self.loss, self.grad_clip = K, model_fn, loss, grad_clip
        self.device = get_device(None if device is None else str(device))
        self.hparams = {
            "lr": _per_model("lr", lr, K, low=0.0, low_open=True),
            "weight_decay": _per_model("weight_decay", [_DEFAULT_WEIGHT_DECAY[n] for n in names]
                                       if weight_decay is None else weight_decay, K, low=0.0),
            "momentum": _per_model("momentum", [_DEFAULT_MOMENTUM[n] for n in names]
                                   if momentum is None else momentum, K, low=0.0, high=1.0, high_open=True),
            "alpha": _per_model("alpha", alpha, K, low=0.0, high=1.0),
            "beta1": _per_model("betas[0]", betas[0], K, low=0.0, high=1.0, high_open=True),
            "beta2": _per_model("betas[1]", betas[1], K, low=0.0, high=1.0, high_open=True),
            "eps": _per_model("eps", eps, K, low=0.0),
            "init_scale": _per_model("init_scale", init_scale, K, low=0.0),
        }
        if dropout is not None:
            self.hparams["dropout"] = _per_model("dropout", dropout, K, low=0.0, high=1.0, high_open=True)
        self.seeds = _per_model_seed("seed", seed, K)
        self.optimizers = names
        self.path = path
        self._build()
        self.step = 0  # optimizer steps taken so far (Adam's bias correction needs it)
        # the hyperparameters a scheduler may change as training goes
        self._live = {n: self.hparams[n].clone() for n in ("lr", "momentum", "beta1", "beta2")}
        self.scheduler_interval = scheduler_interval
        self.schedulers = None if scheduler is None else self._make_schedulers(scheduler)

    # -- parameters --------------------------------------------------------------------
    def _make_one(self, k: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[k])
            return self.model_fn()

    def _build(self) -> None:
        models = [self._make_one(k) for k in range(self.K)]
        for m in models:
            if not isinstance(m, nn.Module):
                raise TypeError(f"model_fn must return an nn.Module; got {type(m).__name__}")
        fast = self.path == "fast" or (self.path == "auto" and _is_plain_mlp(models[0]))
        self._func: _Functional | None = None
        self.state: dict[str, dict] = {}   # per optimizer: its buffers (and kept row views)
        if not fast:
            self._func = _Functional(models, self.hparams["init_scale"], self.device, force_vmap=self.path == "func")
            self.w, self.buffers = self._func.w, self._func.buffers
            self.grad = torch.zeros_like(self.w)
            self._setup_dropout()
            return
        self.buffers = {}
        if "dropout" in self.hparams:
            raise ValueError("dropout= sets the rate of the model's nn.Dropout layers, but model_fn builds "
                             "none; build it with one, e.g. mlp(..., dropout=0.5)")
        rows, spec = [], None
        for k, net in enumerate(models):
            layers = _layers_of(net)
            shapes = [(type(m), tuple(m.weight.shape), m.bias is not None) if isinstance(m, nn.Linear)
                      else (type(m),) for m in layers]
            if spec is None:
                spec, self.layers = shapes, layers
            elif shapes != spec:
                raise ValueError("model_fn must build the same architecture every time; "
                                 f"model {k} differs from model 0")
            scale = self.hparams["init_scale"][k].item()
            row = []
            for m in layers:
                if isinstance(m, nn.Linear):
                    row.append(m.weight.detach().float().flatten() * scale)
                    if m.bias is not None:
                        row.append(m.bias.detach().float().flatten())
            rows.append(torch.cat(row))
        if not any(isinstance(m, nn.Linear) for m in self.layers):
            raise ValueError("model_fn must build a model with at least one nn.Linear layer")
        self.sizes = [n for m in self.layers if isinstance(m, nn.Linear)
                      for n in ((m.weight.numel(), m.bias.numel()) if m.bias is not None else (m.weight.numel(),))]
        self.w = torch.stack(rows).to(self.device)
        self.grad = torch.zeros_like(self.w)
        # the views stay valid because every update writes into w in place
        self._w_views = self._params(self.w)

    def _setup_dropout(self) -> None:
        func = self._func
        if "dropout" in self.hparams and not func.dropouts:
            raise ValueError("dropout= sets the rate of the model's nn.Dropout layers, but model_fn builds "
                             "none; build it with one, e.g. mlp(..., dropout=0.5)")
        # keep probability of each dropout layer, per model: [layers, K]
        if "dropout" in self.hparams:
            keep = (1 - self.hparams["dropout"]).unsqueeze(0).expand(len(func.dropouts), -1)
        else:
            keep = torch.tensor([[1 - d.p] * self.K for d in func.dropouts], dtype=torch.float64)
        self._keep = keep.to(torch.float32).numpy()
        self._mask_gens = [mask_generator(s) for s in self.seeds] if func.dropouts else []

    def _masks(self, batch_shape: tuple) -> list[torch.Tensor]:
        """This step's dropout masks, [K, *input shape] per dropout layer, each model from its
        own stream (:func:`dropout_masks`)."""
        if not self._mask_gens:
            return []
        _, shapes = self._func.probe(batch_shape)
        return dropout_masks_layers(self._mask_gens, shapes, self._keep, self.device)

    @property
    def n_params(self) -> int:
        """Parameters per model (P in ``w``'s shape [K, P])."""
        return int(self.w.shape[1])

    def model(self, k: int) -> nn.Module:
        """Model k as an ordinary ``nn.Module`` holding a copy of its current weights (and buffers).

        >>> net = sweep.model(3); net(data.X_val).argmax(1)                # doctest: +SKIP
        """
        if not isinstance(k, int) or isinstance(k, bool) or not -self.K <= k < self.K:
            raise ValueError(f"k must be an int in [0, {self.K}); got {k!r}")
        k %= self.K
        net = self._make_one(k)
        flat = self.w[k].cpu()
        with torch.no_grad():
            if self._func is None:
                torch.nn.utils.vector_to_parameters(flat, [p for m in _layers_of(net)
                                                           if isinstance(m, nn.Linear) for p in m.parameters()])
            else:
                params = self._func.params(flat)
                for n, p in net.named_parameters():
                    p.copy_(params[n])
                for n, b in net.named_buffers():
                    b.copy_(self.buffers[n][k])
        return net.to(self.device)

    # -- schedulers ----------------------------------------------------------------------
    def _make_schedulers(self, scheduler) -> list:
        makers = list(scheduler) if isinstance(scheduler, (list, tuple)) else [scheduler] * self.K
        if len(makers) != self.K or not all(callable(f) for f in makers):
            raise ValueError("scheduler must be a function of an optimizer that builds a "
                             f"torch.optim.lr_scheduler, or K={self.K} of them; got {scheduler!r}")
        schedulers = []
        for k, make in enumerate(makers):
            opt = self._stand_in_optimizer(k)
            sched = make(opt)
            if not hasattr(sched, "step"):
                raise TypeError(f"scheduler must return a torch.optim.lr_scheduler object; got {type(sched).__name__}")
            opt.step()  # no gradient, so nothing moves; the scheduler then sees step() called as it expects
            plateau = isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if plateau and self.scheduler_interval == "step":
                raise ValueError("ReduceLROnPlateau watches the validation loss, so it needs "
                                 "scheduler_interval='epoch'")
            schedulers.append((opt, sched, plateau))
        self._schedulers_ = schedulers
        self._read_schedulers()
        return schedulers

    def _stand_in_optimizer(self, k: int) -> torch.optim.Optimizer:
        """A torch optimizer with model k's hyperparameters on a dummy parameter: its scheduler
        sets lr (and momentum or betas) exactly as it would on the real one."""
        hp = {n: float(v[k]) for n, v in self.hparams.items()}
        name, p = self.optimizers[k], [torch.zeros(1, requires_grad=True)]
        if name in ("sgd", "momentum", "nesterov"):
            opt = torch.optim.SGD(p, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"],
                                  nesterov=name == "nesterov" and hp["momentum"] > 0)
        elif name == "rmsprop":
            opt = torch.optim.RMSprop(p, lr=hp["lr"], alpha=hp["alpha"], eps=hp["eps"],
                                      weight_decay=hp["weight_decay"], momentum=hp["momentum"])
        else:
            cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
            opt = cls(p, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                      weight_decay=hp["weight_decay"])
        return opt

    def _read_schedulers(self) -> None:
        for k, (opt, _, _) in enumerate(self._schedulers_):
            group = opt.param_groups[0]
            self._live["lr"][k] = group["lr"]
            if "momentum" in group:
                self._live["momentum"][k] = group["momentum"]
            if "betas" in group:
                self._live["beta1"][k], self._live["beta2"][k] = group["betas"]

    def _step_schedulers(self, val_loss: torch.Tensor | None = None) -> None:
        for k, (_, sched, plateau) in enumerate(self._schedulers_):
            if plateau:
                sched.step(float(val_loss[k]))
            else:
                sched.step()
        self._read_schedulers()

    # -- forward, loss and backprop (fast path) ----------------------------------------------
    def _params(self, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(W [K, out, in], b [K, 1, out] or None) views into ``flat`` [K, P], one per Linear."""
        chunks = iter(torch.split(flat, self.sizes, dim=1))
        views = []
        for m in self.layers:
            if isinstance(m, nn.Linear):
                W = next(chunks).view(self.K, m.out_features, m.in_features)
                views.append((W, next(chunks).view(self.K, 1, m.out_features) if m.bias is not None else None))
        return views

    def _forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """Outputs [K, B, out] for inputs [B, in] (shared) or [K, B, in] (one batch per model).

        With a ``cache`` list, what backprop needs is appended to it, layer by layer.
        """
        h = x.expand(self.K, *x.shape) if x.dim() == 2 else x
        params = iter(self._w_views)
        for m in self.layers:
            if isinstance(m, nn.Linear):
                W, b = next(params)
                if cache is not None:
                    cache.append(h)
                h = torch.bmm(h, W.transpose(1, 2)) if b is None else torch.baddbmm(b, h, W.transpose(1, 2))
            elif cache is not None and type(m) not in _DERIVATIVE:
                h_in = h.detach().requires_grad_()  # no formula: let autograd do this one layer
                with torch.enable_grad():
                    h = m(h_in)
                cache.append((h_in, h))
            else:
                a = m(h)
                if cache is not None:
                    cache.append((h, a))
                h = a
        return h

    def _backward(self, dout: torch.Tensor, cache: list) -> None:
        """Backprop d(loss_k)/d(out_k) [K, B, out] through the layers into ``self.grad`` [K, P].

        Every product is batched over K, so model k's gradient depends on model k alone.
        """
        dz = dout
        params = self._w_views
        grads: list[torch.Tensor] = []   # filled from the last layer back, then reversed
        i = len(params)
        for layer, saved in zip(reversed(self.layers), reversed(cache)):
            if isinstance(layer, nn.Linear):
                i -= 1
                W, b = params[i]
                if b is not None:
                    grads.append(dz.sum(1))                     # dL/db = sum of dz over the batch
                grads.append(torch.bmm(dz.transpose(1, 2), saved).flatten(1))  # dL/dW = dz^T a_in
                if i > 0:
                    dz = torch.bmm(dz, W)                       # dL/da_in = dz W
            else:
                h, a = saved
                derivative = _DERIVATIVE.get(type(layer))
                dz = torch.autograd.grad(a, h, dz)[0] if derivative is None else derivative(layer, dz, h, a)
        # one copy into the [K, P] rows (writing each block in place through a strided view is slower)
        torch.cat(grads[::-1], dim=1, out=self.grad)

    @torch.no_grad()
    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """All K models' outputs (logits or regression values) for ``X``, in eval mode: [K, N, out]."""
        X = X.to(self.device, torch.float32)
        return self._forward(X) if self._func is None else self._func.forward(self.w, X)

    def _loss(self, out: torch.Tensor, y: torch.Tensor, classification: bool,
              with_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-model mean loss [K] and, if asked, its gradient d(loss_k)/d(out_k) [K, B, out].

        Reductions run over the batch only, never across models.
        """
        B = out.shape[1]
        if classification:
            target = (y.expand(self.K, -1) if y.dim() == 1 else y).unsqueeze(-1)
            logp = out - out.logsumexp(-1, keepdim=True)
            loss = -logp.gather(-1, target).squeeze(-1).mean(1)
            if not with_grad:
                return loss, None
            dout = logp.exp_()                 # softmax ...
            dout.scatter_add_(-1, target, self._minus_ones(target))   # ... minus one-hot
            return loss, dout.div_(B)
        diff = out - y
        loss = diff.square().flatten(1).mean(1)
        return loss, (diff.mul_(2.0 / diff[0].numel()) if with_grad else None)

    def _minus_ones(self, like: torch.Tensor) -> torch.Tensor:
        if getattr(self, "_ones", None) is None or self._ones.shape != like.shape:
            self._ones = torch.full(like.shape, -1.0, device=self.device)
        return self._ones

    # -- optimizer ---------------------------------------------------------------------
    def _groups(self) -> dict[str, torch.Tensor | None]:
        """Rows of each optimizer; ``None`` means all rows (no gather/scatter needed)."""
        if len(set(self.optimizers)) == 1:
            return {self.optimizers[0]: None}
        return {name: torch.tensor([k for k, n in enumerate(self.optimizers) if n == name], device=self.device)
                for name in dict.fromkeys(self.optimizers)}

    def _tables(self, rows: torch.Tensor | None, n_steps: int) -> dict:
        """Per-model hyperparameters as [k, 1] float32 columns, plus Adam's per-step factors,
        for the next ``n_steps`` steps (until a scheduler changes them).

        They are worked out in float64 first, as torch.optim does with Python floats,
        so each row rounds exactly as a lone torch optimizer would.
        """
        pick = (lambda v: v) if rows is None else (lambda v, r=rows.cpu(): v[r])
        hp = {n: pick(v) for n, v in {**self.hparams, **self._live}.items()}
        col = lambda t: t.unsqueeze(-1).to(self.device, torch.float32)  # noqa: E731
        t = torch.arange(self.step + 1, self.step + n_steps + 1, dtype=torch.float64).unsqueeze(1)  # [S, 1]
        bc1, bc2 = 1 - hp["beta1"] ** t, 1 - hp["beta2"] ** t                                   # [S, k]
        return {"start": self.step,
                "neg_lr": col(-hp["lr"]), "weight_decay": col(hp["weight_decay"]),
                "momentum": col(hp["momentum"]), "one_minus_beta1": col(1 - hp["beta1"]),
                "beta2": col(hp["beta2"]), "one_minus_beta2": col(1 - hp["beta2"]), "eps": col(hp["eps"]),
                "alpha": col(hp["alpha"]), "one_minus_alpha": col(1 - hp["alpha"]),
                "decay": col(1 - hp["lr"] * hp["weight_decay"]),
                "neg_step_size": col(-hp["lr"] / bc1), "bc2_sqrt": col(bc2.sqrt()),
                "sqrt_floor": _sqrt_floor(hp["eps"], bc2.sqrt().min() if n_steps else 1.0),
                "any_momentum": bool((hp["momentum"] > 0).any()),
                "any_weight_decay": bool((hp["weight_decay"] > 0).any()),
                # Adam's fused kernel takes Python floats: rows with the same values share a call
                "fused": _fused_groups(hp)}

    @torch.no_grad()
    def _update(self, w: torch.Tensor, grad: torch.Tensor, name: str, hp: dict) -> None:
        """One optimizer step on rows ``w`` in place, with the hyperparameter tables ``hp``."""
        s = self.step - hp["start"]  # row of the per-step tables
        if name not in self.state:
            # scratch buffers are reused every step: fresh [K, P] temporaries are slow on CPU
            self.state[name] = {"tmp": torch.empty_like(w), "tmp2": torch.empty_like(w)}
            if name in ("adam", "adamw"):
                self.state[name].update(m=torch.zeros_like(w), v=torch.zeros_like(w))
            if name == "rmsprop":
                self.state[name]["square_avg"] = torch.zeros_like(w)
        state = self.state[name]
        tmp, tmp2 = state["tmp"], state["tmp2"]
        if name in ("adam", "adamw") and fused_adam_supported(w.device):
            # torch's fused Adam kernel (torch.optim.Adam(fused=True)): one pass over w, grad, m
            # and v instead of ten, per group of rows that share their hyperparameters
            if "step" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=w.device)
            step = state["step"]
            step.fill_(self.step + 1)
            kernel = torch._fused_adam_ if name == "adam" else torch._fused_adamw_
            grad = grad.contiguous()   # the kernel reads its tensors as flat arrays
            rows = None
            for (lr, beta1, beta2, eps, wd), ks in hp["fused"]:
                if ks is None:   # every row the same: the whole tensors in one call
                    tensors = ([w], [grad], [state["m"]], [state["v"]])
                else:
                    if rows is None:
                        rows = (_rows_of(state, "w", w), grad.unbind(0), _rows_of(state, "m", state["m"]),
                                _rows_of(state, "v", state["v"]))
                    tensors = tuple([r[k] for k in ks] for r in rows)
                kernel(*tensors, [], [step] * len(tensors[0]), lr=lr, beta1=beta1, beta2=beta2,
                       weight_decay=wd, eps=eps, amsgrad=False, maximize=False)
        elif name in ("adam", "adamw"):
            if name == "adamw":
                w.mul_(hp["decay"])
            elif hp["any_weight_decay"]:
                grad.addcmul_(w, hp["weight_decay"])
            m, v = state["m"], state["v"]
            m.lerp_(grad, hp["one_minus_beta1"])
            v.mul_(hp["beta2"]).addcmul_(torch.mul(grad, hp["one_minus_beta2"], out=tmp), grad)
            denom = _sqrt(v, hp["sqrt_floor"], tmp).div_(hp["bc2_sqrt"][s]).add_(hp["eps"])
            w.addcdiv_(torch.mul(m, hp["neg_step_size"][s], out=tmp2), denom)
        elif name == "rmsprop":
            if hp["any_weight_decay"]:
                grad.addcmul_(w, hp["weight_decay"])
            # square_avg = alpha * square_avg + (1 - alpha) * grad^2;  avg = sqrt(square_avg) + eps
            square_avg = state["square_avg"]
            square_avg.mul_(hp["alpha"]).addcmul_(torch.mul(grad, hp["one_minus_alpha"], out=tmp), grad)
            avg = _sqrt(square_avg, hp["sqrt_floor"], tmp).add_(hp["eps"])
            if hp["any_momentum"]:
                buf = state.get("buf")
                if buf is None:
                    buf = state["buf"] = torch.zeros_like(w)  # torch's RMSprop starts it at zero
                buf.mul_(hp["momentum"]).addcdiv_(grad, avg)
                w.addcmul_(buf, hp["neg_lr"])
            else:
                w.addcdiv_(torch.mul(grad, hp["neg_lr"], out=tmp2), avg)
        else:
            if hp["any_weight_decay"]:
                grad.addcmul_(w, hp["weight_decay"])
            # torch skips the buffer when momentum is 0; so do we, since 0 * inf would be NaN
            if hp["any_momentum"]:
                buf = state.get("buf")
                if buf is None:
                    buf = state["buf"] = grad.clone()  # torch starts the buffer at the first gradient
                else:
                    buf.mul_(hp["momentum"]).add_(grad)
                grad = torch.addcmul(grad, buf, hp["momentum"], out=tmp) if name == "nesterov" else buf
            w.addcmul_(grad, hp["neg_lr"])

    def _clip(self, grad: torch.Tensor) -> None:
        # each model's own norm, as clip_grad_norm_ on that model alone; a NaN norm stays in its row
        norm = grad.norm(dim=1, keepdim=True)
        grad.mul_((self.grad_clip / (norm + 1e-6)).clamp_(max=1.0))

    # -- training ------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, data: Dataset, epochs: int, batch_size: int = 64,
            data_seed: int | Sequence[int] = 0, progress: bool | str = "auto") -> SweepHistory:
        """Train all K models for ``epochs`` epochs and return their :class:`SweepHistory`.

        ``data_seed`` sets the batch order. An int gives all K models the same
        batches, in exactly the order ``Trainer(..., seed=data_seed)`` uses; K ints
        give each model its own order (as K Trainers with those seeds would).
        Each epoch ends with a validation pass in eval mode. ``progress="auto"``
        shows a tqdm bar in a live notebook once the fit has run a few seconds,
        and never in the book build; ``True`` or ``False`` force it.
        """
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a coursekit Dataset (see load_dataset); got {type(data).__name__}")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive int; got {epochs!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
        if progress not in ("auto", True, False):
            raise ValueError(f"progress must be 'auto', True or False; got {progress!r}")
        classification = self._classification(data)
        example = self._check_data(data)
        shared = isinstance(data_seed, int) and not isinstance(data_seed, bool)
        seeds = [data_seed] if shared else _per_model_seed("data_seed", data_seed, self.K)
        gens = [torch.Generator().manual_seed(s) for s in seeds]

        K, dev = self.K, self.device
        if dev.type == "cpu":
            keep_freed_memory()   # no page faults for the step's tensors (see its docstring)
        X, y = data.X_train.to(dev, torch.float32), data.y_train.to(dev)
        n = len(X)
        per_epoch = math.ceil(n / batch_size)
        groups = self._groups()
        # the tables hold until a scheduler changes a hyperparameter
        per_step_schedule = self.schedulers is not None and self.scheduler_interval == "step"
        tables: dict | None = None
        step_loss = torch.empty(K, epochs * per_epoch, device=dev)
        train_loss, train_acc, val_loss, val_acc = (torch.empty(K, epochs, device=dev) for _ in range(4))
        lr = torch.empty(K, epochs, dtype=torch.float64)
        bar = self._progress_bar(progress, epochs)
        s = 0
        for epoch in range(epochs):
            # K ints: one permutation per model, gathered as [K, batch] indices
            perm = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
            correct = torch.zeros(K, dtype=torch.long, device=dev)
            for start in range(0, n, batch_size):
                if tables is None:
                    left = 1 if per_step_schedule else epochs * per_epoch - s
                    tables = {name: self._tables(rows, left) for name, rows in groups.items()}
                idx = perm[:, start:start + batch_size]
                idx = idx[0] if shared else idx
                xb, yb = X[idx], y[idx]
                if self._func is None:
                    cache: list = []
                    out = self._forward(xb, cache)
                    loss, dout = self._loss(out, yb, classification, with_grad=True)
                    self._backward(dout, cache)
                    grad = self.grad
                else:
                    masks = self._masks((idx.shape[-1], *example))
                    grad, loss, out = self._func.step(self.w, xb, yb, masks, classification)
                if self.grad_clip is not None:
                    self._clip(grad)
                for name, rows in groups.items():
                    if rows is None:
                        self._update(self.w, grad, name, tables[name])
                    else:
                        w_rows = self.w[rows]
                        self._update(w_rows, grad[rows], name, tables[name])
                        self.w[rows] = w_rows
                step_loss[:, s] = loss
                if classification:
                    correct += (out.argmax(-1) == yb).sum(-1)
                s += 1
                self.step += 1
                if per_step_schedule:
                    self._step_schedulers()
                    tables = None
            # batch-size-weighted mean of this epoch's step losses, as Trainer reports it
            sizes = torch.full((per_epoch,), float(batch_size), device=dev)
            sizes[-1] = n - batch_size * (per_epoch - 1)
            train_loss[:, epoch] = (step_loss[:, s - per_epoch:s] * sizes).sum(1) / n
            train_acc[:, epoch] = correct / n if classification else math.nan
            val_loss[:, epoch], val_acc[:, epoch] = self.evaluate(data, "val")
            lr[:, epoch] = self._live["lr"]
            if self.schedulers is not None and not per_step_schedule:
                self._step_schedulers(val_loss[:, epoch].cpu())
                tables = None
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self._history(step_loss, train_loss, train_acc, val_loss, val_acc, lr)

    def _check_data(self, data: Dataset) -> tuple:
        """Check that the model takes ``data``; return one example's shape."""
        example = tuple(data.X_train.shape[1:])
        if self._func is None:
            first, last = self.layers_io
            if data.n_features != first:
                raise ValueError(f"the model takes {first} input features but data {data.name!r} "
                                 f"has {data.n_features}")
        else:
            try:
                out_shape, _ = self._func.probe((2, *example))   # 2: batch norm with batch statistics needs more than one
            except (RuntimeError, ValueError, IndexError, TypeError) as e:
                raise ValueError(f"the model cannot take data {data.name!r} (examples of shape {example}): "
                                 f"{e}") from None
            last = out_shape[-1]
            self._func.bind(example, data.y_train.dim() - 1)
        if last != data.n_outputs:
            raise ValueError(f"the model has {last} outputs but data {data.name!r} needs {data.n_outputs}")
        return example

    def _progress_bar(self, progress: bool | str, epochs: int):
        if progress == "auto":
            progress, delay = live_mode(), PROGRESS_DELAY_S
        else:
            delay = 0.0
        if not progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=epochs, desc=f"sweep of {self.K} models", unit="epoch", leave=False, delay=delay)

    def _history(self, step_loss, train_loss, train_acc, val_loss, val_acc, lr) -> SweepHistory:
        step_loss = step_loss.cpu()
        bad = ~torch.isfinite(step_loss)
        first_bad = torch.where(bad.any(1), bad.int().argmax(1), torch.full_like(bad[:, 0], -1, dtype=torch.long))
        hparams = {n: v.clone() for n, v in self.hparams.items()}
        hparams["seed"] = torch.tensor(self.seeds)
        hparams["optimizer"] = list(self.optimizers)
        return SweepHistory(step_loss, train_loss.cpu(), train_acc.cpu(), val_loss.cpu(), val_acc.cpu(),
                            first_bad.long(), hparams, lr)

    @torch.no_grad()
    def evaluate(self, data: Dataset, split: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
        """Per-model (loss, accuracy) on a split in eval mode, each of shape [K];
        accuracy is NaN for regression."""
        X, y = data.split(split)
        classification = self._classification(data)
        if len(X) == 0:
            nan = torch.full((self.K,), math.nan, device=self.device)
            return nan, nan.clone()
        y = y.to(self.device)
        out = self.predict(X)
        loss, _ = self._loss(out, y, classification)
        acc = (out.argmax(-1) == y).float().mean(1) if classification else torch.full_like(loss, math.nan)
        return loss, acc

    # -- helpers -------------------------------------------------------------------------
    @property
    def layers_io(self) -> tuple[int, int]:
        """(input features, outputs) of a fast-path MLP."""
        if self._func is not None:
            raise AttributeError("layers_io describes a plain MLP (the fast path); this sweep uses the general path")
        linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        return linears[0].in_features, linears[-1].out_features

    def _classification(self, data: Dataset) -> bool:
        if self.loss == "auto":
            return data.task == "classification"
        return self.loss == "cross_entropy"

    @property
    def engine(self) -> str:
        """How the gradients are computed: ``'fast'`` (plain MLP, backprop written out),
        ``'wide'`` (general path, one wide network: :mod:`coursekit.wide`) or ``'func'``
        (general path, ``torch.func``'s vmap, for modules the wide network does not know)."""
        if self._func is None:
            return "fast"
        example = getattr(self._func, "_example", None)
        known = self._func.wide is not None and (example is None or self._func.wide.accepts(example))
        return "wide" if known else "func"

    def __repr__(self) -> str:
        path = "fast" if self._func is None else f"general ({self.engine})"
        return (f"Sweep(K={self.K}, optimizer={sorted(set(self.optimizers))}, P={self.n_params}, "
                f"path={path}, device={self.device})")


def _layers_of(net: nn.Module) -> list[nn.Module]:
    """The flat list of layers of a (possibly nested) ``nn.Sequential``, checked for the fast path."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"model_fn must return an nn.Module; got {type(net).__name__}")
    if not isinstance(net, nn.Sequential):
        raise TypeError("the fast path takes an nn.Sequential (e.g. coursekit.mlp); "
                        f"got {type(net).__name__} (use path='auto' or 'general')")
    layers: list[nn.Module] = []
    for m in net:
        if isinstance(m, nn.Sequential):
            layers += _layers_of(m)
        elif isinstance(m, nn.Linear):
            layers.append(m)
        elif isinstance(m, ELEMENTWISE):
            layers.append(wide.out_of_place(m))   # its backprop keeps the layer's input and output
        else:
            allowed = ", ".join(c.__name__ for c in (nn.Linear, *ELEMENTWISE))
            raise TypeError(f"the fast path supports layers {allowed}; got {type(m).__name__} "
                            "(use path='auto' or 'general')")
    linears = [id(m) for m in layers if isinstance(m, nn.Linear)]   # nested Sequentials included
    if len(set(linears)) != len(linears):
        raise TypeError("the fast path takes each nn.Linear once; this model uses one at two places "
                        "(shared weights: use path='auto' or 'general')")
    return layers


def _is_plain_mlp(net: nn.Module) -> bool:
    try:
        return any(isinstance(m, nn.Linear) for m in _layers_of(net))
    except TypeError:
        return False


def train_sweep(model_fn: Callable[[], nn.Module], data: Dataset, epochs: int, K: int | None = None,
                batch_size: int = 64, data_seed: int | Sequence[int] = 0, **hparams) -> SweepHistory:
    """One call: build a :class:`Sweep` and fit it. K defaults to the length of the longest
    per-model hyperparameter.

    >>> h = train_sweep(lambda: mlp(2, 2), load_dataset("moons"), epochs=3,
    ...                 optimizer="momentum", lr=[0.01, 0.1, 1.0])             # doctest: +SKIP
    >>> h.val_loss[:, -1]                                                       # doctest: +SKIP
    """
    if K is None:
        per_model = ("lr", "weight_decay", "momentum", "alpha", "eps", "dropout", "init_scale", "seed",
                     "optimizer", "scheduler")
        lengths = [len(v) for name, v in hparams.items()
                   if name in per_model and isinstance(v, (Sequence, torch.Tensor)) and not isinstance(v, str)
                   and not (isinstance(v, torch.Tensor) and v.dim() == 0)]
        lengths += [len(b) for b in hparams.get("betas", ()) if isinstance(b, (Sequence, torch.Tensor))
                    and not (isinstance(b, torch.Tensor) and b.dim() == 0)]
        lengths += [] if isinstance(data_seed, int) else [len(data_seed)]
        K = max(lengths, default=1)
    return Sweep(model_fn, K, **hparams).fit(data, epochs, batch_size=batch_size, data_seed=data_seed)
