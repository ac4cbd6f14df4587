"""Downstream evaluation: a linear probe on the learned embedding (Huang et al. 2024, §3.3 and §6).

Two protocols, because the paper's words admit two readings:

- ``"paper"`` (the default): "we perform logistic regression based on the learned features h(x_test) and apply
  the learned classifier head to evaluate OOD generalization" (§6). The head is fitted on the OOD embeddings
  h(x_test) themselves and scored on held-out parts of them (stratified k-fold cross-validation), so it measures
  whether the OOD data are linearly separable in the learned features — what Theorems 4.2/4.3 bound.
- ``"transfer"``: fitted on the embeddings of the in-distribution training inputs, scored on the OOD inputs. It also
  asks the head to transfer from ``[yμ, ξ]`` to ``[yν, ζ]``; it reads lower (single-modal 0.60 vs 0.72 at the
  paper's size).

``dyn train`` logs ``probe_acc`` (paper protocol) and ``probe_acc_transfer``; ``dyn reproduce figure1`` shows both.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ...errors import ConfigError

__all__ = ["probe_accuracy", "ood_probe_accuracy", "PROTOCOLS", "DEFAULT_PROTOCOL"]

#: The probe protocols, by name.
PROTOCOLS = ("paper", "transfer")
#: The protocol ``probe_acc`` uses.
DEFAULT_PROTOCOL = "paper"
#: Folds of the paper protocol's cross-validation on h(x_test).
FOLDS = 5


def _host(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _fit_score(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, c: float) -> float:
    if len(np.unique(ytr)) < 2:
        return float(np.mean(yte == ytr[0]))
    mean, scale = xtr.mean(0), xtr.std(0)
    scale[scale == 0] = 1.0
    head = LogisticRegression(C=c, max_iter=2000)
    head.fit((xtr - mean) / scale, ytr)
    return float(head.score((xte - mean) / scale, yte))


def probe_accuracy(train_features, train_labels, test_features, test_labels, *, c: float = 1.0) -> float:
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
    return _fit_score(_host(train_features), _host(train_labels), _host(test_features), _host(test_labels), c)


def ood_probe_accuracy(test_features, test_labels, *, protocol: str = DEFAULT_PROTOCOL, train_features=None,
                       train_labels=None, c: float = 1.0, folds: int = FOLDS, seed: int = 0) -> float:
    """OOD accuracy of a linear head on the learned features, by ``protocol`` (see the module docstring).

    Parameters
    ----------
    test_features, test_labels : h(x_test) ``(n_test, m)`` and the OOD labels.
    protocol : ``"paper"`` (cross-validated on h(x_test)) or ``"transfer"`` (fitted on h(x_train)).
    train_features, train_labels : h(x_train) and its labels, for ``"transfer"``.
    c : inverse regularisation of the logistic regression.
    folds, seed : cross-validation of the paper protocol (fewer folds when a class has fewer samples).

    Raises
    ------
    ConfigError
        Unknown protocol, or ``"transfer"`` without training features.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.choice([-1, 1], 200)
    >>> x = y[:, None] * np.array([1.0, 0.0]) + rng.normal(0, 0.3, (200, 2))
    >>> ood_probe_accuracy(x, y) > 0.95
    True
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"probe protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    xte, yte = _host(test_features), _host(test_labels)
    if protocol == "transfer":
        if train_features is None or train_labels is None:
            raise ConfigError("the transfer probe protocol needs train_features and train_labels")
        return _fit_score(_host(train_features), _host(train_labels), xte, yte, c)
    smallest = int(min(np.sum(yte == v) for v in np.unique(yte)))
    k = min(folds, smallest)
    if len(np.unique(yte)) < 2 or k < 2:
        return float(np.mean(yte == yte[0]))
    correct = 0
    for train, held_out in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(xte, yte):
        correct += _fit_score(xte[train], yte[train], xte[held_out], yte[held_out], c) * len(held_out)
    return float(correct / len(yte))
