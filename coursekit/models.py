"""Model builders: a configurable multi-layer perceptron.

>>> from coursekit.models import mlp
>>> net = mlp(2, 3, depth=2, width=32, activation="relu", init="he", batch_norm=True, dropout=0.1)
>>> net(torch.zeros(5, 2)).shape
torch.Size([5, 3])
"""
from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
               "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "identity": nn.Identity}
INITS = ("default", "xavier_uniform", "xavier_normal", "he", "he_uniform", "normal", "zeros")


def _one_of(arg: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{arg} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def init_weights(model: nn.Module, scheme: str = "default", std: float = 0.01,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Initialise every ``nn.Linear`` in ``model`` in place with ``scheme``; biases go to zero.

    ``'xavier_*'`` is Glorot & Bengio's Var(w) = 2 / (fan_in + fan_out), with no
    activation gain, as in the paper; ``'he'`` is Kaiming-normal, Var(w) = 2 / fan_in;
    ``'normal'`` draws N(0, ``std``^2); ``'default'`` keeps PyTorch's own init.
    """
    _one_of("init", scheme, INITS)
    if scheme == "default":
        return model
    for m in model.modules():
        if not isinstance(m, nn.Linear):
            continue
        w = m.weight
        fan_out, fan_in = w.shape
        with torch.no_grad():
            if scheme == "xavier_uniform":
                a = math.sqrt(6.0 / (fan_in + fan_out))
                w.uniform_(-a, a, generator=generator)
            elif scheme == "xavier_normal":
                w.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
            elif scheme == "he":
                w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
            elif scheme == "he_uniform":
                a = math.sqrt(6.0 / fan_in)
                w.uniform_(-a, a, generator=generator)
            elif scheme == "normal":
                w.normal_(0.0, std, generator=generator)
            else:  # zeros
                w.zero_()
            if m.bias is not None:
                m.bias.zero_()
    return model


def mlp(in_features: int, out_features: int, depth: int = 2, width: int = 64,
        activation: str = "relu", init: str = "default", batch_norm: bool = False,
        dropout: float = 0.0, init_std: float = 0.01) -> nn.Sequential:
    """A multi-layer perceptron with ``depth`` hidden layers of ``width`` units.

    Each hidden block is ``Linear -> [BatchNorm1d] -> activation -> [Dropout]``.
    The last layer is a plain ``Linear`` producing logits (or regression outputs).
    """
    for arg, v in (("in_features", in_features), ("out_features", out_features), ("width", width)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{arg} must be a positive int; got {v!r}")
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an int >= 0 (0 means a linear model); got {depth!r}")
    _one_of("activation", activation, tuple(ACTIVATIONS))
    _one_of("init", init, INITS)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
    layers: list[nn.Module] = []
    d = in_features
    for _ in range(depth):
        layers.append(nn.Linear(d, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = width
    layers.append(nn.Linear(d, out_features))
    return init_weights(nn.Sequential(*layers), init, std=init_std)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
