"""Fixtures shared by the tests/test_huang2025_*.py files (to fold into tests/conftest.py when integrated)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny problems run fastest on one thread, and do not fight other jobs for the cores (with two threads on a
    loaded machine a 300-step tiny run took 8 s instead of 0.3 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
