"""coursekit: the small helper package behind the book and the labs.

One module per job: ``device`` (device and seeding), ``data`` (offline data
sets, MNIST-1D among them), ``stats`` (seeds: mean, spread, paired comparisons),
``models`` (MLP builder and init), ``train`` (training loop, history, callbacks), ``sweep`` (K models trained in one vectorized pass), ``plots``
(matplotlib helpers), ``widgets`` (experiments that are live in JupyterLab
and precomputed in the static book), ``diagnose`` (reads a learning curve), ``cost`` (FLOPs and
steps to a target: what a run paid) and
``checks`` (the labs' self-checks).
"""
from .cost import Cost, flops_per_step, format_cost, forward_flops, steps_to_target
from .data import Dataset, load_dataset, plot_examples
from .device import describe_device, get_device, seed_everything
from .diagnose import Diagnosis, diagnose
from .models import count_parameters, init_weights, mlp
from .stats import compare, compare_family, holm, seed_grid, summarize, verdict, verdicts
from .sweep import Sweep, SweepHistory, train_sweep
from .train import (Callback, EarlyStopping, History, LivePlot, ModelCheckpoint, Trainer,
                    atomic_save, fit, make_optimizer)

__all__ = [
    "Dataset", "load_dataset", "plot_examples", "compare", "compare_family", "holm", "seed_grid", "summarize", "verdict", "verdicts", "describe_device", "get_device", "seed_everything",
    "count_parameters", "init_weights", "mlp", "Callback", "EarlyStopping", "History",
    "LivePlot", "ModelCheckpoint", "Trainer", "atomic_save", "fit", "make_optimizer",
    "Sweep", "SweepHistory", "train_sweep", "Diagnosis", "diagnose",
    "Cost", "flops_per_step", "format_cost", "forward_flops", "steps_to_target",
]
__version__ = "0.1.0"

# Figures that notebook cells show carry a description of what they show (the book's alt text).
from . import figure_alt as _figure_alt  # noqa: E402

_figure_alt.install()
