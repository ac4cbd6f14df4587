"""Per-run claims every member of the signal–noise CNN family shares (``benign-overfitting.md`` §5, items 1–5).

Each is a function ``CNNRecording -> Outcome``; none depends on an unverified constant. The words the papers
leave unquantified are read by the named constants below (module level, with why).
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from ...analysis.summary import winner as race_winner
from ..base import NotCheckable, Outcome
from .quantities import J, CNNRecording, activation, increments

__all__ = ["IDENTITY_SAFETY", "OVERFIT_LOSS", "BAYES_SE_MULTIPLIER", "MIN_GROWTH", "identity_outcome",
           "signs", "overfitting", "flipped_fitted_by_noise", "bayes_floor", "winner", "moved"]

#: Safety factor on the first-order float error bounds of the exact identities (the bounds are first order).
IDENTITY_SAFETY = 4.0
#: "Training loss below ε" read with ε = 0.1 (the theorems hold for any ε at enough steps; 0.1 is ~90% confidence
#: on every sample: log(1 + e^{-z}) < 0.1 needs margins > 2.25).
OVERFIT_LOSS = 0.1
#: Standard errors by which a test error may fall below the Bayes error before the floor is violated (several
#: evaluated steps are compared at once, so 3 rather than 2).
BAYES_SE_MULTIPLIER = 3.0
#: Minimum effect: a coefficient "moved" only if its largest magnitude at least doubled from its float-error floor
#: and from its initial scale (the same factor the phase fits require of stage 1).
MIN_GROWTH = 2.0


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.4g}"


def _need(ok: bool, reason: str) -> None:
    if not ok:
        raise NotCheckable(reason)


def _gd_only(rec: CNNRecording) -> None:
    opt = rec.config.get("optimizer", "gd")
    _need(opt == "gd", f"the identities are those of plain GD; optimizer {opt!r} takes a different step "
                       f"(its identities differ, so this claim is not checked on it)")


_RESIDUALS: "weakref.WeakKeyDictionary[CNNRecording, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _residuals(rec: CNNRecording) -> dict[str, Any]:
    if rec not in _RESIDUALS:
        _RESIDUALS[rec] = _compute_residuals(rec)
    return _RESIDUALS[rec]


def _compute_residuals(rec: CNNRecording) -> dict[str, Any]:
    steps = int(rec.config["steps"])
    pairs = np.flatnonzero((np.diff(rec.steps) == 1) & (rec.steps[:-1] < steps))
    _need(pairs.size > 0, "needs consecutive recorded steps (record_every = 1)")
    eps_all = rec.flips_at_steps()
    cerr, ierr = rec.coefficient_error(), rec.inner_error()
    eta = float(rec.config["eta"])
    out = {"steps": int(pairs.size)}
    for name in ("gamma", "rho", "bias"):
        out[f"{name}_ratio"], out[f"{name}_abs"], out[f"{name}_scale"] = 0.0, 0.0, 0.0
    for start in range(0, pairs.size, 256):
        blk = pairs[start:start + 256]
        pred = increments(rec.a[blk], rec.c[blk], rec.b[blk], rec.y, rec.y_true, eps_all[blk], eta=eta,
                          net=rec.net, mu_norm2=rec.mu_norm2, xi_norm2=rec.xi_norm2, dz=ierr[blk])
        obs_err = (cerr[blk] + cerr[blk + 1])
        observed = {"gamma": rec.gamma[blk + 1] - rec.gamma[blk], "rho": rec.rho[blk + 1] - rec.rho[blk],
                    "bias": rec.c[blk + 1] - rec.c[blk]}
        errs = {"gamma": obs_err[:, None, None], "rho": obs_err[:, None, None, None],
                "bias": (ierr[blk] + ierr[blk + 1])[:, None, None]}
        for name in ("gamma", "rho", "bias"):
            res = np.abs(observed[name] - pred[name])
            tol = IDENTITY_SAFETY * (errs[name] + pred[f"{name}_err"])
            out[f"{name}_ratio"] = max(out[f"{name}_ratio"], float((res / tol).max()))
            out[f"{name}_abs"] = max(out[f"{name}_abs"], float(res.max()))
            out[f"{name}_scale"] = max(out[f"{name}_scale"], float(np.abs(observed[name]).max()))
    return out


def identity_outcome(rec: CNNRecording, which: str) -> Outcome:
    """An update identity (``which``: gamma, rho or bias): the largest residual against its error bound."""
    _gd_only(rec)
    if which == "bias":
        _need(rec.net.bias, "the network has no bias (theory network)")
    r = _residuals(rec)
    worst, ratio, scale = r[f"{which}_abs"], r[f"{which}_ratio"], r[f"{which}_scale"]
    _need(scale > 0, f"{which} never changed over a step: an identity of a run that does not move cannot fail")
    return Outcome(f"max |residual| = {_fmt(worst)} (largest step change {_fmt(scale)}) over {r['steps']} steps, "
                   f"{_fmt(ratio)} of the error bound", ratio <= 1.0,
                   {"max_residual": worst, "residual_over_bound": ratio, "largest_change": scale, "steps": r["steps"]})


def moved(rec: CNNRecording) -> tuple[bool, dict[str, float]]:
    """Whether training moved by the minimum effect: the largest |γ|, |ρ| exceeds ``MIN_GROWTH`` times the
    coefficients' float-error bound, **and** either the training loss changed by a factor ``MIN_GROWTH`` (either
    way) or the coefficients reached the initial inner products' scale (a run whose loss barely changed and whose
    coefficients stay below the initialisation's scale did not move)."""
    floor = float(rec.coefficient_error().max())
    scale0 = float(max(np.abs(rec.a[0]).max(), np.abs(rec.b[0]).max()))
    g, r = float(np.abs(rec.gamma[-1]).max()), float(np.abs(rec.rho[-1]).max())
    size = max(g, r)
    loss = rec.scalars.get("loss")
    loss_factor = math.nan
    if loss is not None and loss.size and loss[0] > 0 and np.isfinite(loss[-1]):
        loss_factor = float(max(loss[0] / max(loss[-1], 1e-300), loss[-1] / loss[0]))
    effect = (loss_factor >= MIN_GROWTH) or size >= scale0
    return bool(size > MIN_GROWTH * floor and effect), {"max_abs_gamma": g, "max_abs_rho": r, "error_floor": floor,
                                                        "initial_scale": scale0, "loss_factor": loss_factor}


def signs(rec: CNNRecording) -> Outcome:
    """ρ_{j,r,i} ≥ 0 when j = y_i and ≤ 0 when j = −y_i, at every recorded step (within the float error)."""
    _gd_only(rec)
    _need(rec.config.get("algorithm", "gd") == "gd",
          "label-noise GD flips the sign of ρ's updates on flipped steps: the sign constraints are GD's")
    ok, numbers = moved(rec)
    _need(ok, f"nothing moved: max |rho| {_fmt(numbers['max_abs_rho'])}, loss changed x{_fmt(numbers['loss_factor'])} "
              f"(minimum effect x{MIN_GROWTH:g})")
    own = rec.own()
    tol = IDENTITY_SAFETY * rec.coefficient_error()[:, None, None, None]
    wrong = np.where(own[None, :, None, :], -rec.rho, rec.rho) - tol  # > 0 where a sign constraint fails
    count = int((wrong > 0).sum())
    worst = float(np.maximum(wrong, 0).max())
    return Outcome(f"{count} sign violations in {wrong.size} coefficients (worst by {_fmt(worst)})", count == 0,
                   {"violations": count, "checked": int(wrong.size), "worst_excess": worst, **numbers})


def overfitting(rec: CNNRecording) -> Outcome:
    """Training error 0 (flipped samples included) and training loss below ``OVERFIT_LOSS`` at the end."""
    _need("loss" in rec.scalars and "train_error" in rec.scalars, "the run logged no training loss or error")
    loss, err = float(rec.scalars["loss"][-1]), float(rec.scalars["train_error"][-1])
    loss0 = float(rec.scalars["loss"][0])
    _need(loss0 > OVERFIT_LOSS, f"the loss starts below {OVERFIT_LOSS} ({_fmt(loss0)}): nothing to fit")
    flipped = int(rec.flipped.sum())
    f_end = rec.outputs()[-1]
    unfit_flipped = int(((rec.y * f_end <= 0) & rec.flipped).sum())
    holds = err == 0 and loss < OVERFIT_LOSS
    return Outcome(f"final training error {_fmt(err)} ({unfit_flipped} of {flipped} flipped samples not fitted), "
                   f"loss {_fmt(loss)} (from {_fmt(loss0)})", holds,
                   {"train_error": err, "loss": loss, "loss_start": loss0, "flipped": flipped,
                    "flipped_not_fitted": unfit_flipped, "loss_threshold": OVERFIT_LOSS})


def flipped_fitted_by_noise(rec: CNNRecording) -> Outcome:
    """For every flipped sample at the end: the noise term of ``y_i f(x_i)`` is positive and larger than the
    (negative) signal term."""
    idx = np.flatnonzero(rec.flipped)
    _need(idx.size > 0, "no training label is flipped (flip_rate = 0 or none drawn)")
    net, t = rec.net, -1
    cc = rec.c[t][..., None]
    sig = activation(rec.y_true[idx] * rec.a[t][..., None] + cc, net.q).sum(axis=1)  # (2, k)
    noi = activation(rec.b[t][..., idx] + cc, net.q).sum(axis=1)
    signal_term = rec.y[idx] * net.scale * (sig[0] - sig[1])
    noise_term = rec.y[idx] * net.scale * (noi[0] - noi[1])
    ok = (noise_term > 0) & (noise_term > -signal_term)
    negative = int((signal_term < 0).sum())
    return Outcome(f"{int(ok.sum())} of {idx.size} flipped samples fitted by noise (noise term > 0 and > -signal "
                   f"term); {negative} have a negative signal term; smallest noise margin "
                   f"{_fmt(float((noise_term + signal_term).min()))}", bool(ok.all()),
                   {"flipped": int(idx.size), "fitted_by_noise": int(ok.sum()), "negative_signal_term": negative,
                    "min_noise_term": float(noise_term.min()), "max_signal_term": float(signal_term.max())})


def bayes_floor(rec: CNNRecording) -> Outcome:
    """The test error against the (flipped) test labels never falls below the Bayes error p beyond sampling error."""
    p = float(rec.config.get("flip_rate", 0.0))
    _need(p > 0, "vacuous: without label-flipping noise the Bayes error is 0 and the floor cannot fail")
    te = rec.scalars.get("test_error")
    _need(te is not None and np.isfinite(te).any(), "the run logged no test error (n_test = 0)")
    vals = te[np.isfinite(te)]
    n_test = int(rec.config.get("n_test", 0))
    se = math.sqrt(p * (1 - p) / max(n_test, 1))
    lowest = float(vals.min())
    floor = p - BAYES_SE_MULTIPLIER * se
    return Outcome(f"lowest test error {_fmt(lowest)} over {vals.size} evaluations (floor p - {BAYES_SE_MULTIPLIER:g} SE "
                   f"= {_fmt(floor)})", lowest >= floor,
                   {"lowest_test_error": lowest, "p": p, "se": se, "floor": floor, "evaluations": int(vals.size)})


def winner(gamma_max: float, rho_max: float, rec: CNNRecording) -> str:
    """The race's outcome by dyn's one rule (:func:`dyn.analysis.summary.winner`): each side "moved" against its own
    initial scale (max |⟨w(0), μ⟩|, max ⟨w(0), ξ_i⟩), a tie within its relative tolerance; a non-finite size (a
    diverged run) did not move."""
    if not (math.isfinite(gamma_max) and math.isfinite(rho_max)):
        return "did not move"
    return race_winner(max(gamma_max, 0.0), max(rho_max, 0.0), signal_scale=float(np.abs(rec.a[0]).max()),
                       noise_scale=float(max(rec.b[0].max(), 0.0)))
