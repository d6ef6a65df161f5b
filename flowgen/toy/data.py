"""2-D toy distributions, following the construction used by torchcfm / C2OT.

- ``eight_gaussians``: 8 isotropic Gaussians on a circle of radius 5, covariance sqrt(0.1) I.
- ``moons``: two half circles (the torchdyn construction: one uniform offset U(0, 0.2) added to
  both coordinates), scaled by 3 and shifted by -1; labels 0 (outer) / 1 (inner).
- ``standard_normal``: N(0, I).

Every sampler takes an explicit ``torch.Generator`` so a batch is a pure function of its seed.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from flowgen.errors import InputError

Distribution = Literal["normal", "8gaussians", "moons"]
DISTRIBUTIONS: tuple[str, ...] = ("normal", "8gaussians", "moons")


def standard_normal(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator)


def eight_gaussians(
    n: int, generator: torch.Generator | None = None, *, scale: float = 5.0, var: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``(n, 2)`` and their mode index ``(n,)``; covariance is ``sqrt(var) I`` as in torchcfm."""
    angles = torch.arange(8) * (math.pi / 4)
    centers = scale * torch.stack([angles.cos(), angles.sin()], dim=1)  # (8, 2)
    mode = torch.randint(0, 8, (n,), generator=generator)
    noise = torch.randn(n, 2, generator=generator) * var**0.25
    return centers[mode] + noise, mode


def moons(
    n: int, generator: torch.Generator | None = None, *, noise: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``(n, 2)`` and moon labels ``(n,)`` (0 outer, 1 inner)."""
    label = torch.randint(0, 2, (n,), generator=generator)
    theta = torch.rand(n, generator=generator) * math.pi
    outer = torch.stack([theta.cos(), theta.sin()], dim=1)
    inner = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where(label[:, None] == 0, outer, inner)
    x = x + torch.rand(n, 1, generator=generator) * noise
    return x * 3 - 1, label


def sample(
    name: str, n: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw ``n`` points of a named distribution; returns ``(x, labels or None)``."""
    if name == "normal":
        return standard_normal(n, generator), None
    if name == "8gaussians":
        return eight_gaussians(n, generator)
    if name == "moons":
        return moons(n, generator)
    raise InputError(f"unknown toy distribution {name!r}; choose one of {list(DISTRIBUTIONS)}")
