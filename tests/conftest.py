"""Shared fixtures: tiny problems that run in well under a second."""

from __future__ import annotations

import pytest
import torch

import dyn


@pytest.fixture
def tiny():
    """A tiny Huang et al. config (d=40, n=10, m=6, 8 steps) in float64."""

    def make(**changes):
        base = dict(d=40, n=10, n_test=6, m=6, steps=8, eta=0.05, tau=0.5, sigma0=0.1, mu_norm=2.0,
                    mu_tilde_norm=6.0, nu_norm=1.0, dtype="float64")
        base.update(changes)
        return dyn.Config(**base)

    return make


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield


@pytest.fixture
def one_thread():
    """Tiny problems run fastest on one torch thread and do not fight other jobs for the cores (with two threads
    on a loaded machine a 300-step tiny run took 8 s instead of 0.3 s). Opt-in (``pytest.mark.usefixtures``):
    tests that compare an in-process run bitwise with a ``dyn`` subprocess keep the default thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def replay():
    """Re-run the huang2024 trainer's optimisation independently: every W(t) per encoder and every loss.

    The brute-force reference recorded inner products and exact coefficients are compared against."""
    import numpy as np

    from dyn.setups.huang2024.train import Huang2024Setup

    def run(cfg):
        setup = Huang2024Setup(cfg)
        opt = torch.optim.SGD(setup.parameters(), lr=cfg.eta)
        weights = {k: [] for k in setup.encoders}
        losses = []
        for t in range(cfg.steps + 1):
            for k, enc in setup.encoders.items():
                weights[k].append(enc.weight.detach().clone().numpy().astype(np.float64))
            out = setup.loss(setup.anchors() if t < cfg.steps else None)
            losses.append(float(out.loss.detach()))
            if t == cfg.steps:
                break
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        return setup, weights, np.array(losses)

    return run
