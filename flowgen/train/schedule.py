"""Learning-rate schedule: linear warmup, then cosine decay (Loshchilov & Hutter 2017, eq. 5).

The factor multiplying the base learning rate at optimizer step ``s`` (0-based) is::

    s < W:       (s + 1) / W
    otherwise:   r + (1 - r) * (1 + cos(pi * min(1, (s - W) / max(1, S - W)))) / 2

with ``W`` warmup steps, ``S`` total steps and ``r = min_lr_ratio``. The schedule is a pure
function of the step, so resuming only needs the step.
"""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, *, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate at 0-based optimizer step ``step``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, warmup: int, total: int, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor`; call ``step()`` once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=warmup, total=total, min_ratio=min_ratio)
    )
