"""Time: training-time samplers for ``t ~ p(t)`` and inference time grids on [0, 1].

Convention: t = 0 noise, t = 1 data. "Shift" follows SD3 (Esser et al. 2024, eq. 23), written in
our time: with noise level ``s = 1 - t``, ``s' = shift * s / (1 + (shift - 1) s)``; ``shift > 1``
spends more time near the noise end. "Sway" follows F5-TTS (Chen et al. 2024, eq. 6):
``t' = t + coef * (cos(pi t / 2) - 1 + t)``; ``coef < 0`` concentrates steps near t = 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from flowgen.errors import InputError


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 resolution shift in our convention; identity at ``shift = 1``."""
    if shift <= 0:
        raise InputError(f"shift must be > 0, got {shift}")
    s = 1 - t
    return 1 - shift * s / (1 + (shift - 1) * s)


def sway_time(t: torch.Tensor, coef: float = -1.0) -> torch.Tensor:
    """F5-TTS sway sampling; keeps 0 -> 0 and 1 -> 1 and is monotone for ``coef`` in [-1, 1]."""
    if not -1.0 <= coef <= 1.0:
        raise InputError(
            f"sway coefficient must lie in [-1, 1] to keep the grid monotone, got {coef}"
        )
    return t + coef * (torch.cos(0.5 * math.pi * t) - 1 + t)


# --- training-time samplers -------------------------------------------------------------------
def uniform_t(n: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """``t ~ U[0, 1]``, shape ``(n,)``."""
    return torch.rand(n, generator=generator, device=device)


def logit_normal_t(
    n: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """``t = sigmoid(N(mean, std^2))`` (SD3 eq. 19), shape ``(n,)``."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))


def shifted_t(
    n: int, *, shift: float = 3.0, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Uniform ``t`` pushed through :func:`shift_time`."""
    return shift_time(uniform_t(n, generator=generator, device=device), shift)


def sample_t(
    n: int,
    kind: str = "uniform",
    *,
    generator: torch.Generator | None = None,
    device=None,
    **params: float,
) -> torch.Tensor:
    """Dispatch by name: ``uniform``, ``logit_normal`` (mean, std) or ``shifted`` (shift)."""
    samplers = {"uniform": uniform_t, "logit_normal": logit_normal_t, "shifted": shifted_t}
    if kind not in samplers:
        raise InputError(f"unknown time sampler {kind!r}; choose one of {sorted(samplers)}")
    try:
        return samplers[kind](n, generator=generator, device=device, **params)
    except TypeError as err:
        raise InputError(f"bad parameters {params} for time sampler {kind!r}: {err}") from err


# --- inference grids ------------------------------------------------------------------------
def uniform_grid(steps: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``steps + 1`` equally spaced points from 0 to 1."""
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    return torch.linspace(0, 1, steps + 1, device=device, dtype=dtype)


def shifted_grid(steps: int, shift: float = 3.0, **kw) -> torch.Tensor:
    return shift_time(uniform_grid(steps, **kw), shift)


def sway_grid(steps: int, coef: float = -1.0, **kw) -> torch.Tensor:
    return sway_time(uniform_grid(steps, **kw), coef)


def custom_grid(
    points: Sequence[float] | torch.Tensor, *, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Validate a user grid: 1-D, at least 2 points, strictly monotone, inside [0, 1]."""
    grid = torch.as_tensor(points, device=device, dtype=dtype)
    check_grid(grid)
    return grid


def check_grid(grid: torch.Tensor) -> None:
    if grid.ndim != 1 or grid.numel() < 2:
        raise InputError(f"a time grid needs shape (N+1,) with N >= 1, got {tuple(grid.shape)}")
    if not torch.isfinite(grid).all() or grid.min() < 0 or grid.max() > 1:
        raise InputError(
            f"time grid values must lie in [0, 1] (t=0 noise, t=1 data): {grid.tolist()}"
        )
    d = grid.diff()
    if not ((d > 0).all() or (d < 0).all()):
        raise InputError(f"time grid must be strictly monotone: {grid.tolist()}")


def time_grid(steps: int, kind: str = "uniform", **params: float) -> torch.Tensor:
    """Dispatch by name: ``uniform``, ``shifted`` (shift) or ``sway`` (coef)."""
    grids = {"uniform": uniform_grid, "shifted": shifted_grid, "sway": sway_grid}
    if kind not in grids:
        raise InputError(f"unknown time grid {kind!r}; choose one of {sorted(grids)}")
    return grids[kind](steps, **params)
