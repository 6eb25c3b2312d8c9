"""Fixtures shared by several test modules."""

import jax
import pytest


@pytest.fixture
def x64():
    """float64 in JAX for one test; the previous setting is restored after."""
    with jax.enable_x64(True):
        yield

