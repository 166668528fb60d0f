"""coursekit.sweep: each of the K vectorized models must train exactly like the same model alone.

The reference for model k is the ordinary path: ``torch.manual_seed(seed[k])``, the same
``model_fn``, its weights times ``init_scale[k]``, a ``torch.optim`` optimizer with model
k's hyperparameters, and ``coursekit.Trainer`` with the same batch seed.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from coursekit import Trainer, get_device, load_dataset, mlp
from coursekit.sweep import Sweep, SweepHistory, train_sweep

TOL = dict(rtol=1e-4, atol=1e-5)  # float32, different matmul kernels: not bit for bit


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", n=400, seed=0)


@pytest.fixture(scope="module")
def curve():
    return load_dataset("curve", n=200, seed=0)


def reference(model_fn, data, make_opt, seed=0, init_scale=1.0, epochs=2, batch_size=32,
              data_seed=0, grad_clip=None):
    """Model k trained alone with torch.optim and coursekit.Trainer."""
    torch.manual_seed(seed)
    net = model_fn()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(init_scale)
    trainer = Trainer(net, data, make_opt(net.parameters()), batch_size=batch_size, seed=data_seed,
                      grad_clip=grad_clip, progress=False)
    # Trainer stops at the end of an epoch whose loss is not finite; the sweep runs on, so compare that far.
    trainer.fit(epochs)
    return net, trainer.history


def assert_same_run(sweep, history, k, net, ref):
    steps = len(ref.step_loss)
    torch.testing.assert_close(history.step_loss[k, :steps], torch.tensor(ref.step_loss), **TOL)
    epochs = len(ref.val_loss)
    torch.testing.assert_close(history.val_loss[k, :epochs], torch.tensor(ref.val_loss), **TOL)
    torch.testing.assert_close(history.train_loss[k, :epochs], torch.tensor(ref.train_loss), **TOL)
    if not math.isnan(ref.train_acc[0]):
        torch.testing.assert_close(history.train_acc[k, :epochs], torch.tensor(ref.train_acc), **TOL)
        torch.testing.assert_close(history.val_acc[k, :epochs], torch.tensor(ref.val_acc), **TOL)
    for p, q in zip(sweep.model(k).parameters(), net.parameters()):
        torch.testing.assert_close(p.detach().cpu(), q.detach().cpu(), **TOL)


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_sgd_momentum_and_nesterov_match_torch_optim(digits, name):
    fn = lambda: mlp(64, 10, depth=2, width=32)  # noqa: E731
    lr, momentum, wd = [0.01, 0.05, 0.2, 0.05], [0.9, 0.5, 0.0, 0.9], [0.0, 1e-3, 0.0, 1e-2]
    seeds, scale = [0, 1, 2, 3], [1.0, 0.5, 2.0, 1.0]
    sweep = Sweep(fn, 4, optimizer=name, lr=lr, momentum=momentum, weight_decay=wd,
                  init_scale=scale, seed=seeds, device="cpu")
    history = sweep.fit(digits, epochs=2, batch_size=32)
    assert isinstance(history, SweepHistory) and history.step_loss.shape == (4, 2 * 8)
    for k in range(4):
        nesterov = name == "nesterov" and momentum[k] > 0  # torch refuses nesterov without momentum
        net, ref = reference(fn, digits, lambda p, k=k: torch.optim.SGD(
            p, lr=lr[k], momentum=momentum[k], weight_decay=wd[k], nesterov=nesterov),
            seed=seeds[k], init_scale=scale[k])
        assert_same_run(sweep, history, k, net, ref)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_and_adamw_match_torch_optim(digits, name):
    fn = lambda: mlp(64, 10, depth=2, width=32, activation="tanh")  # noqa: E731
    opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    lr, wd = [1e-3, 3e-3, 1e-2], [0.0, 1e-2, 1e-1]
    beta1, beta2, eps = [0.9, 0.8, 0.0], [0.999, 0.99, 0.9], [1e-8, 1e-6, 1e-8]
    sweep = Sweep(fn, 3, optimizer=name, lr=lr, weight_decay=wd, betas=(beta1, beta2), eps=eps,
                  seed=7, device="cpu")  # one seed: all three start from the same weights
    history = sweep.fit(digits, epochs=2, batch_size=32)
    for k in range(3):
        net, ref = reference(fn, digits, lambda p, k=k: opt(
            p, lr=lr[k], betas=(beta1[k], beta2[k]), eps=eps[k], weight_decay=wd[k]), seed=7)
        assert_same_run(sweep, history, k, net, ref)


def test_divergent_model_keeps_nan_to_itself(curve):
    fn = lambda: mlp(1, 1, depth=2, width=16)  # noqa: E731
    lr = [0.01, 50.0, 0.05]  # the middle one blows up within a few steps
    sweep = Sweep(fn, 3, optimizer="momentum", lr=lr, seed=[0, 1, 2], device="cpu")
    history = sweep.fit(curve, epochs=3, batch_size=32)

    assert history.diverged.tolist() == [False, True, False]
    assert history.diverged_step[[0, 2]].tolist() == [-1, -1]
    assert not torch.isfinite(sweep.w[1]).all()
    assert torch.isfinite(sweep.w[[0, 2]]).all() and torch.isfinite(history.val_loss[[0, 2]]).all()

    for k in (0, 2):  # the others train exactly as if alone
        net, ref = reference(fn, curve, lambda p, k=k: torch.optim.SGD(p, lr=lr[k], momentum=0.9),
                             seed=k, epochs=3)
        assert_same_run(sweep, history, k, net, ref)
    _, ref = reference(fn, curve, lambda p: torch.optim.SGD(p, lr=50.0, momentum=0.9), seed=1, epochs=3)
    ref_loss = torch.tensor(ref.step_loss)
    first_bad = int((~torch.isfinite(ref_loss)).int().argmax())
    assert not math.isfinite(ref.step_loss[first_bad])
    assert int(history.diverged_step[1]) == first_bad
    torch.testing.assert_close(history.step_loss[1, :first_bad], ref_loss[:first_bad], rtol=1e-3, atol=1e-4)


def test_divergence_with_adam_and_grad_clip(curve):
    fn = lambda: mlp(1, 1, depth=1, width=16)  # noqa: E731
    sweep = Sweep(fn, 3, optimizer="adam", lr=[1e-2, 1e-2, 1e-2], init_scale=[1.0, 1e30, 2.0],
                  grad_clip=1.0, device="cpu")
    history = sweep.fit(curve, epochs=2, batch_size=32)
    assert history.diverged.tolist() == [False, True, False]
    assert int(history.diverged_step[1]) == 0  # 1e30 weights overflow the very first loss
    for k, scale in ((0, 1.0), (2, 2.0)):
        net, ref = reference(fn, curve, lambda p: torch.optim.Adam(p, lr=1e-2), init_scale=scale,
                             grad_clip=1.0)
        assert_same_run(sweep, history, k, net, ref)


def test_per_model_batch_order_and_optimizer_race(digits):
    fn = lambda: mlp(64, 10, depth=1, width=32)  # noqa: E731
    names = ["sgd", "adam", "momentum", "adamw"]
    lr = [0.1, 1e-3, 0.05, 1e-3]
    sweep = Sweep(fn, 4, optimizer=names, lr=lr, seed=3, device="cpu")
    history = sweep.fit(digits, epochs=2, batch_size=50, data_seed=[10, 11, 12, 13])
    makers = {"sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
              "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
              "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
              "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr)}
    for k in range(4):
        net, ref = reference(fn, digits, lambda p, k=k: makers[names[k]](p, lr[k]), seed=3,
                             batch_size=50, data_seed=10 + k)
        assert_same_run(sweep, history, k, net, ref)


def test_fit_twice_continues_like_one_long_run(digits):
    fn = lambda: mlp(64, 10, depth=1, width=16)  # noqa: E731
    a = Sweep(fn, 2, optimizer="adam", lr=[1e-3, 1e-2], device="cpu")
    h1, h2 = a.fit(digits, 1, batch_size=64), a.fit(digits, 1, batch_size=64, data_seed=1)
    b = Sweep(fn, 2, optimizer="adam", lr=[1e-3, 1e-2], device="cpu")
    b.fit(digits, 1, batch_size=64)
    torch.testing.assert_close(b.fit(digits, 1, batch_size=64, data_seed=1).step_loss, h2.step_loss)
    assert h1.step_loss.shape == h2.step_loss.shape == (2, 4)


def test_gelu_falls_back_to_autograd_and_predict_matches_model(digits):
    fn = lambda: mlp(64, 10, depth=1, width=16, activation="gelu")  # noqa: E731
    sweep = Sweep(fn, 2, optimizer="sgd", lr=[0.1, 0.3], device="cpu")
    history = sweep.fit(digits, epochs=1, batch_size=64)
    net, ref = reference(fn, digits, lambda p: torch.optim.SGD(p, lr=0.3), epochs=1, batch_size=64)
    assert_same_run(sweep, history, 1, net, ref)
    out = sweep.predict(digits.X_val)
    assert out.shape == (2, len(digits.X_val), 10)
    torch.testing.assert_close(out[1], sweep.model(1)(digits.X_val), **TOL)
    loss, acc = sweep.evaluate(digits, "test")
    assert loss.shape == acc.shape == (2,)


def test_regression_history_and_train_sweep(curve):
    history = train_sweep(lambda: mlp(1, 1, width=8), curve, epochs=2, optimizer="sgd",
                          lr=torch.logspace(-3, -1, 5), batch_size=40)
    assert history.K == 5 and len(history) == 2
    assert history.val_loss.shape == (5, 2) and torch.isnan(history.val_acc).all()
    assert history.hparams["lr"].shape == (5,)


def test_follows_the_device():
    sweep = Sweep(lambda: mlp(2, 2, width=4), 3)
    assert sweep.w.device.type == get_device().type
    assert sweep.model(0)[0].weight.device.type == get_device().type


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(optimizer="adamm"), ValueError, "optimizer must be one of 'sgd', 'momentum'"),
    (dict(lr=-0.1), ValueError, "lr must be > 0.0"),
    (dict(lr=[0.1, 0.2]), ValueError, "lr must be a number or a sequence of K=3 numbers; got 2"),
    (dict(lr="fast"), TypeError, "lr must be a number or a sequence of K=3"),
    (dict(momentum=1.0), ValueError, "momentum must be >= 0.0 and < 1.0"),
    (dict(betas=(0.9,)), ValueError, "betas must be a pair"),
    (dict(init_scale=[1.0, float("nan"), 1.0]), ValueError, "init_scale must be finite"),
    (dict(seed=[0, 1]), ValueError, "seed must be an int or a sequence of K=3 ints"),
    (dict(grad_clip=0), ValueError, "grad_clip must be None or a positive number"),
    (dict(loss="hinge"), ValueError, "loss must be one of 'auto', 'cross_entropy', 'mse'"),
    (dict(K=0), ValueError, "K must be a positive int"),
])
def test_arguments_are_checked_early(kwargs, error, match):
    args = dict(K=3)
    args.update(kwargs)
    K = args.pop("K")
    with pytest.raises(error, match=match):
        Sweep(lambda: mlp(2, 2, width=4), K, device="cpu", **args)


def test_unsupported_models_and_data_are_named(digits):
    with pytest.raises(TypeError, match="model_fn must be a function"):
        Sweep(mlp(2, 2), 2)
    with pytest.raises(TypeError, match="got BatchNorm1d"):
        Sweep(lambda: mlp(2, 2, batch_norm=True), 2, path="fast")
    with pytest.raises(TypeError, match="got Dropout"):
        Sweep(lambda: mlp(2, 2, dropout=0.5), 2, path="fast")
    sweep = Sweep(lambda: mlp(2, 2, width=4), 2, device="cpu")
    with pytest.raises(ValueError, match="takes 2 input features but data 'digits' has 64"):
        sweep.fit(digits, 1)
    with pytest.raises(TypeError, match="data must be a coursekit Dataset"):
        sweep.fit((digits.X_train, digits.y_train), 1)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        sweep.fit(digits, 0)
    with pytest.raises(ValueError, match="data_seed must be an int or a sequence of K=2 ints"):
        Sweep(lambda: mlp(64, 10, width=4), 2, device="cpu").fit(digits, 1, data_seed=[1, 2, 3])
