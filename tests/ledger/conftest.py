"""Shared fixtures for the ledger tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# The shared test vectors live next to the repository: /work/shared/testvectors.
VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "testvectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    # Missing vectors are a failure, not a skip: the known-answer tests are the point.
    assert VECTORS.is_dir(), f"test vectors not found at {VECTORS}"
    return VECTORS
