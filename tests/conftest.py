"""Fixtures shared by every test directory; helper functions live in fctest.py."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
