"""Shared fixtures: generated data and small exported models of every cell type."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ONNX = ROOT / "models" / "intent.onnx"
DEFAULT_CKPT = ROOT / "models" / "intent.pt"

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def splits():
    """The generated train/val/test splits (seed 13)."""
    from export.data import generate

    return generate(seed=13)
