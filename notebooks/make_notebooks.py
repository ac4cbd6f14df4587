"""Writes the notebooks in this folder from the cell sources below (committed without outputs).

    python notebooks/make_notebooks.py                      # all
    python notebooks/make_notebooks.py 05-your-own-model    # only the named ones
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
        new_code_cell('from dyn.experiments.huang2024 import figure1\n'
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
        new_code_cell('from dyn.experiments.huang2024 import table1\n'
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
    "05-your-own-model.ipynb": [
        new_markdown_cell("# Your own model: an MLP and a small CNN on the digits, with SGD, Adam and Lightning\n\n"
                          "Real data breaks the exact decomposition: there are more samples than pixels (n + K > d), "
                          "the class-mean signals are combinations of the samples, Adam's updates leave the span of "
                          "the inputs, and a hidden layer's inputs move. dyn then reports the best coefficients the "
                          "data allow (a minimum-norm least-squares projection) and **how much of each neuron's "
                          "change they explain** (span coverage), and summarises any run without a theory. "
                          "Everything uses scikit-learn's bundled digits; nothing is downloaded."),
        new_code_cell(SETUP),
        new_code_cell('import numpy as np, torch, matplotlib.pyplot as plt\n'
                      'from sklearn.datasets import load_digits\n'
                      'from dyn.record import probes\n'
                      'X, Y = load_digits(return_X_y=True)\n'
                      'n = 200 if SMALL else 1257          # the 1,257 training images (70%) of the issue\n'
                      'steps = 30 if SMALL else 150\n'
                      'x, y = torch.tensor(X[:n] / 16.0, dtype=torch.float32), torch.tensor(Y[:n])\n'
                      'print(x.shape, "samples x pixels;", len(y.unique()), "classes")'),
        new_markdown_cell("## An MLP, recorded with the probe helpers\n\n"
                          "`probes.sites_for` builds one site per named layer: class-mean signals, residual noise "
                          "(each input minus its class mean), a random-direction baseline with the same count and "
                          "norms (`random_inner`), and `track_change=True` so `‖w(t) − w(0)‖²` is recorded and the "
                          "span coverage is known at every step. The second layer's probes are its inputs from one "
                          "forward pass before training — **frozen**, stored in the run."),
        new_code_cell('def mlp():\n'
                      '    torch.manual_seed(0)\n'
                      '    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))\n'
                      '\n'
                      'def record(model, sites, path, opt):\n'
                      '    with dyn.Recorder(path, sites=sites, optimizer=opt, overwrite=True) as rec:\n'
                      '        for _ in range(steps):                       # full-batch training\n'
                      '            loss = torch.nn.functional.cross_entropy(model(x), y)\n'
                      '            loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)\n'
                      '    return dyn.open(path)\n'
                      '\n'
                      'runs = {}\n'
                      'for name in ("sgd", "adam"):\n'
                      '    model = mlp()\n'
                      '    opt = (torch.optim.SGD(model.parameters(), lr=0.5) if name == "sgd"\n'
                      '           else torch.optim.Adam(model.parameters(), lr=1e-2))\n'
                      '    sites = probes.sites_for(model, ["0", "2"], x, y)   # site names l0, l2\n'
                      '    runs[f"mlp-{name}"] = record(model, sites, WORK / f"mlp-{name}.zarr", opt)\n'
                      'runs["mlp-sgd"]["l2"].attrs["probes"]'),
        new_markdown_cell("## Coefficients and span coverage\n\n"
                          "Every site here is a projection (residual probes are dependent on the class means by "
                          "construction, and 1,267 probes live in 64 dimensions). `span_coverage(step, neuron)` is "
                          "the share of `‖w(t) − w(0)‖²` inside the probes' span: with full-batch SGD every update of "
                          "the first layer is a combination of the inputs, so it is 1; Adam's normalised updates "
                          "leave that span."),
        new_code_cell('rows = []\n'
                      'for run_name, tree in runs.items():\n'
                      '    for site in ("l0", "l2"):\n'
                      '        c = tree.dyn.coefficients(site)\n'
                      '        cov = c["span_coverage"].isel(step=-1)\n'
                      '        rows.append(dict(run=run_name, site=site, method=c.attrs["method"], rank=c.attrs["rank"],\n'
                      '                         features=c.attrs["n_features"], coverage_min=float(cov.min()),\n'
                      '                         coverage_median=float(cov.median()),\n'
                      '                         residual_max=float(c["residual"].isel(step=-1).max())))\n'
                      'import pandas as pd\n'
                      'pd.DataFrame(rows)'),
        new_code_cell('fig, ax = plt.subplots(figsize=(6, 3.5))\n'
                      'for run_name, tree in runs.items():\n'
                      '    cov = tree.dyn.coefficients("l0")["span_coverage"]\n'
                      '    ax.plot(cov["step"], cov.median("neuron"), label=f"{run_name}: median over neurons")\n'
                      '    ax.fill_between(cov["step"], cov.min("neuron"), cov.max("neuron"), alpha=0.2)\n'
                      'ax.set_xlabel("step"); ax.set_ylabel("span coverage, first layer"); ax.legend(); fig'),
        new_markdown_cell("With all 1,257 images the probes span 61 of the 64 pixel dimensions, so the coverage is "
                          "≈ 1 for both optimizers almost by construction. A basis that can tell them apart has "
                          "fewer probes than features: train on 40 images and probe with exactly those."),
        new_code_cell('x40, y40 = x[:40], y[:40]\n'
                      'small_rows = []\n'
                      'for name in ("sgd", "adam"):\n'
                      '    model = mlp()\n'
                      '    opt = (torch.optim.SGD(model.parameters(), lr=0.5) if name == "sgd"\n'
                      '           else torch.optim.Adam(model.parameters(), lr=1e-2))\n'
                      '    sites = probes.sites_for(model, ["0"], x40, y40, noise="raw")\n'
                      '    with dyn.Recorder(WORK / f"mlp40-{name}.zarr", sites=sites, optimizer=opt, overwrite=True) as rec:\n'
                      '        for _ in range(steps):\n'
                      '            loss = torch.nn.functional.cross_entropy(model(x40), y40)\n'
                      '            loss.backward(); opt.step(); opt.zero_grad(); rec.log(loss=loss)\n'
                      '    site_ds = dyn.open(WORK / f"mlp40-{name}.zarr")["l0"].to_dataset()\n'
                      '    c = site_ds.dyn.coefficients()\n'
                      '    cov = c["span_coverage"].isel(step=-1)\n'
                      '    small_rows.append(dict(optimizer=name, rank=c.attrs["rank"], coverage_min=float(cov.min()),\n'
                      '                           coverage_median=float(cov.median()),\n'
                      '                           residual_median=float(c["residual"].isel(step=-1).median()),\n'
                      '                           final_weights_rel_error=site_ds.dyn.reconstruction_residual()["rel"]))\n'
                      'pd.DataFrame(small_rows)'),
        new_markdown_cell("## The theory-free summary\n\n"
                          "Per site: growth of max/mean |γ| and |ρ|, which one dominates and from which step, phase "
                          "changes of the log-max curves where there are any, span coverage, and `noise_vs_random`: "
                          "how much more the largest noise inner product moved than the largest random-direction one "
                          "(≈ 1 means the \"memorization\" is what any direction would show). `dyn analyze` prints "
                          "and writes this table for runs no theory judges."),
        new_code_cell('pd.concat({k: dyn.summary(t) for k, t in runs.items()}, names=["run"]).droplevel(1)'),
        new_code_cell('dyn.plot_coefficients(runs["mlp-sgd"], site="l0", quantities=("gamma", "rho"), theory=False)'),
        new_markdown_cell("## A small CNN: the conv weight is a site\n\n"
                          "Each filter is a neuron and the input patches it sees (`unfold`) are the probes, with "
                          "their image and position stored (`patch_image`, `patch_row`, `patch_col`). A 3×3 filter on "
                          "one channel has 9 features, so a few patches already span everything and the coverage is 1 "
                          "by construction; with 5 patches (the case that used to fail silently) it is measured."),
        new_code_cell('def cnn():\n'
                      '    torch.manual_seed(0)\n'
                      '    return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), torch.nn.Conv2d(1, 6, 3, padding=1),\n'
                      '                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 64, 10))\n'
                      'images = x.reshape(-1, 1, 8, 8)\n'
                      'for name in ("sgd", "adam"):\n'
                      '    model = cnn()\n'
                      '    opt = (torch.optim.SGD(model.parameters(), lr=0.5) if name == "sgd"\n'
                      '           else torch.optim.Adam(model.parameters(), lr=1e-2))\n'
                      '    sites = {"conv": probes.site_for(model[1], images, y, per_image=4),\n'
                      '             "conv5": probes.site_for(model[1], images, y, per_image=1, max_samples=5, baseline=False)}\n'
                      '    runs[f"cnn-{name}"] = record(model, sites, WORK / f"cnn-{name}.zarr", opt)\n'
                      'tree = runs["cnn-sgd"]\n'
                      'print(tree["conv"]["patch_row"].values[:8], tree["conv"].attrs["weight_shape"])\n'
                      'pd.concat({k: dyn.summary(runs[k]) for k in ("cnn-sgd", "cnn-adam")}, names=["run"]).droplevel(1)[\n'
                      '    ["site", "samples", "method", "rank", "coverage_min", "coverage_median", "winner", "noise_vs_random"]]'),
        new_markdown_cell("## The same MLP through the Lightning callback\n\n"
                          "`DynCallback` records named layers at every optimizer step (`trainer.global_step`), so "
                          "with `accumulate_grad_batches=2` two micro-batches make one recorded step; it flushes the "
                          "store when Lightning saves a checkpoint and resumes it from `fit(ckpt_path=...)`."),
        new_code_cell('import lightning.pytorch as pl\n'
                      'from dyn.record.integrations.lightning import DynCallback\n'
                      '\n'
                      'class Classifier(pl.LightningModule):\n'
                      '    def __init__(self):\n'
                      '        super().__init__()\n'
                      '        self.net = mlp()\n'
                      '    def forward(self, xb):              # the callback runs it once to take the probes\n'
                      '        return self.net(xb)\n'
                      '    def training_step(self, batch, batch_idx):\n'
                      '        xb, yb = batch\n'
                      '        return torch.nn.functional.cross_entropy(self(xb), yb)\n'
                      '    def configure_optimizers(self):\n'
                      '        return torch.optim.SGD(self.parameters(), lr=0.5)\n'
                      '\n'
                      'loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=n // 2)\n'
                      'cb = DynCallback(WORK / "mlp-lightning.zarr", ["net.0", "net.2"], x, y, overwrite=True)\n'
                      'trainer = pl.Trainer(max_steps=steps // 2, accumulate_grad_batches=2, callbacks=[cb], logger=False,\n'
                      '                     enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)\n'
                      'trainer.fit(Classifier(), loader)\n'
                      'lit = dyn.open(WORK / "mlp-lightning.zarr")\n'
                      'print("recorded steps:", lit["step"].values[:5], "...", int(lit["step"].values[-1]))\n'
                      'dyn.summary(lit)[["site", "method", "coverage_min", "winner", "noise_vs_random"]]'),
        new_markdown_cell("## What γ and ρ mean here\n\n"
                          "- **Exact** (`method=\"exact\"`): the basis is independent (n + K ≤ d, not numerically "
                          "dependent) and the updates lie in its span — GD/SGD on the layer whose inputs are the "
                          "probes. Coverage is 1 and the solve reproduces the weights.\n"
                          "- **Projection** (`method=\"projection\"`): γ and ρ are the minimum-norm coefficients of "
                          "the part of `w(t) − w(0)` inside the probes' span. When the coverage is below 1 (Adam, "
                          "probes that are not the training inputs) the rest of the change is not described at "
                          "all; when the rank equals the number of features the coverage is 1 by construction and "
                          "γ/ρ are one split among many — compare them with the random baseline before calling "
                          "anything memorization."),
    ],
    "06-label-noise.ipynb": [
        new_markdown_cell("# Label-noise GD vs standard GD (Huang, Han et al. 2025), reproduced and pushed further\n\n"
                          "The second theorem through the same spine: the signal–noise data of Definition 2.1, a "
                          "two-layer squared-ReLU CNN with a fixed ±1 second layer, and full-batch GD with or without "
                          "labels flipped at random each step (p = 0.1). In the low-SNR regime standard GD memorizes the "
                          "noise and tests at chance; label-noise GD keeps noise memorization bounded and learns the "
                          "signal. Below: Figure 2 over seeds, the claims checked on one run, Figure 3's heatmap (on "
                          "Dask), and an optimizer comparison the paper does not have (SGD with momentum, Adam). "
                          "`SMALL` runs the seconds-long sizes (`huang2025-tiny`)."),
        new_code_cell(SETUP),
        new_markdown_cell("## Figure 2: ratio of noise memorization to signal learning, training loss, test accuracy\n\n"
                          "Ratio = max ρ̄ / max γ on the exact coefficients (the paper does not define its ratio; the "
                          "raw inner-product ratio is in the curves file as `raw_ratio`). Runs with one seed share data "
                          "and initialisation across the two algorithms. Full size: `dyn reproduce figure2` "
                          "(3 seeds × 2 runs of ~90 s)."),
        new_code_cell('from dyn.experiments.huang2025_label_noise import figure2, figure3, optimizers\n'
                      'summary = figure2(WORK / "figure2", seeds=2 if SMALL else 3, small=True, overwrite=True)\n'
                      'summary.pivot(index="metric", columns="algorithm", values="mean")'),
        new_code_cell('from IPython.display import Image\nImage(filename=str(WORK / "figure2" / "figure2.png"))'),
        new_markdown_cell("## Claim by claim\n\n"
                          "The label-noise run of seed 0 against the theory `huang2025-label-noise`: exact update "
                          "identities first (they hold to floating-point tolerance on every run), then the theorem's "
                          "claims with their hypotheses. The tiny config violates Assumption 3.1, and the table says so "
                          "instead of hiding it."),
        new_code_cell('from dyn.theory.huang2025_label_noise import LabelNoiseTheory\n'
                      'table = dyn.compare(WORK / "figure2" / "runs" / "label_noise-seed0.zarr", LabelNoiseTheory())\n'
                      'print(table["verdict"].value_counts().to_dict())\n'
                      'table[["claim", "observed", "verdict"]].head(12)'),
        new_markdown_cell("## Figure 3: test accuracy over SNR × n\n\n"
                          "A sweep on Dask (`dyn.experiments.sweep`) over the derived axis `snr` (‖μ‖ = SNR σ_p √d) and "
                          "n, for both algorithms; re-running into the same folder resumes. The dashed curve is the "
                          "theory's stage-1 race boundary n*(SNR) (noise memorization first below it); the dotted one "
                          "is n·SNR² = 1. Here a 2 × 2 corner of the small grid (`SMALL`) or the whole small grid; "
                          "the paper's grid is `dyn reproduce figure3`."),
        new_code_cell('from dyn.experiments.sweep import load_grid\n'
                      'grid = load_grid("huang2025-figure3-small")\n'
                      'if SMALL:\n'
                      '    grid["axes"].update(snr=[0.03, 0.1], n=[20, 60])\n'
                      'heat = figure3(WORK / "figure3", grid=grid, overwrite=True, sequential=SMALL)\n'
                      'heat.pivot(index=["algorithm", "n"], columns="snr", values="mean")'),
        new_code_cell('Image(filename=str(WORK / "figure3" / "figure3.png"))'),
        new_markdown_cell("## Beyond the paper: who learns the signal, who memorizes the noise?\n\n"
                          "Same data, initialisation and flips; the optimizer is a config field (`optimizer = \"gd\" | "
                          "\"momentum\" | \"adam\"`, through `torch.optim`; `\"gd\"` is the paper's update). Heavy-ball "
                          "SGD uses η(1 − β) so its steady-state step matches GD; Adam gets lr 0.01. The recorder does "
                          "not care which optimizer moved the weights; the exact decomposition still holds for "
                          "momentum (its updates stay in the span of μ and the ξᵢ) and for Adam only as far as its "
                          "updates do. The theory's update identities describe `\"gd\"` only."),
        new_code_cell('opt = optimizers(WORK / "optimizers", small=True, overwrite=True)\n'
                      'opt[["optimizer", "ratio", "gamma_max", "rho_max", "loss", "test_acc", "winner"]]'),
        new_code_cell('Image(filename=str(WORK / "optimizers" / "optimizers.png"))'),
        new_markdown_cell("Measured at the small size: momentum and Adam drive the clean loss to zero like GD and memorize the noise (test accuracy "
                          "near chance); what decides who learns the signal here is the label noise, not the "
                          "optimizer: Adam with flipped labels generalizes as label-noise GD does."),
    ],
}


NOTEBOOKS["07-benign-overfitting.ipynb"] = [
    new_markdown_cell("# Benign vs harmful overfitting (Cao et al. 2022, Kou et al. 2023)\n\n"
                      "The founding result of this line, on the signal–noise CNN family (`signal-noise-cnn`): with "
                      "label-flipping noise p, GD fits every training label — flipped ones included — and the test "
                      "error is ≈ p (benign) when n‖μ‖⁴ ≳ σ_p⁴d, well above p (harmful) otherwise. One benign and "
                      "one harmful run side by side, the authors' heatmap beside dyn's, and the transition checked "
                      "across a sweep."),
    new_code_cell(SETUP),
    new_markdown_cell("## One benign and one harmful run\n\nPresets `kou2023-theory` (n‖μ‖⁴/(σ_p⁴d) = 31) and "
                      "`kou2023-harmful` (0.1), every step recorded, every per-run claim checked."),
    new_code_cell('from dyn.experiments.kou2023 import benign_vs_harmful, kou_heatmap\n'
                  'print(benign_vs_harmful(WORK / "pair", small=SMALL, overwrite=True))'),
    new_code_cell('from IPython.display import Image\nImage(filename=str(WORK / "pair" / "benign-vs-harmful.png"))'),
    new_markdown_cell("Left: signal learning (max γ) against noise memorization (max ρ̄). Middle: flipped samples are "
                      "memorized more than clean ones — GD fits their wrong labels with their noise. Right: the "
                      "training loss goes to 0 in both runs; only the benign run's test error sits at the Bayes "
                      "error p."),
    new_markdown_cell("## The heatmap, beside the authors' numbers\n\nKou et al.'s grid as their code runs it "
                      "(code network; here the small grid: 10 ‖μ‖ × 6 d), compared cell by cell with the numbers "
                      "they published (shipped with dyn, with attribution)."),
    new_code_cell('text = kou_heatmap(WORK / "heatmap", small=True, seeds=1 if SMALL else 2, overwrite=True,\n'
                  '                   networks=("code",) if SMALL else ("code", "theory"))\n'
                  'print(text)\n'
                  'Image(filename=str(WORK / "heatmap" / "heatmap.png"))'),
    new_markdown_cell("## The transition across runs\n\nA sweep over ‖μ‖ × d × n (the shipped grid "
                      "`kou2023-grid`; a few cells in the small version), opened as one dataset, the transition's "
                      "verdicts (location of the boundary with bootstrap CIs against the theory's exponents, "
                      "collapse against n·SNR², the sides) and the collapse plot."),
    new_code_cell('from dyn.experiments.sweep import load_grid, sweep\n'
                  'from dyn.theory.transitions import fit_transitions, transition_verdicts\n'
                  'from dyn.viz.transitions import plot_collapse\n'
                  'grid = load_grid("kou2023-grid")\n'
                  'if SMALL:\n'
                  '    grid["fixed"].update(steps=60, n_test=200, eta=1.0)\n'
                  '    grid["axes"] = {"mu_norm": [0.5, 2.0, 8.0], "d": [100, 1000], "n": [20], "seed": [0, 1]}\n'
                  'results = sweep(grid, WORK / "kou-sweep", sequential=True, overwrite=True)\n'
                  'ds = dyn.open_sweep(WORK / "kou-sweep")\n'
                  'ds["excess_test_error"].mean("seed").to_dataframe().unstack("mu_norm")'),
    new_code_cell('fits = fit_transitions(ds)\n'
                  'for v in transition_verdicts(fits[0]):\n'
                  '    print(f"{v.claim:34s} {v.verdict:14s} {v.observed[:110]}")\n'
                  'plot_collapse(fits[0])'),
]


def main(names: list[str] | None = None) -> None:
    """Write the notebooks (all, or only those named: ``python notebooks/make_notebooks.py 05-your-own-model``)."""
    for name, cells in NOTEBOOKS.items():
        if names and name.removesuffix(".ipynb") not in names and name not in names:
            continue
        nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                "language": "python"}})
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
