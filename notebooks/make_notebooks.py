"""Writes the notebooks in this folder from the cell sources below (committed without outputs).

    python notebooks/make_notebooks.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = '''import os, tempfile
from pathlib import Path
import dyn
%matplotlib inline
# Small-size switch: the test suite sets DYN_NOTEBOOK_SMALL=1 to run every notebook in seconds.
SMALL = os.environ.get("DYN_NOTEBOOK_SMALL", "0") == "1"
WORK = Path(os.environ.get("DYN_NOTEBOOK_WORK") or tempfile.mkdtemp(prefix="dyn-nb-"))
print("small:", SMALL, "| writing to", WORK)'''

NOTEBOOKS = {
    "01-figure1.ipynb": [
        new_markdown_cell("# Figure 1 of Huang et al. 2024, reproduced and checked\n\n"
                          "Single- vs multi-modal contrastive learning on the paper's signal–noise data: every step "
                          "of every neuron's inner products with μ and the noise patches ξᵢ is recorded, the OOD "
                          "linear probe is evaluated along training, and the four panels are drawn with mean ± 1σ "
                          "over seeds. Then one run is compared with the theorem claim by claim."),
        new_code_cell(SETUP),
        new_code_cell('from dyn.setups.huang2024.experiments import figure1\n'
                      'summary = figure1(WORK / "figure1", seeds=2 if SMALL else 5, small=SMALL, overwrite=True)\n'
                      'summary'),
        new_markdown_cell("Signal and noise panels use the raw inner products max_r |⟨w_r, μ⟩| and "
                          "max_{r,i} ⟨w_r, ξ_i⟩ (the quantities the proofs bound); `figure1-coefficients.png` "
                          "shows the exact γ and ρ."),
        new_code_cell('from IPython.display import Image\nImage(filename=str(WORK / "figure1" / "figure1.png"))'),
        new_code_cell('import pandas as pd\n'
                      'curves = pd.read_parquet(WORK / "figure1" / "curves.parquet")\n'
                      'curves[curves.metric == "probe_acc"].groupby(["modality", "step"]).value.mean().unstack(0).tail()'),
        new_markdown_cell("## Claim by claim\n\nThe multi-modal run of seed 0 against the theorem. The paper's own "
                          "setting violates some of its assumptions (d < n², σ₀ larger than the bound), and the "
                          "report says so instead of hiding it."),
        new_code_cell('run = dyn.Run(WORK / "figure1" / "runs" / "multi-seed0.zarr")\n'
                      'table = dyn.compare(run)\n'
                      'print(table.attrs["regime"])\n'
                      'table[["claim", "predicted", "observed", "verdict"]]'),
        new_code_cell('dyn.plot_coefficients(run)'),
    ],
    "02-phase-diagram.ipynb": [
        new_markdown_cell("# The phase diagram the paper does not have\n\n"
                          "A grid over n·SNR² × C_μ × seeds, run on Dask (a LocalCluster here; pass "
                          "`scheduler=\"tcp://host:port\"` for a real cluster). Per run: who wins at T₁ (exact "
                          "γ vs ρ) and the final OOD probe accuracy; the theory's lines n·SNR² = 1.8 (single) and "
                          "C_μ·n·SNR² = 4.51 (multi) are overlaid."),
        new_code_cell(SETUP),
        new_code_cell('from dyn.experiments.sweep import load_grid, sweep, phase_diagram\n'
                      'root = Path(dyn.__file__).resolve().parents[1]\n'
                      'grid = load_grid(root / "tests/data/tiny-grid.toml" if SMALL else "phase-diagram")\n'
                      'results = sweep(grid, WORK / "phase", workers=2, overwrite=True)\n'
                      'print(f"{len(results)} runs, {results.attrs[\'seconds\']:.1f} s")\n'
                      'results[["id", "modality", "n_snr2", "c_mu", "winner", "probe_acc", "status"]].head(12)'),
        new_code_cell('phase_diagram(results, setup=grid["setup"])'),
        new_code_cell('# runs/second against a plain sequential loop over the same grid\n'
                      'seq = sweep(grid, WORK / "phase-seq", sequential=True, overwrite=True)\n'
                      'print(f"dask: {len(results) / results.attrs[\'seconds\']:.2f} runs/s, "\n'
                      '      f"sequential: {len(seq) / seq.attrs[\'seconds\']:.2f} runs/s")'),
    ],
    "03-colored-digits.ipynb": [
        new_markdown_cell("# Table 1: coloured digits (ColoredMNIST protocol on scikit-learn's bundled digits)\n\n"
                          "Train colour tied to class with probability 0.775, test images coloured like the *next* "
                          "class with probability 0.775 (OOD), 10% label noise. Single-modal: SimCLR-style views of "
                          "the image that keep hue, so colour is a view-invariant feature. Multi-modal: image + "
                          "caption, the caption naming the digit shown (colour words only in the ablation), "
                          "encoded by the paper's ideal language encoder (one-hot tokens, then a linear layer). "
                          "Same image encoder, temperature 0.5 and batch 512 (SimCLR's CIFAR-10 recipe) for both; "
                          "a linear probe on the image embedding. The recorder watches the encoder's first layer "
                          "against digit-shape, colour and per-image noise directions, and random directions of "
                          "the same count and norms."),
        new_code_cell(SETUP),
        new_code_cell('from dyn.setups.huang2024.colored_digits import make_captions, make_colored_digits\n'
                      'data = make_colored_digits(0)\n'
                      'print(data.x_train.shape, data.x_test.shape)\n'
                      'agree = (data.colour_train == data.class_train).float().mean().item()\n'
                      'shifted = (data.colour_test == (data.class_test + 1) % 10).float().mean().item()\n'
                      'print(f"train colour = class for {agree:.1%} of images (0.775 + 0.225/10 expected)")\n'
                      'print(f"test colour = next class for {shifted:.1%} of images")'),
        new_code_cell('import matplotlib.pyplot as plt\n'
                      'captions = make_captions(data, rate=0.5, seed=0)  # the default protocol uses rate 0\n'
                      'fig, axes = plt.subplots(1, 6, figsize=(14, 2.6))\n'
                      'for k, ax in enumerate(axes):\n'
                      '    ax.imshow(data.x_train[k].permute(1, 2, 0).numpy())\n'
                      '    ax.set_title(f"label {int(data.y_train[k])}\\n{captions[k]}", fontsize=8); ax.axis("off")'),
        new_code_cell('from dyn.setups.huang2024.experiments import table1\n'
                      'table = table1(WORK / "table1", seeds=1 if SMALL else 3, small=SMALL, overwrite=True)\n'
                      'print((WORK / "table1" / "table1.md").read_text())'),
        new_markdown_cell("## What the first layer aligns with\n\n"
                          "Per step, the mean over neurons of the largest |cos(w_r, v)| over each group: the 10 "
                          "shape directions (class-mean digit minus the mean digit, equal in R, G, B), the 10 colour "
                          "directions (colour minus the mean colour, times the mean digit), 150 per-image noise "
                          "residuals, and random directions with the same count and norms (dashed). The single-modal "
                          "layer turns to colour; the multi-modal one to shape and away from colour. Noise stays at "
                          "or below its random baseline in both."),
        new_code_cell('from IPython.display import Image\nImage(filename=str(WORK / "table1" / "directions.png"))'),
        new_markdown_cell("## Ablation: the mechanism, not one number\n\n"
                          "Colour words in the captions (rate q) hand the spurious feature to the image encoder; "
                          "the train colour-class correlation p sets how much a colour-aligned embedding misleads "
                          "the probe. colour-follow is the share of test predictions that name the class whose "
                          "colour the image has."),
        new_code_cell('Image(filename=str(WORK / "table1" / "ablation.png"))'),
        new_code_cell('cols = ["factor", "value", "modality", "test_acc_mean", "test_acc_std", "colour_follow_mean",\n'
                      '        "align_shape_mean", "align_colour_mean"]\n'
                      'table.attrs["ablation"][cols].round(3)'),
        new_code_cell('import json\nimport pandas as pd\n'
                      'protocol = json.loads((WORK / "table1" / "protocol.json").read_text())\n'
                      'pd.set_option("display.max_colwidth", None)\n'
                      'pd.Series(protocol["default"]["notes"], name="why").to_frame()'),
    ],
    "04-instrument-your-own-loop.ipynb": [
        new_markdown_cell("# Instrument your own training loop\n\n"
                          "A two-layer ReLU network trained with SGD on supervised signal–noise data "
                          "x = y·μ + ξ (the setting of Cao et al. 2022 / Kou et al. 2023). The first layer is "
                          "recorded at every step, decomposed exactly into signal learning γ and noise "
                          "memorization ρ, plotted and exported. Nothing here is specific to dyn's own trainer."),
        new_code_cell(SETUP),
        new_code_cell('import torch\n'
                      'torch.manual_seed(0)\n'
                      'd, n, m = (200, 30, 16) if SMALL else (1000, 100, 32)\n'
                      'mu = torch.zeros(d); mu[0] = 4.0\n'
                      'y = torch.randint(0, 2, (n,)) * 2 - 1\n'
                      'xi = torch.randn(n, d)\n'
                      'x = y[:, None] * mu + xi\n'
                      'model = torch.nn.Sequential(torch.nn.Linear(d, m, bias=False), torch.nn.ReLU(), torch.nn.Linear(m, 1, bias=False))\n'
                      'with torch.no_grad():\n'
                      '    model[0].weight.mul_(0.05)\n'
                      'opt = torch.optim.SGD(model[0].parameters(), lr=0.05)  # the second layer stays fixed, as in the theory'),
        new_code_cell('# The first layer: rows are neurons. Its updates lie in span{x_i} = span{mu, xi_1..xi_n},\n'
                      '# so gamma (along mu) and rho (along each xi_i) describe it exactly.\n'
                      'site = dyn.Site(model[0].weight, signals={"mu": mu}, noise=xi, labels=y)\n'
                      'steps = 60 if SMALL else 300\n'
                      'with dyn.Recorder(WORK / "mine.zarr", sites={"w": site}, optimizer=opt, overwrite=True,\n'
                      '                  config={"d": d, "n": n, "m": m, "lr": 0.05, "steps": steps}, seed=0) as rec:\n'
                      '    for step in range(steps):\n'
                      '        loss = torch.nn.functional.softplus(-y * model(x).squeeze(1)).mean()\n'
                      '        loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)\n'
                      'tree = dyn.open(WORK / "mine.zarr")\n'
                      'tree'),
        new_code_cell('site_ds = tree["w"].to_dataset()\n'
                      'c = site_ds.dyn.coefficients()\n'
                      'print("reconstruction of the final weights:", site_ds.dyn.reconstruction_residual())\n'
                      'c'),
        new_code_cell('dyn.plot_coefficients(tree, site="w", quantities=("gamma", "rho"), logy=False, theory=None)'),
        new_code_cell('dyn.plot_heatmap(tree, site="w", quantity="rho")'),
        new_code_cell('frame = dyn.tidy(tree, reduce="absmax")\n'
                      'dyn.export(tree, WORK / "mine-curves.csv", reduce="absmax", overwrite=True)\n'
                      'frame.head()'),
    ],
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
