"""Helpers for the vision tests: tiny idx.gz files and class folders written into tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

REAL_FMNIST = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[2]


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file of unsigned bytes: magic 0x0000 08 D, D big-endian sizes, the data."""
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fmnist(root: Path, split: str = "train", n: int = 12, seed: int = 0, gz: bool = True):
    """Write a tiny Fashion-MNIST split; returns (images (n, 28, 28) uint8, labels (n,))."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    root.mkdir(parents=True, exist_ok=True)
    for name, array in (
        (f"{prefix}-images-idx3-ubyte", images),
        (f"{prefix}-labels-idx1-ubyte", labels),
    ):
        data = idx_bytes(array)
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return images, labels
