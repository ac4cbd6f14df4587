"""Contrastive objectives of Huang et al. 2024: patch-wise stop-gradient similarity and InfoNCE.

``Sim(x, x') = (1/m) Σ_r Σ_p h_r(x⁽ᵖ⁾) · sg(h_r(x'⁽ᵖ⁾))`` (eq. 4): signal patch with signal patch, noise patch with
noise patch, gradient only through the anchor. The single-modal loss (eq. 6) contrasts the augmented view against
M opposite-label negatives; the multi-modal loss (eq. 9) is the sum of the two modality-centred InfoNCE terms.

All functions take per-patch features ``(N, P, m)`` as produced by
:meth:`dyn.models.PatchReLUEncoder.patch_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "patch_similarity",
    "paired_similarity",
    "info_nce",
    "single_modal_loss",
    "multi_modal_loss",
    "ContrastiveLoss",
]


def patch_similarity(anchor: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """All-pairs similarity ``S[i, j] = Sim(anchor_i, partner_j)`` with stop-gradient on the partner (eq. 4).

    Examples
    --------
    >>> f = torch.rand(3, 2, 4)
    >>> torch.allclose(patch_similarity(f, f).diagonal(), paired_similarity(f, f))
    True
    """
    m = anchor.shape[-1]
    return torch.einsum("ipr,jpr->ij", anchor, partner.detach()) / m


def paired_similarity(anchor: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Row-wise similarity ``s[i] = Sim(anchor_i, partner_i)`` with stop-gradient on the partner (eq. 4)."""
    m = anchor.shape[-1]
    return (anchor * partner.detach()).sum(dim=(-2, -1)) / m


@dataclass
class ContrastiveLoss:
    """A loss value and the loss derivatives the theory tracks.

    Attributes
    ----------
    loss : scalar tensor (differentiable).
    lp_pos : (n,) detached ``ℓ'_i``, the softmax weight of the positive pair (eq. 8).
    lp_neg_min, lp_neg_max : detached scalars, extreme ``ℓ'_{i,j}`` over anchors and their negatives.
    """

    loss: torch.Tensor
    lp_pos: torch.Tensor
    lp_neg_min: torch.Tensor
    lp_neg_max: torch.Tensor

    def scalars(self) -> dict[str, torch.Tensor]:
        """Per-step scalars to log: loss and the ℓ' band (for detecting the end of stage 1)."""
        return {
            "loss": self.loss.detach(),
            "lp_pos_min": self.lp_pos.min(),
            "lp_pos_max": self.lp_pos.max(),
            "lp_neg_min": self.lp_neg_min,
            "lp_neg_max": self.lp_neg_max,
        }


def info_nce(
    pos: torch.Tensor,
    neg: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    anchors: torch.Tensor | None = None,
) -> ContrastiveLoss:
    """InfoNCE with one positive and a masked set of negatives per anchor.

    ``L = -(1/|A|) Σ_{i∈A} log( e^{pos_i/τ} / (e^{pos_i/τ} + Σ_{j: negatives[i,j]} e^{neg_ij/τ}) )``.

    Parameters
    ----------
    pos : (n,) positive-pair similarities.
    neg : (n, n) anchor-to-candidate similarities.
    negatives : (n, n) bool mask of which candidates are negatives of each anchor.
    tau : temperature τ.
    anchors : optional (b,) index tensor: average over these anchors only (minibatch SGD).

    Examples
    --------
    >>> out = info_nce(torch.zeros(2), torch.zeros(2, 2), torch.tensor([[0, 1], [1, 0]], dtype=torch.bool), 0.1)
    >>> round(float(out.loss), 4)  # log(1 + M) with M = 1
    0.6931
    """
    if anchors is not None:
        pos, neg, negatives = pos[anchors], neg[anchors], negatives[anchors]
    logits = torch.cat([(pos / tau)[:, None], (neg / tau).masked_fill(~negatives, float("-inf"))], dim=1)
    log_norm = torch.logsumexp(logits, dim=1)
    loss = (log_norm - logits[:, 0]).mean()
    with torch.no_grad():
        probs = torch.exp(logits - log_norm[:, None])
        neg_probs = probs[:, 1:]
        big = torch.finfo(probs.dtype).max
        return ContrastiveLoss(
            loss=loss,
            lp_pos=probs[:, 0],
            lp_neg_min=neg_probs.masked_fill(~negatives, big).min(),
            lp_neg_max=neg_probs.masked_fill(~negatives, -big).max(),
        )


def single_modal_loss(
    features: torch.Tensor,
    augmented: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    anchors: torch.Tensor | None = None,
) -> ContrastiveLoss:
    """Single-modal InfoNCE (eq. 6): positive ``Sim(x_i, x̂_i)``, negatives ``Sim(x_i, x_j)``, ``y_j ≠ y_i``.

    Parameters
    ----------
    features : (n, 2, m) patch features of the anchors x_i.
    augmented : (n, 2, m) patch features of the positive views x̂_i.
    negatives : (n, n) bool mask.
    tau : temperature.
    anchors : optional minibatch of anchor indices.
    """
    return info_nce(paired_similarity(features, augmented), patch_similarity(features, features), negatives, tau, anchors)


def multi_modal_loss(
    features: torch.Tensor,
    features_tilde: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    anchors: torch.Tensor | None = None,
) -> ContrastiveLoss:
    """Symmetric multi-modal InfoNCE (eq. 9): the h-centred term plus the g-centred term.

    The reported ℓ' band spans both terms ("a slight abuse of notation", as the paper says).
    """
    hg = info_nce(paired_similarity(features, features_tilde), patch_similarity(features, features_tilde), negatives, tau, anchors)
    gh = info_nce(paired_similarity(features_tilde, features), patch_similarity(features_tilde, features), negatives, tau, anchors)
    return ContrastiveLoss(
        loss=hg.loss + gh.loss,
        lp_pos=torch.cat([hg.lp_pos, gh.lp_pos]),
        lp_neg_min=torch.minimum(hg.lp_neg_min, gh.lp_neg_min),
        lp_neg_max=torch.maximum(hg.lp_neg_max, gh.lp_neg_max),
    )
