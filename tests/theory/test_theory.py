"""The Huang et al. 2024 claims: hand-computed numbers, verdicts on real runs, the extension point."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import dyn
from dyn.analysis.run import Run
from dyn.theory import Claim, Outcome, Theory, get_theory, register
from dyn.theory.huang2024.claims import params


@pytest.fixture(scope="module")
def paper_runs(tmp_path_factory):
    """The paper's Figure-1 preset, both modalities, seed 0 (about a second each)."""
    root = tmp_path_factory.mktemp("paper")
    out = {}
    for modality in ("single", "multi"):
        dyn.train(dyn.load_preset("huang2024-figure1", modality=modality), root / f"{modality}.zarr")
        out[modality] = Run(root / f"{modality}.zarr")
    return out


@pytest.fixture(scope="module")
def conforming_runs(tmp_path_factory):
    """A config inside the theorem's conditions where it matters: d >= n^2, small sigma0, and for multi-modal
    C_mu n SNR^2 = 5.25 >= 4.51 (the paper's own Figure-1 setting has 3.75)."""
    root = tmp_path_factory.mktemp("conforming")
    base = dyn.load_preset("huang2024-figure1", n=20, m=20, sigma0=0.001, steps=300)
    out = {}
    for modality, nsnr2 in (("single", 1.25), ("multi", 1.75)):
        mu = math.sqrt(nsnr2 * base.d / base.n)
        cfg = base.replace(modality=modality, mu_norm=mu, mu_tilde_norm=3 * mu, nu_norm=0.4 * mu)
        dyn.train(cfg, root / f"{modality}.zarr")
        out[modality] = Run(root / f"{modality}.zarr")
    return out


def _verdicts(run):
    table = dyn.compare(run)
    return {r.claim: r for r in table.itertuples()}, table.attrs["regime"]


def test_paper_preset_numbers_match_hand_computation(paper_runs):
    p = params(paper_runs["single"])
    assert p["snr"] == pytest.approx(5 / math.sqrt(2000)) and round(p["snr"], 4) == 0.1118
    assert p["nsnr2"] == pytest.approx(1.25)
    assert p["cn"] == pytest.approx(0.01 * 2000 / (100 * 50 * 0.1))  # eta sigma^2 d/(n m tau) = 0.04
    t1_single = math.log(20 / (0.01 * math.sqrt(2000))) / math.log(1 + 0.96 * 0.04)
    assert p["T1"] == pytest.approx(t1_single) and round(p["T1"], 1) == 100.9
    q = params(paper_runs["multi"])
    assert q["c_mu"] == 3.0
    assert q["cs"] == pytest.approx(0.01 * 25 / (50 * 0.1))  # eta |mu|^2/(m tau) = 0.05
    assert q["T1"] == pytest.approx(math.log(20 / (0.01 * 5)) / math.log(1 + 0.48 * 3 * 0.05))
    assert 45 <= q["M"] <= 55  # all opposite-label samples, about n/2


def test_paper_preset_verdicts(paper_runs):
    single, reg_s = _verdicts(paper_runs["single"])
    multi, reg_m = _verdicts(paper_runs["multi"])
    # Regime: single-modal noise memorization wins, as predicted (n SNR^2 = 1.25 <= 1.8).
    assert reg_s["observed_winner"] == "noise memorization" and reg_s["agrees"] is True
    assert single["regime.winner"].verdict == "holds"
    # Multi-modal: the paper's own setting has C_mu n SNR^2 = 3.75 < 4.51, so the theorem is silent. Observed:
    # max rho still exceeds max|gamma| in encoder h, but signal learning relative to noise is several times
    # stronger than single-modal (the cross-setting comparison of Figure 1).
    assert reg_m["agrees"] is None and multi["regime.winner"].verdict == "not checkable"
    assert "3.75 < 4.51" in multi["regime.winner"].observed
    assert reg_m["ratio_gamma_over_rho"] > 4 * reg_s["ratio_gamma_over_rho"]
    # The configuration violates Assumption 4.1(1) (d = 2000 < n^2); the report says so.
    assert single["assumption.high_dimension"].verdict == "violated"
    # Invariants: the ReLU gate of the noise update holds exactly in both runs ...
    assert single["invariant.noise_gating"].verdict == "holds"
    assert multi["invariant.noise_gating"].verdict == "holds"
    assert multi["invariant.signal_sign"].verdict == "holds"
    assert multi["invariant.synchronization"].verdict == "holds"
    # ... but the paper's exact zeros (Lemma C.7) fail here: cross-talk sum_j rho_j <xi_j, xi_i>/|xi_j|^2 flips
    # the sign of some <w_r, xi_i> that started negative, which the theorem excludes only for d >> n^2.
    zero = single["invariant.noise_exact_zero"]
    assert zero.verdict == "violated"
    assert json.loads(zero.numbers)["fraction_flipped_end"] > 0.01
    # Stage 2: coefficients stay under the log bound and the averaged loss obeys the O(1/t) bound.
    for v in (single, multi):
        assert v["stage2.log_bound"].verdict == "holds"
        assert v["stage2.averaged_loss"].verdict == "holds"
    assert {r.verdict for r in single.values()} <= {"holds", "violated", "not checkable"}


def test_regime_prediction_holds_inside_the_theorems_conditions(conforming_runs):
    single, reg_s = _verdicts(conforming_runs["single"])
    multi, reg_m = _verdicts(conforming_runs["multi"])
    assert single["regime.winner"].verdict == "holds" and reg_s["observed_winner"] == "noise memorization"
    assert multi["regime.winner"].verdict == "holds" and reg_m["observed_winner"] == "signal learning"
    assert multi["assumption.high_dimension"].verdict == "holds"
    assert multi["stage1.slope_ratio"].verdict == "holds"


def test_short_run_is_not_checkable_not_a_pass(tmp_path):
    path = tmp_path / "short.zarr"
    dyn.train(dyn.load_preset("huang2024-figure1", steps=5, d=400), path)
    v, _ = _verdicts(path)
    assert v["T1.dominant_scale"].verdict == "not checkable"
    assert "run too short" in v["T1.dominant_scale"].observed


def test_unknown_theory_and_foreign_run(tmp_path):
    with pytest.raises(dyn.ConfigError, match="unknown theory 'nope'"):
        get_theory("nope")
    import torch

    w = torch.nn.Parameter(torch.randn(3, 8))
    with dyn.Recorder(tmp_path / "u.zarr", sites={"h": dyn.Site(w, signals={"mu": torch.ones(8)}, noise=torch.randn(4, 8))}) as rec:
        rec.step()
    with pytest.raises(dyn.ConfigError, match="no registered theory judges runs of setup None"):
        dyn.compare(tmp_path / "u.zarr")  # a user's loop: no theory is picked silently
    with pytest.raises(dyn.ConfigError, match="does not apply to this run"):
        dyn.compare(tmp_path / "u.zarr", theory="huang2024")


def test_a_second_theory_plugs_in_without_touching_the_core(tmp_path, tiny):
    """A user's theorem: one class, registered by name; compare and the CLI use it unchanged."""

    @register
    class NormGrowth(Theory):
        name = "test-norm-growth"
        description = "weights move away from initialisation"

        def applies_to(self, run):
            return None

        def claims(self, run):
            def check(run):
                rho = np.abs(run.coefficients("h")["rho"].values)
                return Outcome(f"max |rho| = {rho.max():.3g}", bool(rho[-1].max() > rho[0].max()), {"max": float(rho.max())})

            return [Claim("growth", "stage 1", "rho grows", "max |rho| increases", check)]

    path = tmp_path / "r.zarr"
    dyn.train(tiny(steps=5), path)
    table = dyn.compare(path, theory="test-norm-growth")
    assert table["verdict"].tolist() == ["holds"]
    from dyn.cli import main

    assert main(["analyze", str(path), "--out", str(tmp_path / "rep"), "--theory", "test-norm-growth"]) == 0
    assert "test-norm-growth" in (tmp_path / "rep" / "report.md").read_text()
