"""The OOD probe's two protocols (issue 9, item 7): the paper's (a head on h(x_test), held-out folds) by default,
and the transfer reading (a head fitted on h(x_train)); both logged by training and drawn by figure1."""

from __future__ import annotations

import numpy as np
import pytest

import dyn
from dyn.setups.huang2024.probe import DEFAULT_PROTOCOL, ood_probe_accuracy


def test_the_two_protocols_answer_different_questions():
    """Test features separable by a direction the training features do not use: the paper's protocol (fitted on
    the test features) finds it, the transfer protocol (fitted on the training features) does not."""
    rng = np.random.default_rng(0)
    y_train, y_test = rng.choice([-1, 1], 200), rng.choice([-1, 1], 200)
    train = np.column_stack([y_train + rng.normal(0, 0.3, 200), rng.normal(0, 1, 200)])
    test = np.column_stack([rng.normal(0, 1, 200), y_test + rng.normal(0, 0.3, 200)])
    paper = ood_probe_accuracy(test, y_test)
    transfer = ood_probe_accuracy(test, y_test, protocol="transfer", train_features=train, train_labels=y_train)
    assert DEFAULT_PROTOCOL == "paper" and paper > 0.95 and transfer < 0.7
    with pytest.raises(dyn.ConfigError, match="protocol must be one of"):
        ood_probe_accuracy(test, y_test, protocol="nope")
    with pytest.raises(dyn.ConfigError, match="needs train_features"):
        ood_probe_accuracy(test, y_test, protocol="transfer")


def test_training_logs_both_protocols(tmp_path):
    path = tmp_path / "r.zarr"
    dyn.train(dyn.load_preset("huang2024-tiny", steps=10), path, evaluate_every=5)
    run = dyn.Run(path)
    paper, transfer = run.scalar("probe_acc"), run.scalar("probe_acc_transfer")
    evaluated = np.isfinite(paper)
    assert evaluated.sum() == 3 and np.array_equal(evaluated, np.isfinite(transfer))
    assert np.all((paper[evaluated] >= 0) & (paper[evaluated] <= 1))
