"""Tiny problems on scikit-learn's bundled digits (nothing downloaded), shared by the record and analysis tests."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

import dyn


def digits(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (n, 64)`` in [0, 1] and labels ``y (n,)``: the first ``n`` of the 1,797 images."""
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    return (x, y) if n is None else (x[:n], y[:n])


def mlp(hidden: int = 32) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def cnn(filters: int = 6) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 8, 8)), torch.nn.Conv2d(1, filters, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(filters * 64, 10))


def train_recorded(path, model, sites, x, y, *, optimizer="sgd", steps=15, lr=None, snapshots=True):
    """Full-batch training with a recorder on the optimizer; returns every W(t) of each site's parameter."""
    opt = (torch.optim.SGD(model.parameters(), lr=lr or 0.5) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr or 1e-2))
    weights = {k: [s.weight.detach().clone().double().numpy()] for k, s in sites.items()}
    with dyn.Recorder(path, sites=sites, optimizer=opt, overwrite=True) as rec:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            rec.log(loss=loss)
            if snapshots:
                for k, s in sites.items():
                    weights[k].append(s.weight.detach().clone().double().numpy())
    return {k: np.stack(v) for k, v in weights.items()}
