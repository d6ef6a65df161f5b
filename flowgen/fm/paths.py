"""Affine probability paths ``x_t = alpha_t x_1 + sigma_t x_0`` (the single time convention).

Convention (used everywhere in flowgen): ``x_0 ~ p_0`` is noise at ``t = 0`` and ``x_1 ~ p_1`` is
data at ``t = 1``. The conditional velocity is ``dx_t = alpha'_t x_1 + sigma'_t x_0``
(Lipman et al. 2023, "Flow Matching for Generative Modeling", eq. 20-21, with their time
reversed to ours; Liu et al. 2023 rectified flow is the linear case).

Paths: linear/rectified (optional ``sigma_min`` as in conditional OT and FlowSep), cosine
(variance preserving, ``alpha^2 + sigma^2 = 1``), VP-SDE (Song et al. 2021 beta schedule) and
polynomial ``alpha_t = t^n``. Converters move between velocity, x_1- and noise-prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flowgen.errors import InputError


@dataclass(frozen=True)
class PathSample:
    """A point on the path: endpoints, time ``(B,)``, ``x_t`` and the target velocity ``dx_t``."""

    x_0: torch.Tensor
    x_1: torch.Tensor
    t: torch.Tensor
    x_t: torch.Tensor
    dx_t: torch.Tensor


def expand_like(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a time ``()`` or ``(B,)`` against ``x`` of shape ``(B, ...)``."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise InputError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (x.ndim - 1)))


class AffinePath:
    """Base class: subclasses define ``alpha(t)``, ``sigma(t)`` and their derivatives."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, x_0: torch.Tensor, x_1: torch.Tensor, t: torch.Tensor) -> PathSample:
        """``x_t`` and ``dx_t`` for paired ``x_0`` (noise) and ``x_1`` (data) at times ``t (B,)``."""
        if x_0.shape != x_1.shape:
            raise InputError(f"x_0 {tuple(x_0.shape)} and x_1 {tuple(x_1.shape)} must match")
        if torch.is_tensor(t) and t.numel() and (t.min() < 0 or t.max() > 1):
            raise InputError("t must lie in [0, 1] (t=0 noise, t=1 data)")
        tt = expand_like(t, x_1)
        x_t = self.alpha(tt) * x_1 + self.sigma(tt) * x_0
        dx_t = self.d_alpha(tt) * x_1 + self.d_sigma(tt) * x_0
        return PathSample(x_0=x_0, x_1=x_1, t=torch.as_tensor(t), x_t=x_t, dx_t=dx_t)

    # --- converters between parameterisations (singular where the 2x2 system is) -------------
    def _det(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t) * self.d_alpha(t) - self.alpha(t) * self.d_sigma(t)

    def velocity_to_x1(self, v_t: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        tt = expand_like(t, x_t)
        return (self.sigma(tt) * v_t - self.d_sigma(tt) * x_t) / self._det(tt)

    def velocity_to_noise(self, v_t: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        tt = expand_like(t, x_t)
        return (self.d_alpha(tt) * x_t - self.alpha(tt) * v_t) / self._det(tt)

    def x1_to_velocity(self, x_1: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """Needs ``sigma_t > 0`` (not at t = 1 without sigma_min)."""
        tt = expand_like(t, x_t)
        x_0 = (x_t - self.alpha(tt) * x_1) / self.sigma(tt)
        return self.d_alpha(tt) * x_1 + self.d_sigma(tt) * x_0

    def noise_to_velocity(self, x_0: torch.Tensor, x_t: torch.Tensor, t) -> torch.Tensor:
        """Needs ``alpha_t > 0`` (not at t = 0)."""
        tt = expand_like(t, x_t)
        x_1 = (x_t - self.sigma(tt) * x_0) / self.alpha(tt)
        return self.d_alpha(tt) * x_1 + self.d_sigma(tt) * x_0


@dataclass(frozen=True)
class LinearPath(AffinePath):
    """Rectified flow / conditional OT: ``x_t = t x_1 + (1 - (1 - sigma_min) t) x_0``.

    ``sigma_min = 0`` gives rectified flow with target ``x_1 - x_0``; ``sigma_min > 0`` is
    Lipman et al.'s conditional-OT path (eq. 22), also used by FlowSep.
    """

    sigma_min: float = 0.0

    def alpha(self, t):
        return t

    def sigma(self, t):
        return 1 - (1 - self.sigma_min) * t

    def d_alpha(self, t):
        return torch.ones_like(t)

    def d_sigma(self, t):
        return torch.full_like(t, -(1 - self.sigma_min))


@dataclass(frozen=True)
class CosinePath(AffinePath):
    """Variance-preserving cosine path: ``alpha_t = sin(pi t / 2)``, ``sigma_t = cos(pi t / 2)``."""

    def alpha(self, t):
        return torch.sin(0.5 * math.pi * t)

    def sigma(self, t):
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t):
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_sigma(self, t):
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


@dataclass(frozen=True)
class VPPath(AffinePath):
    """VP-SDE path (Song et al. 2021; Lipman et al. 2023 eq. 19 with t reversed).

    ``alpha_t = exp(-T(1 - t) / 2)``, ``sigma_t = sqrt(1 - alpha_t^2)``,
    ``T(s) = beta_min s + (beta_max - beta_min) s^2 / 2``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def _T(self, s):
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def _beta(self, s):
        return self.beta_min + (self.beta_max - self.beta_min) * s

    def alpha(self, t):
        return torch.exp(-0.5 * self._T(1 - t))

    def sigma(self, t):
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0))

    def d_alpha(self, t):
        return 0.5 * self._beta(1 - t) * self.alpha(t)

    def d_sigma(self, t):
        a = self.alpha(t)
        return -a * self.d_alpha(t) / self.sigma(t).clamp_min(1e-12)


@dataclass(frozen=True)
class PolynomialPath(AffinePath):
    """Polynomial convex path: ``alpha_t = t^n``, ``sigma_t = 1 - t^n`` (n = 1 is rectified)."""

    n: float = 2.0

    def __post_init__(self):
        if self.n <= 0:
            raise InputError(f"PolynomialPath needs n > 0, got {self.n}")

    def alpha(self, t):
        return t**self.n

    def sigma(self, t):
        return 1 - t**self.n

    def d_alpha(self, t):
        return self.n * t ** (self.n - 1)

    def d_sigma(self, t):
        return -self.n * t ** (self.n - 1)
