"""Figures that notebook cells show say what they show: a description inside the PNG (the book's alt text)."""
from __future__ import annotations

import base64
import io

import nbformat
import pytest
from PIL import Image

from coursekit.figure_alt import describe_figure, with_description
from coursekit.plots import new_figure


def test_a_figure_is_described_by_its_titles_labels_and_legend():
    fig, (a, b) = new_figure(8, 3, ncols=2)
    fig.suptitle("Two optimizers")
    a.plot([1, 2], label="SGD")
    a.plot([2, 1], label=r"Adam, $\eta$ = 0.01")
    a.set(title="Training loss", xlabel="epoch", ylabel="loss")
    a.legend()
    b.set_title(r"$\kappa$ = 10")
    assert describe_figure(fig) == ("Figure: Two optimizers. panel 1: Training loss (x: epoch, y: loss; "
                                    "curves: SGD, Adam, η = 0.01); panel 2: κ = 10")
    bare, _ = new_figure()
    assert describe_figure(bare) == "Figure with 1 panel (no titles or labels)"


def test_the_description_travels_inside_the_png():
    png = io.BytesIO()
    Image.new("RGB", (3, 2), "white").save(png, "png")
    described = with_description(png.getvalue(), "Figure: loss (x: epoch)")
    image = Image.open(io.BytesIO(described))
    assert image.text["Description"] == "Figure: loss (x: epoch)" and image.size == (3, 2)
    image.load()  # the chunk's CRC is right, or Pillow refuses the file
    with pytest.raises(ValueError, match="png must be PNG bytes"):
        with_description(b"GIF89a", "x")


@pytest.mark.parametrize("order", ["pyplot first", "coursekit first, pyplot later"])
def test_a_cell_figure_carries_its_description_in_a_real_kernel(order, monkeypatch):
    # matplotlib loads the inline backend (which registers the figure printer) only when the first
    # figure is made: in the same cell that shows it, after coursekit was imported.
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own default, as in the book build
    setup = (["%matplotlib inline\nimport matplotlib.pyplot as plt\nimport coursekit"] if order == "pyplot first"
             else ["import coursekit", "import matplotlib.pyplot as plt"])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [
        *setup,
        "fig, ax = plt.subplots()\nax.plot([3, 2, 1])\nax.set(title='Loss', xlabel='epoch', ylabel='loss')\nplt.show()",
        "from coursekit.plots import new_figure\nfig, ax = new_figure()\nax.set_title('Accuracy')\nfig",
    ]])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    texts = []
    for cell in nb.cells:
        pngs = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        texts += [Image.open(io.BytesIO(base64.b64decode(png))).text.get("Description") for png in pngs]
    assert texts == ["Figure: Loss (x: epoch, y: loss)", "Figure: Accuracy"]
