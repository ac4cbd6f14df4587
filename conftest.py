"""Names available to the docstring examples run by ``pytest --doctest-modules dyn``."""

import numpy as np
import pytest
import torch

import dyn


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(dyn=dyn, torch=torch, np=np)
