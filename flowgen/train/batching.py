"""Deterministic global batches: the batch of step ``k`` is a pure function of ``(seed, k)``.

Every optimizer step builds the *global* batch from a fresh ``torch.Generator`` seeded with
``derive_seed(seed, "batch", k)``; process ``r`` of ``P`` takes rows ``[r B/P, (r+1) B/P)`` and
splits them into ``grad_accum`` equal micro-batches. Since the task's loss is a per-sample mean
and all micro-batches have the same size, ``DDP's mean over processes`` of ``accelerate's
loss / grad_accum`` sums is exactly the full-batch gradient, so any process count and
accumulation give the same trajectory (up to float summation order), and resuming needs no
data-loader state.

Shapes: ``B`` global batch, ``P`` processes, ``A`` micro-batches per step; a micro-batch has
``B / (P A)`` rows.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

Batch = dict[str, Any]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from ints and strings, the same in every process and Python run."""
    text = "/".join(str(p) for p in parts).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator a task draws the global batch of ``step`` from."""
    return torch.Generator().manual_seed(derive_seed(seed, "batch", step))


def batch_rows(batch: Batch) -> int:
    """The common first dimension of a batch's values; ValueError if they disagree."""
    sizes = {k: len(v) for k, v in batch.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"batch values must share their first dimension, got sizes {sizes}")
    return next(iter(sizes.values()))


def take_rows(batch: Batch, start: int, stop: int) -> Batch:
    """Rows ``[start, stop)`` of every value (tensors and lists alike)."""
    return {k: v[start:stop] for k, v in batch.items()}


def rank_slice(batch: Batch, rank: int, world: int) -> Batch:
    """Process ``rank``'s contiguous share ``(B / P rows)`` of the global batch."""
    rows = batch_rows(batch)
    if rows % world:
        raise ValueError(f"global batch of {rows} rows does not split over {world} processes")
    share = rows // world
    return take_rows(batch, rank * share, (rank + 1) * share)


def micro_batches(batch: Batch, count: int) -> list[Batch]:
    """Split a process's share into ``count`` equal micro-batches, in order."""
    rows = batch_rows(batch)
    if rows % count:
        raise ValueError(f"{rows} rows do not split into {count} equal micro-batches")
    size = rows // count
    return [take_rows(batch, i * size, (i + 1) * size) for i in range(count)]


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }
