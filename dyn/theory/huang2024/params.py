"""The numbers the theorem is written in, from a run's typed config, and the theorem's conditions on them.

:class:`Params` derives SNR, n·SNR², C_μ, the stage-1 rate units and the T₁ formula from
:class:`dyn.setups.huang2024.Config`. :func:`conditions` evaluates every term of Assumption 4.1 exactly as the
proofs use it (constant 1 and the proofs' log factors, :mod:`.constants`) plus the explicit constants of the proofs;
the Assumption 4.1 terms are the hypotheses the claims are proven under, the proof constants are reported only
(they are sufficient conditions far beyond any runnable size: n ≥ 15 000 single-modal).
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass, field
from typing import Any

from ...setups.huang2024.config import Config
from . import constants as C

__all__ = ["Params", "Condition", "conditions", "hypotheses_status", "ASSUMPTIONS", "TEST_SIGNAL"]


@dataclass(frozen=True)
class Params:
    """Derived quantities of one run's config (§6–§8 of the reconstruction).

    Attributes
    ----------
    config : Config
    multi : bool
    snr, n_snr2, c_mu : float
        SNR = ‖μ‖/(σ_ξ√d), n·SNR², C_μ = ‖μ̃‖/‖μ‖.
    cs, cn : float
        η‖μ‖²/(mτ) and ησ_ξ²d/(nmτ), the units of the stage-1 rates.
    T1 : float
        The formula of Lemma 5.2 (single) / 5.4 (multi); ``inf`` when nothing grows (η → 0).
    M : float
        Mean number of negatives per anchor (from the stored negative-pair mask when the run has one).
    last_step : int
        Last recorded step.
    opposite_share : float
        Share of the stored negative pairs whose two samples have opposite labels (1 without a stored mask).

    Examples
    --------
    >>> p = Params.from_config(Config(), M=50.0, last_step=200)
    >>> round(p.n_snr2, 3), round(p.cn, 3), round(p.T1, 1)
    (1.25, 0.04, 100.9)
    """

    config: Config
    M: float
    last_step: int
    logs: dict[str, float] = field(default_factory=dict)
    opposite_share: float = 1.0

    @classmethod
    def from_config(cls, config: Config, *, M: float | None = None, last_step: int | None = None) -> "Params":
        m_neg = float(M) if M is not None else (config.n / 2 if config.negatives == "all" else float(config.negatives))
        return cls(config, m_neg, int(config.steps if last_step is None else last_step),
                   C.log_factor(config.n, config.m))

    @classmethod
    def from_run(cls, run: Any) -> "Params":
        """The run's params, computed once per run (:attr:`dyn.Run.cache`)."""
        key = "huang2024.params"
        if key not in run.cache:
            from .quantities import mean_negatives, opposite_negative_share

            cfg = Config.from_dict(run.config)
            params = cls.from_config(cfg, M=mean_negatives(run), last_step=int(run.steps[-1]))
            run.cache[key] = dataclasses.replace(params, opposite_share=opposite_negative_share(run))
        return run.cache[key]

    # plain names for the formulas
    @property
    def multi(self) -> bool:
        return self.config.modality == "multi"

    @property
    def modality(self) -> str:
        return self.config.modality

    def __getattr__(self, name: str) -> Any:
        if name in ("d", "n", "m", "eta", "tau", "sigma0", "sigma_xi", "sigma_eps"):
            return getattr(self.config, name)
        raise AttributeError(name)

    @property
    def mu(self) -> float:
        return self.config.mu_norm

    @property
    def mu_tilde(self) -> float:
        return self.config.mu_tilde_norm

    @property
    def snr(self) -> float:
        return self.config.snr

    @property
    def n_snr2(self) -> float:
        return self.n * self.snr**2

    @property
    def c_mu(self) -> float:
        return self.config.c_mu

    @property
    def cs(self) -> float:
        return self.eta * self.mu**2 / (self.m * self.tau)

    @property
    def cn(self) -> float:
        return self.eta * self.sigma_xi**2 * self.d / (self.n * self.m * self.tau)

    @property
    def noise_init(self) -> float:
        """σ₀σ_ξ√d, the scale of ⟨w_r(0), ξ_i⟩."""
        return self.sigma0 * self.sigma_xi * math.sqrt(self.d)

    @property
    def signal_init(self) -> float:
        """σ₀‖μ‖, the scale of ⟨w_r(0), μ⟩."""
        return self.sigma0 * self.mu

    @property
    def signal_rate_bound(self) -> float:
        """Per-step log-rate bound of the signal: upper 0.52 cs (Lemma C.4) or lower 0.48 C_μ cs (Lemma D.4)."""
        return math.log1p((C.SIGNAL_RATE_MULTI * self.c_mu if self.multi else C.SIGNAL_RATE_SINGLE) * self.cs)

    @property
    def noise_rate_bound(self) -> float:
        """Per-step log-rate bound of the noise: lower 0.96 cn (Lemma C.11) or upper 1.06 cn (Lemma D.8)."""
        return math.log1p((C.NOISE_RATE_MULTI if self.multi else C.NOISE_RATE_SINGLE) * self.cn)

    @property
    def T1(self) -> float:
        """Lemma 5.2: log(20/(σ₀σ_ξ√d))/log(1 + 0.96 cn); Lemma 5.4: log(20/(σ₀‖μ‖))/log(1 + 0.48 C_μ cs)."""
        start = self.signal_init if self.multi else self.noise_init
        rate = self.signal_rate_bound if self.multi else self.noise_rate_bound
        if start <= 0 or rate <= 0:
            return math.inf
        return math.log(C.T1_NUMERATOR / start) / rate


@dataclass(frozen=True)
class Condition:
    """One condition evaluated on the config: ``met``, the requirement and what the config has."""

    name: str
    source: str
    statement: str
    required: str
    observed: str
    met: bool
    numbers: dict[str, float]
    gating: bool


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _quot(num: float, *factors: tuple[float, float]) -> float:
    """``num / Π x**k`` over ``factors = (x, k), ...``, computed in logs: a tiny norm (‖μ‖ = 1e-300) gives a huge
    or infinite requirement, never a ZeroDivisionError from a product that underflowed to 0. ``inf`` when a
    factor is 0."""
    if num == 0:
        return 0.0
    if any(x <= 0 for x, _ in factors):
        return math.inf
    log = math.log(num) - sum(k * math.log(x) for x, k in factors)
    return math.exp(log) if log < 709.0 else math.inf


#: The names of the Assumption 4.1 conditions (the claims' hypotheses), both modalities; the downstream claim also
#: needs :data:`TEST_SIGNAL`.
ASSUMPTIONS = ("assumption.high_dimension", "assumption.learning_rate", "assumption.init_scale",
               "assumption.width_and_samples", "assumption.augmentation", "assumption.snr", "assumption.c_mu",
               "assumption.algorithm", "assumption.negatives")
TEST_SIGNAL = "assumption.test_signal"


def conditions(p: Params) -> list[Condition]:
    """Assumption 4.1 term by term (gating) and the proofs' explicit constants (reported), for ``p``'s modality.

    Examples
    --------
    >>> p = Params.from_config(Config(), M=50.0)
    >>> {c.name: c.met for c in conditions(p) if c.gating}["assumption.high_dimension"]
    False
    """
    L = p.logs
    n, m, d, s0, sx = p.n, p.m, p.d, p.sigma0, p.sigma_xi
    signals = {"|mu|": p.mu, **({"|mu~|": p.mu_tilde} if p.multi else {})}
    out: list[Condition] = []

    # 4.1(1): d >= Õ(max{n^2, n/(sigma0 sigma_xi), 1/(sigma0 |mu|)^2})
    terms = {"n^2 log(6n^2/delta)": n * n * L["L2"],
             "n sqrt(log(6n/delta))/(sigma0 sigma_xi)": _quot(n * math.sqrt(L["L1"]), (s0, 1), (sx, 1))}
    for label, norm in signals.items():
        terms[f"log(6n^2/delta)/(sigma0 {label})^2"] = _quot(L["L2"], (s0, 2), (norm, 2))
    worst = max(terms, key=terms.get)
    out.append(Condition(
        "assumption.high_dimension", "Assumption 4.1(1), log factors of Lemmas B.2/B.5",
        "d >= max{n^2 log(6n^2/delta), n sqrt(log(6n/delta))/(sigma0 sigma_xi), log(6n^2/delta)/(sigma0 |mu|)^2}",
        f"d >= {_fmt(terms[worst])} ({worst})", f"d = {d}", d >= max(terms.values()),
        {"d": d, **{k: v for k, v in terms.items()}}, True))

    # 4.1(2): eta <= O(min{m/|mu|^2, nm/(sigma^2 d)}), with tau and the constant 1/12 of App. C.2
    # (only |mu|, as stated: the multi-modal signal rates are C_mu eta|mu|^2/(m tau), C_mu a constant)
    bounds = {"n m tau/(12 sigma_xi^2 d)": _quot(C.ETA_FACTOR * n * m * p.tau, (sx, 2), (d, 1)),
              "m tau/(12 |mu|^2)": _quot(C.ETA_FACTOR * m * p.tau, (p.mu, 2))}
    out.append(Condition(
        "assumption.learning_rate", "Assumption 4.1(2), constant of App. C.2",
        "eta <= min{n m tau/(12 sigma_xi^2 d), m tau/(12 |mu|^2)}",
        f"eta <= {_fmt(min(bounds.values()))}", f"eta = {_fmt(p.eta)}", p.eta <= min(bounds.values()),
        {"eta": p.eta, **bounds}, True))

    # 4.1(3): sigma0 <= Õ(1/max{sigma_xi sqrt d, |mu|}) with the constants of Lemma B.4
    s_bounds = {"1/(2 sqrt(log(8mn/delta)) sigma_xi sqrt d)": _quot(1.0, (C.INIT_FACTOR * math.sqrt(L["Lmn"]), 1),
                                                                      (sx, 1), (d, 0.5))}
    for label, norm in signals.items():
        s_bounds[f"1/(2 sqrt(log(8m/delta)) {label})"] = _quot(1.0, (C.INIT_FACTOR * math.sqrt(L["Lm"]), 1), (norm, 1))
    out.append(Condition(
        "assumption.init_scale", "Assumption 4.1(3), constants of Lemma B.4",
        "sigma0 <= 1/(2 sqrt(log(8mn/delta)) sigma_xi sqrt d) and <= 1/(2 sqrt(log(8m/delta)) |mu|)"
        + (" and |mu~|" if p.multi else ""),
        f"sigma0 <= {_fmt(min(s_bounds.values()))}", f"sigma0 = {_fmt(s0)}", s0 <= min(s_bounds.values()),
        {"sigma0": s0, **s_bounds}, True))

    # 4.1(4): m, n >= Ω̃(1), read as the log factors of Lemmas B.3 (labels) and B.4 (neurons)
    out.append(Condition(
        "assumption.width_and_samples", "Assumption 4.1(4), log factors of Lemmas B.3/B.4",
        "n >= log(4/delta) and m >= log(8mn/delta)", f"n >= {_fmt(L['L4'])}, m >= {_fmt(L['Lmn'])}",
        f"n = {n}, m = {m}", n >= L["L4"] and m >= L["Lmn"], {"n": n, "m": m, "n_min": L["L4"], "m_min": L["Lmn"]},
        True))

    if not p.multi:
        # 4.1(5): sigma_eps <= min{Θ̃(|mu|), sigma_xi/Ω̃(1)}, with the log factor of Lemma B.5 on both terms
        root = math.sqrt(2 * L["L1"])
        eps_max = min(p.mu, sx) / root
        out.append(Condition(
            "assumption.augmentation", "Assumption 4.1(5), log factor of Lemma B.5",
            "sigma_eps <= |mu|/sqrt(2 log(6n/delta)) and <= sigma_xi/sqrt(2 log(6n/delta))",
            f"sigma_eps <= {_fmt(eps_max)}", f"sigma_eps = {_fmt(p.sigma_eps)}", p.sigma_eps <= eps_max,
            {"sigma_eps": p.sigma_eps, "bound": eps_max}, True))

    # 4.1(6): n SNR^2 = Θ(1), as the proofs of Lemmas 5.2 / 5.4 use it
    if p.multi:
        ok, req = p.n_snr2 >= C.N_SNR2_MULTI_MIN, f"n SNR^2 >= {C.N_SNR2_MULTI_MIN}"
        src = "Assumption 4.1(6), proof of Lemma 5.4"
    else:
        ok, req = p.n_snr2 <= C.N_SNR2_SINGLE_MAX, f"n SNR^2 <= {C.N_SNR2_SINGLE_MAX}"
        src = "Assumption 4.1(6), proof of Lemma 5.2"
    out.append(Condition("assumption.snr", src, "n SNR^2 = Theta(1), SNR = |mu|/(sigma_xi sqrt d)", req,
                         f"n SNR^2 = {_fmt(p.n_snr2)}", ok, {"snr": p.snr, "n_snr2": p.n_snr2}, True))
    if p.multi:
        out.append(Condition("assumption.c_mu", "Assumption 4.1(7)", "|mu~| = C_mu |mu| with C_mu >= 2.66",
                             f"C_mu >= {C.C_MU_MIN}", f"C_mu = {_fmt(p.c_mu)} (C_mu n SNR^2 = {_fmt(p.c_mu * p.n_snr2)})",
                             p.c_mu >= C.C_MU_MIN, {"c_mu": p.c_mu, "c_mu_n_snr2": p.c_mu * p.n_snr2}, True))
    cfg = p.config
    algo_ok = cfg.optimizer == "gd" and not cfg.redraw_eps
    out.append(Condition("assumption.algorithm", "§4 eq. (7)/(10); §2 (RECON: epsilon drawn once)",
                         "full-batch gradient descent, augmentation noise drawn once per sample",
                         "optimizer = gd, redraw_eps = false",
                         f"optimizer = {cfg.optimizer}, redraw_eps = {str(cfg.redraw_eps).lower()}", algo_ok, {}, True))
    out.append(Condition("assumption.negatives", "§3 eq. (5)/(8): the negatives of an anchor have the opposite label",
                         "every negative pair has opposite labels (read from the stored negative-pair mask)",
                         "opposite-label share = 1",
                         f"opposite-label share = {_fmt(p.opposite_share)} (negative_pairs = {cfg.negative_pairs})",
                         p.opposite_share == 1.0, {"opposite_share": p.opposite_share}, True))

    # §3.3: the OOD test signal overlaps mu only weakly; only the downstream claim needs it
    overlap = p.config.nu_norm * p.mu if p.config.nu_axis == p.config.mu_axis else 0.0
    overlap_max = p.mu**2 / math.sqrt(d)
    out.append(Condition("assumption.test_signal", "§3.3 (test distribution; see typo list §12.7)",
                         "<nu, mu> = O(|mu|^2 d^(-1/2)), read as <nu, mu> <= |mu|^2/sqrt(d)",
                         f"<nu, mu> <= {_fmt(overlap_max)}", f"<nu, mu> = {_fmt(overlap)}", overlap <= overlap_max,
                         {"overlap": overlap, "bound": overlap_max}, True))

    # constants of the proofs (reported as "condition" rows, not gating)
    n_min = (C.N_MIN_MULTI if p.multi else C.N_MIN_SINGLE) * L["L4"]
    out.append(Condition("proof.sample_size", "Lemma D.8" if p.multi else "Lemma C.4",
                         f"n >= {C.N_MIN_MULTI if p.multi else C.N_MIN_SINGLE} log(4/delta)", f"n >= {_fmt(n_min)}",
                         f"n = {n}", n >= n_min, {"n": n, "n_min": n_min}, False))
    d_min = max(C.D_MIN_CONST * L["L2"], n * n * L["L2"])
    out.append(Condition("proof.dimension", "§6", "d > 10000 log(6n^2/delta) and d > n^2 log(6n^2/delta)",
                         f"d > {_fmt(d_min)}", f"d = {d}", d > d_min, {"d": d, "d_min": d_min}, False))
    x = C.DELTA**2 / (4 * m * m)
    anti = _quot(C.ANTI_CONCENTRATION * n * math.sqrt(L["L1"] / (-math.pi * math.log1p(-x))), (s0, 1), (sx, 1))
    out.append(Condition("proof.anti_concentration", "Lemma B.2",
                         "d >= (400 n/(sigma0 sigma_xi)) sqrt(log(6n/delta)/(-pi log(1 - delta^2/(4 m^2))))",
                         f"d >= {_fmt(anti)}", f"d = {d}", d >= anti, {"d": d, "d_min": anti}, False))
    neg_min = C.NEGATIVES_FACTOR * C.C_ELL - 1
    out.append(Condition("proof.negatives", "App. C.2, Lemma D.8 (C_ell = 1.01)", "M >= 100 C_ell - 1",
                         f"M >= {_fmt(neg_min)}", f"M = {_fmt(p.M)}", p.M >= neg_min, {"M": p.M, "M_min": neg_min},
                         False))
    if not p.multi:
        out.append(Condition("proof.augmentation", "Lemma C.5/C.11 (C_xi > 200)", "sigma_eps <= sigma_xi / C_xi",
                             f"sigma_eps <= {_fmt(sx / C.C_XI)}", f"sigma_eps = {_fmt(p.sigma_eps)}",
                             p.sigma_eps <= sx / C.C_XI, {"sigma_eps": p.sigma_eps, "bound": sx / C.C_XI}, False))
    return out


def hypotheses_status(p: Params) -> dict[str, bool]:
    """Gating condition name → met."""
    return {c.name: c.met for c in conditions(p) if c.gating}
