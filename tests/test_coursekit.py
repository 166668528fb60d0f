"""Unit tests for coursekit's core: device, data, models, training loop, callbacks, plots, widgets."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import ipywidgets as W
import pytest
import torch
from matplotlib.figure import Figure

import coursekit
from coursekit import (EarlyStopping, History, ModelCheckpoint, Trainer, atomic_save, get_device,
                       load_dataset, make_optimizer, mlp, seed_everything)
from coursekit.plots import new_figure, plot_curves, plot_history
from coursekit.device import live_mode
from coursekit.widgets import Dropdown, Experiment, Slider, Toggle

DEVICE = get_device()


# -- device and seeding ----------------------------------------------------------------
def test_get_device_honours_env_and_rejects_bad_names(monkeypatch):
    monkeypatch.setenv("COURSEKIT_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("COURSEKIT_DEVICE", "tpu")
    with pytest.raises(ValueError, match="COURSEKIT_DEVICE must be one of"):
        get_device()
    with pytest.raises(ValueError, match="prefer must be one of"):
        get_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_get_device_explains_missing_cuda():
    with pytest.raises(ValueError, match="no CUDA device"):
        get_device("cuda")


def test_seed_everything_repeats_torch_numpy_python():
    import random

    import numpy as np

    def draw():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything("1")


# -- data --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["spirals", "moons", "blobs", "curve", "digits"])
def test_datasets_split_without_overlap(name):
    d = load_dataset(name, seed=1)
    n = len(d.X_train) + len(d.X_val) + len(d.X_test)
    assert len(d.X_val) == int(n * 0.2) and len(d.X_test) == int(n * 0.2)
    rows = torch.cat([d.X_train, d.X_val, d.X_test])
    assert len(torch.unique(rows, dim=0)) == n  # no example is in two splits
    if d.task == "classification":
        assert d.y_train.dtype == torch.long and int(d.y_train.max()) < d.n_classes
        assert d.n_outputs == d.n_classes
    else:
        assert d.y_train.shape == (len(d.X_train), 1) and d.n_outputs == 1


def test_digits_are_the_bundled_8x8_images():
    d = load_dataset("digits")
    assert d.n_features == 64 and d.n_classes == 10
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 1797
    assert 0.0 <= float(d.X_train.min()) and float(d.X_train.max()) <= 1.0


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (load_dataset("spirals", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.X_train, b.X_train)
    assert not torch.equal(a.X_train, c.X_train)


def test_standardize_uses_training_statistics_only():
    d = load_dataset("blobs", seed=0).standardize()
    assert torch.allclose(d.X_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(d.X_train.std(0), torch.ones(2), atol=1e-4)
    raw = load_dataset("blobs", seed=0)
    assert torch.allclose(d.X_val, (raw.X_val - raw.X_train.mean(0)) / raw.X_train.std(0), atol=1e-5)


def test_loader_is_reproducible_and_subset_works():
    d = load_dataset("moons", n=100, seed=0)
    first = [y.tolist() for _, y in d.loader("train", batch_size=16, seed=3)]
    again = [y.tolist() for _, y in d.loader("train", batch_size=16, seed=3)]
    assert first == again and sum(map(len, first)) == len(d.X_train)
    assert len(d.subset(10).X_train) == 10


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="mnist"), "name must be one of"),
    (dict(name="moons", val_fraction=1.5), "val_fraction must be in"),
    (dict(name="moons", val_fraction=0.5, test_fraction=0.5), "val_fraction \\+ test_fraction"),
    (dict(name="moons", n=3), "n must be an int of at least 10"),
])
def test_load_dataset_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(**kwargs)


def test_bad_split_and_batch_size_are_named():
    d = load_dataset("moons", n=50)
    with pytest.raises(ValueError, match="split must be one of"):
        d.split("valid")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        d.loader(batch_size=0)


# -- models --------------------------------------------------------------------------------
def test_mlp_layers_and_shapes():
    net = mlp(4, 3, depth=2, width=8, activation="tanh", batch_norm=True, dropout=0.5)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "BatchNorm1d", "Tanh", "Dropout"] * 2 + ["Linear"]
    assert net(torch.randn(5, 4)).shape == (5, 3)
    assert coursekit.count_parameters(mlp(2, 1, depth=0)) == 3


@pytest.mark.parametrize("scheme, expected_var", [
    ("he", lambda fan_in, fan_out: 2 / fan_in),
    ("xavier_normal", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    ("xavier_uniform", lambda fan_in, fan_out: 2 / (fan_in + fan_out)),
    ("he_uniform", lambda fan_in, fan_out: 2 / fan_in),
])
def test_init_schemes_have_the_papers_variance(scheme, expected_var):
    torch.manual_seed(0)
    net = mlp(400, 10, depth=1, width=300, activation="relu", init=scheme)
    w = net[0].weight.detach()
    assert float(w.var()) == pytest.approx(expected_var(400, 300), rel=0.05)
    assert float(net[0].bias.detach().abs().max()) == 0.0


def test_mlp_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="activation must be one of .*'relu'.*got 'rellu'"):
        mlp(2, 2, activation="rellu")
    with pytest.raises(ValueError, match="init must be one of"):
        mlp(2, 2, init="glorot")
    with pytest.raises(ValueError, match="dropout must be in"):
        mlp(2, 2, dropout=1.0)
    with pytest.raises(ValueError, match="width must be a positive int"):
        mlp(2, 2, width=0)


# -- training --------------------------------------------------------------------------------
def _trainer(seed=0, epochs_lr=0.05, dropout=0.2, scheduler=True):
    seed_everything(seed)
    data = load_dataset("spirals", n=300, seed=0)
    model = mlp(2, 3, depth=2, width=32, dropout=dropout).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=epochs_lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5) if scheduler else None
    return Trainer(model, data, opt, scheduler=sched, batch_size=32, seed=seed)


def test_training_learns_and_records_history():
    t = _trainer()
    h = t.fit(epochs=8)
    assert len(h) == 8 and h.epoch == list(range(1, 9))
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.val_acc[-1] > 0.6
    assert h.lr[:4] == pytest.approx([0.05, 0.05, 0.025, 0.025])
    assert len(h.step_loss) == 8 * math.ceil(180 / 32)
    assert h.best("val_acc")[1] == max(h.val_acc)


def test_same_seed_gives_identical_history():
    a, b = _trainer().fit(epochs=3), _trainer().fit(epochs=3)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss


def test_early_stopping_stops_and_restores_best_weights():
    seed_everything(0)
    data = load_dataset("spirals", n=120, seed=0).subset(20)
    model = mlp(2, 3, depth=2, width=128)
    t = Trainer(model, data, torch.optim.Adam(model.parameters(), lr=0.02), batch_size=20)
    stop = EarlyStopping(monitor="val_loss", patience=3, restore_best=True)
    h = t.fit(epochs=200, callbacks=[stop])
    assert len(h) < 200 and stop.stopped_epoch == len(h)
    assert len(h) == stop.best_epoch + stop.patience  # Keras semantics
    assert t.evaluate("val")[0] == pytest.approx(min(h.val_loss), rel=1e-6)


def test_min_delta_counts_small_improvements_as_none():
    stop = EarlyStopping(monitor="val_loss", patience=2, min_delta=0.1)

    class Fake:
        model = torch.nn.Linear(1, 1)
        stop_training = False

    fake = Fake()
    for epoch, loss in enumerate([1.0, 0.95, 0.91], start=1):
        stop.on_epoch_end(fake, {"epoch": epoch, "val_loss": loss})
    assert stop.best == 1.0 and fake.stop_training


def test_checkpoint_resume_continues_bit_for_bit(tmp_path):
    path = tmp_path / "run.ckpt"
    full = _trainer()
    full_history = full.fit(epochs=6, callbacks=[EarlyStopping(patience=50)])

    interrupted = _trainer()
    interrupted.fit(epochs=3, callbacks=[ModelCheckpoint(path), EarlyStopping(patience=50)])
    del interrupted
    torch.rand(100)  # disturb the global RNG, as a restarted process would

    resumed = _trainer(seed=0)
    ModelCheckpoint.restore(resumed, path)
    assert resumed.epoch == 3
    h = resumed.fit(epochs=6, callbacks=[ModelCheckpoint(path), EarlyStopping(patience=50)])
    assert h.train_loss == full_history.train_loss
    assert h.val_loss == full_history.val_loss
    assert h.step_loss == full_history.step_loss
    for a, b in zip(resumed.model.parameters(), full.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_save_best_only_and_bad_path(tmp_path):
    t = _trainer()
    ck = ModelCheckpoint(tmp_path / "best.ckpt", monitor="val_acc", save_best_only=True)
    t.fit(epochs=3, callbacks=[ck])
    assert (tmp_path / "best.ckpt").exists() and ck.best == max(t.history.val_acc)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ModelCheckpoint.restore(t, tmp_path / "missing.ckpt")


def test_atomic_save_survives_a_crash_mid_write(tmp_path):
    """Kill a process while it writes a checkpoint: the old file must stay loadable."""
    path = tmp_path / "model.ckpt"
    atomic_save({"version": 1, "w": torch.ones(3)}, path)
    script = textwrap.dedent(f"""
        import os, torch, io
        from coursekit import train
        real_fsync = os.fsync
        def crash(fd):
            os._exit(9)  # die after the bytes are written, before the rename
        train.os.fsync = crash
        train.atomic_save({{"version": 2, "w": torch.zeros(10**6)}}, {str(path)!r})
    """)
    rc = subprocess.run([sys.executable, "-c", script], capture_output=True).returncode
    assert rc == 9
    assert torch.load(path, weights_only=True)["version"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.ckpt"]
    assert all(name.endswith(".tmp") for name in leftovers)  # only a stray temp file, never a corrupt checkpoint


def test_diverging_run_is_flagged_and_stops():
    seed_everything(0)
    data = load_dataset("curve", n=200)
    model = mlp(1, 1, width=16)
    t = Trainer(model, data, torch.optim.SGD(model.parameters(), lr=50.0))
    h = t.fit(epochs=20)
    assert h.diverged and len(h) < 20


def test_trainer_rejects_bad_arguments():
    data = load_dataset("moons", n=50)
    model = mlp(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        Trainer(model, data, "sgd")
    with pytest.raises(TypeError, match="data must be a coursekit Dataset"):
        Trainer(model, (data.X_train, data.y_train), opt)
    with pytest.raises(ValueError, match="scheduler_interval must be"):
        Trainer(model, data, opt, scheduler_interval="batch")
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        Trainer(model, data, opt).fit(0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("adagrad", model.parameters(), 0.1)
    with pytest.raises(ValueError, match="patience must be"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="monitor must be one of"):
        EarlyStopping(monitor="val_accuracy")


def test_fit_helper_and_optimizer_names():
    seed_everything(0)
    h = coursekit.fit(mlp(2, 2, width=8), load_dataset("moons", n=100), epochs=2, optimizer="nesterov", lr=0.1)
    assert isinstance(h, History) and len(h) == 2
    opt = make_optimizer("nesterov", mlp(2, 2).parameters(), 0.1)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9


def test_everything_follows_the_model_device():
    t = _trainer()
    t.fit(epochs=1)
    assert t.data.X_train.device == next(t.model.parameters()).device


# -- plots -----------------------------------------------------------------------------------
def test_plot_helpers_return_figures_and_check_arguments():
    h = _trainer().fit(epochs=2)
    fig = plot_history(h)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    fig = plot_curves({"a": [1, 0.5, float("nan")], "b": [1, 2, 3]}, logy=True, highlight="a")
    assert fig.axes[0].get_yscale() == "log"
    with pytest.raises(ValueError, match="highlight must be one of"):
        plot_curves({"a": [1]}, highlight="c")
    with pytest.raises(ValueError, match="metrics must contain only"):
        plot_history(h, metrics=("accuracy",))


# -- widgets ---------------------------------------------------------------------------------
def _draw(lr, opt="sgd"):
    fig, ax = new_figure(2, 2)
    ax.plot([0, 1], [0, lr])
    ax.set_title(opt)
    return fig


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_static_experiment_precomputes_every_frame_and_links_each_control():
    exp = Experiment(_draw, lr=Slider([0.1, 0.2, 0.3], default=0.2), opt=Dropdown(["sgd", "adam"]))
    box = exp.widget(mode="static")
    widgets = list(_walk(box))
    images = [w for w in widgets if isinstance(w, W.Image)]
    stacks = [w for w in widgets if isinstance(w, W.Stack)]
    assert len(images) == exp.n_frames == 6
    assert len({bytes(i.value) for i in images}) == 6  # every frame differs
    assert len(stacks) == 1 + 3
    assert len(exp.links) == len(stacks)
    assert {id(link.target[0]) for link in exp.links} == {id(s) for s in stacks}
    assert all(link.source[1] == "index" and link.target[1] == "selected_index" for link in exp.links)
    assert stacks[0].selected_index == 1  # the default value is shown first
    assert "coursekit-static" in box._dom_classes


def test_live_experiment_redraws_from_the_python_callback():
    exp = Experiment(_draw, lr=Slider([0.1, 0.2, 0.3]), opt=Toggle(["sgd", "adam"]))
    box = exp.widget(mode="live")
    slider, toggle = box.children[0].children
    figure = box.children[1]
    assert bytes(figure.value) == exp.render((0, 0)) and figure.alt.endswith("lr = 0.1, opt = sgd")
    slider.index = 2  # the browser's control moved: the kernel draws the frame and sends it
    assert (2, 0) in figure.sent and exp.last_redraw_s is not None
    assert exp.render((2, 0)) != exp.render((0, 0))
    toggle.index = 1
    assert (2, 1) in figure.sent
    assert "coursekit-live" in box._dom_classes


def test_mode_detection(monkeypatch):
    monkeypatch.delenv("COURSEKIT_WIDGETS", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert live_mode() is False
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/ch01.ipynb")
    assert live_mode() is True
    monkeypatch.setenv("COURSEKIT_WIDGETS", "static")
    assert live_mode() is False
    monkeypatch.setenv("COURSEKIT_WIDGETS", "both")
    with pytest.raises(ValueError, match="COURSEKIT_WIDGETS must be 'live' or 'static'"):
        live_mode()


def test_experiment_rejects_bad_definitions():
    with pytest.raises(ValueError, match="not parameters of _draw"):
        Experiment(_draw, learning_rate=[0.1])
    with pytest.raises(ValueError, match="give at least one control"):
        Experiment(_draw)
    with pytest.raises(ValueError, match="default must be one of"):
        Slider([1, 2], default=3)
    with pytest.raises(ValueError, match="more than 400"):
        Experiment(_draw, lr=list(range(30)), opt=list(range(20)))
    with pytest.raises(TypeError, match="must return a matplotlib Figure"):
        Experiment(lambda lr: None, lr=[1]).widget(mode="live")
    with pytest.raises(ValueError, match="mode must be one of"):
        Experiment(_draw, lr=[1]).widget(mode="dynamic")


def test_live_plot_updates_one_display_and_progress_bar_runs(capsys):
    from coursekit import LivePlot

    t = _trainer()
    t.progress = True
    live = LivePlot(every=1)
    t.fit(epochs=2, callbacks=[live])
    assert live._handle is not None  # one display, updated in place each epoch
    assert "epochs" in capsys.readouterr().err  # tqdm's bar went to stderr
