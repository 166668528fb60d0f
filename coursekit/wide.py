"""One "wide" network for K models of one architecture: the sweep's general path without vmap.

The K models' activations live side by side in one tensor, with the batch innermost:

- after a ``Linear`` (features):         h[k, f, b]      shape [K, F, B]
- after a ``Conv1d`` (channels, length): h[k, c, l, b]   shape [K, C, L, B]

With the batch inside each model's block, every layer of the K models is one ordinary
kernel, forward and backward, with as many operations as one model needs (``Flatten``
and ``Unflatten`` are free views, and the patches of a convolution are copies of whole
rows of B numbers):

- ``Linear``: y_k = W_k x_k + b_k is one batched product, ``baddbmm(b, W, h)`` over K.
- ``Conv1d``: the patches of model k's input (im2col) times its kernel as a matrix,
  again one ``baddbmm`` over K; backward scatters the patches' gradient back (col2im).
  A first layer whose input all K models share builds its patches once.
- ``BatchNorm1d``: channel (k, c) has its own statistics over (b, l), so the K*C
  channels are the K*C contiguous rows of one [K*C, L*B] view, normalised together
  (:class:`_BatchNormTrain`: five plain passes forward, torch's own kernel backward; in eval
  mode torch's batch norm with the running statistics), and the running statistics of
  model k are rows k of the [K, C] buffers, updated in place as torch updates them.
- ``Dropout``: multiplies by the mask the sweep hands in (model k's own stream, drawn
  straight into this layout: ``coursekit.sweep.dropout_masks``).
- element-wise activations, ``Flatten``, ``Unflatten``, ``MaxPool1d``, ``AvgPool1d``.

The K models' parameters are the rows of the sweep's ``w`` [K, P] (views into it).
:meth:`WideNet.step` backpropagates layer by layer with the rules written out (batched
over K, so each model gets the gradient of its own loss) and gathers the gradients in
``w``'s layout, ready for the optimizer update; :meth:`WideNet.run` is the same forward
pass for evaluation, and under autograd it is the reference the tests hold ``step`` to.

:func:`plan` returns None for a module it does not know; the sweep then keeps its
``torch.func`` path (vmap of ``functional_call``), which takes any module.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
>>> plan(net) is not None, plan(nn.Sequential(nn.LSTM(4, 8))) is None
(True, True)
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

# Examples per forward pass in eval mode, small enough for the K models' activations to stay in
# the CPU's cache: 512 measured best of 64-1024 for MLPs; a network with a convolution has patches
# ~6x an MLP's activations per example. For 16 CNNs on MNIST-1D's 1,000 validation examples, 1 thread
# (2 threads): 31.5 (18.8) ms at 64, 46.0 (26.3) at 512.
EVAL_CHUNK, EVAL_CHUNK_CONV = 512, 64

# Element-wise layers act on any layout unchanged.
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.Identity, nn.ELU,
               nn.SiLU, nn.Softplus)
# Backprop through an element-wise layer: dz_in = dz * activation'(h), from its input h and
# output a. ReLU and LeakyReLU use torch's own backward kernels, several times faster than a
# mask multiply. Other element-wise layers fall back to autograd.
DERIVATIVE = {
    nn.ReLU: lambda m, dz, h, a: torch.ops.aten.threshold_backward(dz, a, 0),
    nn.LeakyReLU: lambda m, dz, h, a: torch.ops.aten.leaky_relu_backward(dz, h, m.negative_slope, False),
    nn.Tanh: lambda m, dz, h, a: dz * (1 - a * a),
    nn.Sigmoid: lambda m, dz, h, a: dz * (a * (1 - a)),
    nn.Identity: lambda m, dz, h, a: dz,
}


def _flat_layers(net: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]] | None:
    """(name, layer) of a nested ``nn.Sequential`` in forward order; None if it is not one."""
    if type(net) is not nn.Sequential:
        return None
    out: list[tuple[str, nn.Module]] = []
    for name, m in net._modules.items():   # every position: named_children skips a module seen before
        if m is None:
            continue
        full = f"{prefix}{name}"
        if type(m) is nn.Sequential:
            inner = _flat_layers(m, full + ".")
            if inner is None:
                return None
            out += inner
        else:
            out.append((full, m))
    return out


def _supported(m: nn.Module) -> bool:
    if isinstance(m, ELEMENTWISE) or type(m) in (nn.Linear, nn.Dropout):
        return True
    if type(m) is nn.Conv1d:
        return m.groups == 1 and m.padding_mode == "zeros"
    if type(m) is nn.BatchNorm1d:
        return m.momentum is not None or not m.track_running_stats
    if type(m) is nn.Flatten:
        return m.start_dim == 1 and m.end_dim == -1
    if type(m) is nn.Unflatten:
        return m.dim == 1 and len(m.unflattened_size) == 2
    if type(m) in (nn.MaxPool1d, nn.AvgPool1d):
        return not getattr(m, "return_indices", False)
    return False


def plan(net: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The layers of ``net`` if the wide path knows every one of them, else None. A layer with
    parameters or buffers used at two places (shared weights) is left to the general path's
    ``torch.func`` engine; an activation used twice is fine. Activations built with
    ``inplace=True`` come back as copies that are not in place (:func:`out_of_place`)."""
    layers = _flat_layers(net)
    if layers is None or not layers or not all(_supported(m) for _, m in layers):
        return None
    stateful = [id(m) for _, m in layers if next(m.parameters(), None) is not None
                or next(m.buffers(), None) is not None]
    if len(set(stateful)) != len(stateful):
        return None
    return [(name, out_of_place(m)) for name, m in layers]


def out_of_place(m: nn.Module) -> nn.Module:
    """``m``, or for a layer built with ``inplace=True`` a copy that is not in place: backprop
    keeps a layer's input or output, which an in-place layer would overwrite."""
    if getattr(m, "inplace", False):
        m = copy.copy(m)
        m.inplace = False
    return m


def _taps(L: int, L_out: int, k: int, stride: int, dilation: int, pad: int) -> list[tuple[slice, slice]]:
    """For each tap j of a kernel: (output positions l, input positions l*stride + j*dilation - pad)
    of the outputs whose tap j falls inside the input (the rest read the zero padding)."""
    taps = []
    for j in range(k):
        shift = j * dilation - pad
        lo = max(0, -(shift // stride) if shift < 0 else 0)              # first l with l*stride + shift >= 0
        hi = min(L_out - 1, (L - 1 - shift) // stride)                    # last l with l*stride + shift < L
        if hi < lo:
            taps.append((slice(0, 0), slice(0, 0)))
            continue
        start = lo * stride + shift
        taps.append((slice(lo, hi + 1), slice(start, start + stride * (hi - lo) + 1, stride)))
    return taps


class _Conv1d(torch.autograd.Function):
    """K convolutions as patches times kernels, in layout [K, C, L, B] (or [1, C, L, B] when
    the K models share their input). Forward: out_k = W_k cols_k (+ b_k) with
    cols_k[(c, j), (l, b)] = x_k[c, l*stride + j*dilation - pad, b] (zero outside the input).
    Backward: dW_k = dout_k cols_k^T, db_k = sum of dout_k, and d cols_k = W_k^T dout_k
    added back onto the input positions each patch came from (col2im)."""

    @staticmethod
    def forward(ctx, x, W, b, stride: int, dilation: int, pad: tuple[int, int]):
        K, C_out, C, k = W.shape
        n, L, B = x.shape[0], x.shape[2], x.shape[3]
        L_out = (L + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1
        taps = _taps(L, L_out, k, stride, dilation, pad[0])
        cols = x.new_empty(n, C, k, L_out, B)
        for j, (out_l, in_l) in enumerate(taps):
            cols[:, :, j, out_l] = x[:, :, in_l]
            cols[:, :, j, :out_l.start].zero_()   # the taps that read the zero padding
            cols[:, :, j, out_l.stop:].zero_()
        cols = cols.view(n, C * k, L_out * B).expand(K, -1, -1)   # [K, (c, j), (l, b)]
        W2 = W.reshape(K, C_out, C * k)
        out = torch.bmm(W2, cols) if b is None else torch.baddbmm(b.unsqueeze(-1), W2, cols)
        ctx.saved = (cols, W2, taps)
        ctx.geometry = (K, C, k, B, L, L_out, b is not None, W.shape)
        return out.view(K, C_out, L_out, B)

    @staticmethod
    def backward(ctx, dout):
        cols, W2, taps = ctx.saved
        K, C, k, B, L, L_out, has_bias, w_shape = ctx.geometry
        dout = dout.reshape(K, w_shape[1], L_out * B)
        dW = torch.bmm(dout, cols.transpose(1, 2)).view(w_shape) if ctx.needs_input_grad[1] else None
        db = dout.sum(2) if has_bias and ctx.needs_input_grad[2] else None
        dx = None
        if ctx.needs_input_grad[0]:
            dcols = torch.bmm(W2.transpose(1, 2), dout).view(K, C, k, L_out, B)
            dx = dout.new_zeros(K, C, L, B)
            for j, (out_l, in_l) in enumerate(taps):
                dx[:, :, in_l] += dcols[:, :, j, out_l]
        return dx, dW, db, None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """Batch norm in training mode on rows: ``x`` [N, M] is N channels (the K models' C channels)
    of M values each (batch, or length x batch), normalised by each row's mean and biased
    variance. Returns (out, mean, var); mean and var feed the running statistics.

    The forward pass is five plain passes over x (sum, subtract, sum of squares, scale,
    shift): with the batch innermost each row is contiguous, where torch's fused kernel
    for an [1, N, M] input took 3x as long (262 vs 91 us for 16 x 128 channels of 64, one
    thread). The backward pass is torch's own kernel, which is fast on this layout.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        out, mean, var, invstd = _batch_norm_rows(x, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, dout, _dmean, _dvar):
        x, weight, mean, invstd = ctx.saved_tensors
        need = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
                ctx.needs_input_grad[2]]
        dx, dw, db = _batch_norm_rows_backward(dout, x, weight, mean, invstd, ctx.eps, need)
        return dx, dw, db, None


def _batch_norm_rows(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                     eps: float) -> tuple[torch.Tensor, ...]:
    """Batch norm of the rows of ``x`` [N, M] in training mode: (out, mean, biased var, invstd),
    the statistics as [N, 1] columns."""
    M = x.shape[1]
    mean = x.sum(1, keepdim=True).div_(M)
    xc = x - mean
    var = torch.linalg.vecdot(xc, xc).unsqueeze(1).div_(M)
    invstd = var.add(eps).rsqrt_()
    out = xc.mul_(invstd if weight is None else invstd * weight.unsqueeze(1))
    if bias is not None:
        out.add_(bias.unsqueeze(1))
    return out, mean, var, invstd


def _batch_norm_rows_backward(dout, x, weight, mean, invstd, eps: float, need: list[bool]):
    """(dx [N, M], dweight [N], dbias [N]) of :func:`_batch_norm_rows`, by torch's own kernel
    (None where ``need`` says so)."""
    N, M = x.shape
    dx, dw, db = torch.ops.aten.native_batch_norm_backward(
        dout.reshape(1, N, M), x.view(1, N, M), weight, None, None, mean.view(N), invstd.view(N),
        True, eps, need)
    return (dx.view(N, M) if dx is not None else None), dw, db


def _conv_padding(conv: nn.Conv1d) -> tuple[int, int]:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = conv.dilation[0] * (conv.kernel_size[0] - 1)
        return (total // 2, total - total // 2)
    return (conv.padding[0], conv.padding[0])


class WideNet:
    """K copies of one architecture as one network over [K, ...] tensors (see the module's doc).

    ``layers`` comes from :func:`plan`; ``names`` and ``shapes`` are the parameters in the
    order of a row of ``w`` (``named_parameters`` order).
    """

    def __init__(self, layers: list[tuple[str, nn.Module]], names: list[str], shapes: list[tuple]):
        self.layers, self.names, self.shapes = layers, names, [tuple(s) for s in shapes]
        self.sizes = [math.prod(s) for s in self.shapes]
        # the first layer with parameters: the layers before it need no backprop
        owners = {n.rpartition(".")[0] for n in names}
        self.first_trained = next((i for i, (name, _) in enumerate(layers) if name in owners), len(layers))

    # -- parameters as views ---------------------------------------------------------------
    def params(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every parameter of the K models as a [K, *shape] view into ``w`` [K, P] (one split;
        under autograd, in :meth:`run`, its backward is one concatenation into [K, P])."""
        chunks = w.split(self.sizes, dim=1)
        return {n: c.view(w.shape[0], *shape) for n, c, shape in zip(self.names, chunks, self.shapes)}

    def eval_chunk(self) -> int:
        """Examples per forward pass in eval mode: ``EVAL_CHUNK``, or ``EVAL_CHUNK_CONV`` for a
        network with a convolution (its patches are larger)."""
        return EVAL_CHUNK_CONV if any(type(m) is nn.Conv1d for _, m in self.layers) else EVAL_CHUNK

    def accepts(self, example: tuple) -> bool:
        """Does every layer see a one-model input of the rank it expects, starting from
        examples of shape ``example`` (features [F], or channels and length [C, L])?"""
        rank = len(example)
        if rank not in (1, 2):
            return False
        for _, m in self.layers:
            if type(m) is nn.Linear and rank != 1:
                return False
            if type(m) in (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d) and rank != 2:
                return False
            if type(m) is nn.Unflatten:
                if rank != 1:
                    return False
                rank = 2
            elif type(m) is nn.Flatten:
                rank = 1
        return True

    # -- the forward pass ----------------------------------------------------------------
    def run(self, w: torch.Tensor, buffers: dict, x: torch.Tensor, masks: list[torch.Tensor],
            train: bool, per_model: bool) -> torch.Tensor:
        """Outputs in layout [K, F, B] (or [K, C, L, B]) for input ``x``: [B, ...] shared by all
        models, or [K, B, ...] with ``per_model``. Batch norm's running statistics update in
        place when ``train``; ``masks`` are the dropout masks in torch's layout, [K, B, ...]."""
        K = w.shape[0]
        p = self.params(w)
        h = self.to_wide(x if per_model else x.unsqueeze(0))   # [1 or K, F, B] or [1 or K, C, L, B]
        masks = iter(masks)
        for name, m in self.layers:
            if type(m) is nn.Linear:
                W = p[f"{name}.weight"]
                h = h.expand(K, -1, -1)
                h = torch.bmm(W, h) if m.bias is None else \
                    torch.baddbmm(p[f"{name}.bias"].unsqueeze(-1), W, h)
            elif type(m) is nn.Conv1d:
                W = p[f"{name}.weight"]
                b = p[f"{name}.bias"] if m.bias is not None else None
                h = _Conv1d.apply(h, W, b, m.stride[0], m.dilation[0], _conv_padding(m))
            elif type(m) is nn.BatchNorm1d:
                h = self._batch_norm(p, buffers, name, m, h.expand(K, *h.shape[1:]), train)
            elif type(m) is nn.Dropout:
                if train:
                    h = h * self.to_wide(next(masks))
            elif type(m) is nn.Flatten:   # (c, l) is torch's order of the flat features too
                h = h.flatten(1, -2)
            elif type(m) is nn.Unflatten:
                h = h.unflatten(1, m.unflattened_size)
            elif type(m) in (nn.MaxPool1d, nn.AvgPool1d):
                h = self._pool(m, h)
            else:  # element-wise
                h = m(h)
        return h.expand(K, *h.shape[1:])

    @staticmethod
    def to_wide(t: torch.Tensor) -> torch.Tensor:
        """torch's layout [K, B, F] or [K, B, C, L] as the wide one, [K, F, B] or [K, C, L, B] (a view)."""
        return t.movedim(1, -1)

    @staticmethod
    def to_torch(h: torch.Tensor) -> torch.Tensor:
        """The wide layout back as torch's, [K, B, ...] (a view)."""
        return h.movedim(-1, 1)

    @staticmethod
    def _pool(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """1-D pooling along L of [n, C, L, B]: a 2-D pooling with a window of height 1 along B."""
        n, C, L, B = h.shape
        (k,), (s,), (p,) = (torch.nn.modules.utils._single(a) for a in (m.kernel_size, m.stride, m.padding))
        x = h.reshape(n * C, 1, L, B)
        if type(m) is nn.MaxPool1d:
            (d,) = torch.nn.modules.utils._single(m.dilation)
            out = F.max_pool2d(x, (k, 1), (s, 1), (p, 0), (d, 1), ceil_mode=m.ceil_mode)
        else:
            out = F.avg_pool2d(x, (k, 1), (s, 1), (p, 0), ceil_mode=m.ceil_mode,
                               count_include_pad=m.count_include_pad)
        return out.view(n, C, out.shape[2], B)

    def _loss_and_grad(self, h: torch.Tensor, y: torch.Tensor,
                       classification: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Each model's mean loss [K] on its batch (cross-entropy, or the mean squared error) and
        its gradient d(loss_k)/dh_k in ``h``'s layout. ``h`` is [K, out, B] or [K, C, L, B]; ``y``
        is in torch's layout, [B, ...] (shared by the K models) or [K, B, ...]."""
        K = h.shape[0]
        if classification:   # classes along dim 1; y is [B, *S] or [K, B, *S] for h [K, classes, *S, B]
            target = self.to_wide(y if y.dim() == h.dim() - 1 else y.unsqueeze(0)).unsqueeze(1)
            target = target.expand(K, *target.shape[1:])
            logp = h - h.logsumexp(1, keepdim=True)
            n = logp[0, 0].numel()   # examples (times positions) a model
            loss = logp.gather(1, target).flatten(1).sum(1).div_(-n)
            dh = logp.exp_()                                                   # softmax ...
            dh.scatter_add_(1, target, torch.full(target.shape, -1.0, dtype=dh.dtype, device=dh.device))
            return loss, dh.div_(n)                                            # ... minus one-hot, / n
        out = self.to_torch(h)
        diff = out - y.to(out.dtype)   # torch's layout, broadcast as the loss is defined
        loss = diff.square().flatten(1).mean(1)
        dout = diff.mul_(2.0 / diff[0].numel())
        return loss, self.to_wide(dout if dout.shape == out.shape else dout.sum_to_size(out.shape))

    def step(self, w: torch.Tensor, buffers: dict, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor],
             classification: bool, per_model: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(grad [K, P], loss [K], out [K, B, ...]) of every model on its batch, in train mode.

        The same forward pass as :meth:`run`, with backprop written out layer by layer
        (:meth:`_backward`); every product is batched over K, so model k's gradient depends on
        model k alone. A layer with no rule there (pooling, GELU, ...) has autograd do that one
        layer. Against one autograd call on the sum of the K losses, this takes the engine's
        bookkeeping out of every step and lets a ReLU work in place: measured side by side,
        16 batch-norm + dropout MLPs on MNIST-1D 4.76 -> 4.38 ms a step on one thread and
        3.84 -> 3.26 on two; 16 of its small CNNs 6.68 -> 6.04 and 4.02 -> 3.60.
        """
        K = w.shape[0]
        p = self.params(w)
        h = self.to_wide(x if per_model else x.unsqueeze(0))   # [1 or K, F, B] or [1 or K, C, L, B]
        masks = iter(masks)
        first = self.first_trained
        tape = []
        for i, (name, m) in enumerate(self.layers):
            # a ReLU may overwrite its input when that is a fresh output that nothing keeps
            in_place = i > 0 and type(self.layers[i - 1][1]) in _FRESH_OUTPUT
            h, saved = self._forward(name, m, p, buffers, h, masks, K, need_dx=i > first, in_place=in_place)
            tape.append(saved)
        h = h.expand(K, *h.shape[1:])
        loss, dh = self._loss_and_grad(h, y, classification)
        grads: dict[str, torch.Tensor] = {}
        for i in range(len(self.layers) - 1, first - 1, -1):
            name, m = self.layers[i]
            dh = self._backward(name, m, dh, tape[i], grads, K, need_dx=i > first)
        grad = torch.cat([grads[n].reshape(K, -1) for n in self.names], dim=1)
        # torch's layout, copied: reading the strided view (argmax over classes) is ~10x slower than the copy
        return grad, loss, self.to_torch(h).contiguous()

    def _forward(self, name: str, m: nn.Module, p: dict, buffers: dict, h: torch.Tensor, masks,
                 K: int, need_dx: bool, in_place: bool = False) -> tuple[torch.Tensor, tuple]:
        """One layer of :meth:`step`'s forward pass in train mode: (output, what backprop needs)."""
        t = type(m)
        if t is nn.Linear:
            W = p[f"{name}.weight"]
            h = h.expand(K, -1, -1)
            z = torch.bmm(W, h) if m.bias is None else torch.baddbmm(p[f"{name}.bias"].unsqueeze(-1), W, h)
            return z, (h, W)
        if t is nn.Conv1d:
            b = p[f"{name}.bias"] if m.bias is not None else None
            ctx = _Context((need_dx, True, b is not None))
            z = _Conv1d.forward(ctx, h, p[f"{name}.weight"], b, m.stride[0], m.dilation[0], _conv_padding(m))
            return z, (ctx,)
        if t is nn.BatchNorm1d:
            h = h.expand(K, *h.shape[1:])
            x, weight, bias, running = self._batch_norm_inputs(p, buffers, name, m, h, True)
            out, mean, var, invstd = _batch_norm_rows(x, weight, bias, m.eps)
            self._update_running(running, m, mean, var, x.shape[1])
            return out.view(h.shape), (x, weight, mean, invstd, h.shape)
        if t is nn.Dropout:
            mask = self.to_wide(next(masks))
            return h * mask, (mask,)
        if t is nn.Flatten:
            return h.flatten(1, -2), (h.shape,)
        if t is nn.Unflatten:
            return h.unflatten(1, m.unflattened_size), (h.shape,)
        if t is nn.ReLU and in_place:   # its backward reads the output only
            a = h.clamp_min_(0)
            return a, (None, a)
        if t in DERIVATIVE:
            a = m(h)
            return a, (h, a)
        # no rule written out (pooling, other activations): autograd does this one layer
        fn = (lambda a: self._pool(m, a)) if t in (nn.MaxPool1d, nn.AvgPool1d) else m
        if not need_dx:
            return fn(h), ()
        h_in = h.detach().requires_grad_()
        with torch.enable_grad():
            out = fn(h_in)
        return out.detach(), (h_in, out)

    def _backward(self, name: str, m: nn.Module, dh: torch.Tensor, saved: tuple, grads: dict, K: int,
                  need_dx: bool) -> torch.Tensor | None:
        """One layer's backprop: d(loss)/d(its output) ``dh`` -> d(loss)/d(its input) (None when
        not ``need_dx``), and its parameters' gradients into ``grads``."""
        t = type(m)
        if t is nn.Linear:
            h, W = saved
            grads[f"{name}.weight"] = torch.bmm(dh, h.transpose(1, 2))          # dW = dz a_in^T
            if m.bias is not None:
                grads[f"{name}.bias"] = dh.sum(2)
            return torch.bmm(W.transpose(1, 2), dh) if need_dx else None          # da_in = W^T dz
        if t is nn.Conv1d:
            dx, dW, db = _Conv1d.backward(saved[0], dh)[:3]
            grads[f"{name}.weight"] = dW
            if db is not None:
                grads[f"{name}.bias"] = db
            return dx
        if t is nn.BatchNorm1d:
            x, weight, mean, invstd, shape = saved
            dx, dw, db = _batch_norm_rows_backward(dh, x, weight, mean, invstd, m.eps,
                                                   [need_dx, weight is not None, weight is not None])
            if weight is not None:
                grads[f"{name}.weight"], grads[f"{name}.bias"] = dw.view(K, -1), db.view(K, -1)
            return dx.view(shape) if need_dx else None
        if not need_dx:
            return None
        if t is nn.Dropout:
            return dh.mul_(saved[0])   # dh is this step's own temporary
        if t in (nn.Flatten, nn.Unflatten):
            return dh.reshape(saved[0])
        if t in DERIVATIVE:
            h, a = saved
            return DERIVATIVE[t](m, dh, h, a)
        h_in, out = saved
        return torch.autograd.grad(out, h_in, dh)[0]

    def _batch_norm(self, p, buffers, name, bn, h, train):
        """Batch norm of ``h`` [K, C, ...] in :meth:`run` (autograd records it in training)."""
        x, weight, bias, running = self._batch_norm_inputs(p, buffers, name, bn, h, train)
        if not train and running is not None:   # eval: the running statistics, element-wise
            mean, var = running
            return F.batch_norm(x.view(1, *x.shape), mean, var, weight, bias, False, 0.0, bn.eps).view(h.shape)
        out, batch_mean, batch_var = _BatchNormTrain.apply(x, weight, bias, bn.eps)
        self._update_running(running if train else None, bn, batch_mean, batch_var, x.shape[1])
        return out.view(h.shape)

    def _batch_norm_inputs(self, p, buffers, name, bn, h, train):
        """(x [K*C, M], weight, bias, running statistics or None) of batch norm layer ``name``:
        channel (k, c) is row k*C + c of ``x``. Counts the batch when ``train``."""
        K, C = h.shape[0], h.shape[1]
        weight = p[f"{name}.weight"].reshape(-1) if bn.affine else None
        bias = p[f"{name}.bias"].reshape(-1) if bn.affine else None
        running = None
        if bn.track_running_stats:
            running = buffers[f"{name}.running_mean"].view(-1), buffers[f"{name}.running_var"].view(-1)
            if train:
                buffers[f"{name}.num_batches_tracked"].add_(1)
        x = h.reshape(K * C, -1)
        if x.shape[1] == 1 and (train or running is None):   # torch's check, said for this case
            if train:
                raise ValueError("batch norm in training needs more than one value per channel, and this batch "
                                 "has one example: choose a batch_size that does not leave a last batch of one")
            raise ValueError("batch norm without running statistics (track_running_stats=False) normalises by "
                             "the batch even in evaluation, and the sweep evaluates in chunks of "
                             f"{self.eval_chunk()} examples: this chunk has one; evaluate a number of examples "
                             "that does not leave one over")
        return x, weight, bias, running

    @staticmethod
    def _update_running(running, bn, batch_mean, batch_var, M: int) -> None:
        """As torch: running = (1 - momentum) running + momentum batch (with the unbiased var)."""
        if running is None:
            return
        mean, var = running
        m = bn.momentum
        mean.mul_(1 - m).add_(batch_mean.view(-1), alpha=m)
        var.mul_(1 - m).add_(batch_var.view(-1), alpha=m * M / (M - 1))


# Layers whose output in :meth:`WideNet.step` is a new tensor that their backprop does not read.
_FRESH_OUTPUT = (nn.Linear, nn.Conv1d, nn.BatchNorm1d, nn.Dropout)


class _Context:
    """What ``_Conv1d``'s forward and backward read of autograd's context, for calling them directly."""

    def __init__(self, needs_input_grad: tuple):
        self.needs_input_grad = needs_input_grad
