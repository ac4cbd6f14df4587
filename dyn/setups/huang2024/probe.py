"""Downstream evaluation: a linear probe on the learned embedding (Huang et al. 2024, §3.3).

The head is a logistic regression fitted on the embeddings of the in-distribution training inputs and evaluated
on the OOD test inputs ``[yν, ζ]``: high accuracy means the encoder learned the signal direction (which carries
over to ν ∥ μ), chance accuracy means it memorized noise (which does not carry over).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

__all__ = ["probe_accuracy"]


def probe_accuracy(
    train_features: np.ndarray | torch.Tensor,
    train_labels: np.ndarray | torch.Tensor,
    test_features: np.ndarray | torch.Tensor,
    test_labels: np.ndarray | torch.Tensor,
    *,
    c: float = 1.0,
) -> float:
    """Accuracy on the test set of a logistic-regression head fitted on the training features.

    Features are standardised with the training mean and scale first (columns that never vary are left at 0).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.choice([-1, 1], 200)
    >>> x = y[:, None] * np.array([1.0, 0.0]) + rng.normal(0, 0.3, (200, 2))
    >>> probe_accuracy(x[:100], y[:100], x[100:], y[100:]) > 0.95
    True
    """

    def host(a):
        return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)

    xtr, ytr, xte, yte = (host(a).astype(np.float64) for a in (train_features, train_labels, test_features, test_labels))
    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0]))
    mean, scale = xtr.mean(0), xtr.std(0)
    scale[scale == 0] = 1.0
    head = LogisticRegression(C=c, max_iter=2000)
    head.fit((xtr - mean) / scale, ytr)
    return float(head.score((xte - mean) / scale, yte))
