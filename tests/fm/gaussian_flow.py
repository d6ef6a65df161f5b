"""A flow with closed-form marginal velocity, flow map and density, shared by the fm tests.

x_0 ~ N(0, I), y ~ N(0, diag(s^2)), x_1 = mu + R y with a rotation R (none unless an angle is
given, 2-D; without one every formula is elementwise, so mu and s may be any broadcastable
tensors, e.g. a per-sample "condition"), linear path x_t = (1 - t) x_0 + t x_1 with independent coupling. The marginals are
N(t mu, R diag(sigma_t^2) R^T), sigma_t^2 = (1 - t)^2 + t^2 s^2, the marginal velocity is
v(x, t) = mu + R diag(sigma_t' / sigma_t) R^T (x - t mu), sigma_t' = (t s^2 - (1 - t)) / sigma_t,
and the flow map is x_t = t mu + R diag(sigma_t) R^T x_0. A rotation makes the Jacobian
non-diagonal (so Rademacher probes are not trivially exact).
"""

from __future__ import annotations

import math

import torch

from flowgen.fm.paths import expand_like


class GaussianFlow:
    def __init__(self, mu, s, *, angle: float | None = None):
        self.mu = torch.as_tensor(mu, dtype=torch.float64)
        self.s = torch.as_tensor(s, dtype=torch.float64)
        self.R = None
        if angle is not None:
            c, s_ = math.cos(angle), math.sin(angle)
            self.R = torch.tensor([[c, -s_], [s_, c]], dtype=torch.float64)

    def _params(self, x: torch.Tensor):
        return self.mu.to(x), self.s.to(x)

    @staticmethod
    def _time(t, x: torch.Tensor) -> torch.Tensor:
        return expand_like(t, x)  # () or (B,) against (B, ...)

    def _apply(self, y: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
        """R diag R^T applied to the rows of y (elementwise without a rotation)."""
        if self.R is None:
            return y * diag
        R = self.R.to(y)
        return ((y @ R) * diag) @ R.T

    def sigma(self, t) -> torch.Tensor:
        t = torch.as_tensor(t)
        s = self.s.to(t) if t.is_floating_point() else self.s
        return ((1 - t) ** 2 + t**2 * s**2).sqrt()

    def velocity(self, x: torch.Tensor, t) -> torch.Tensor:
        mu, s = self._params(x)
        t = self._time(t, x)
        rate = (t * s**2 - (1 - t)) / ((1 - t) ** 2 + t**2 * s**2)
        return mu + self._apply(x - t * mu, rate)

    def flow(self, x_0: torch.Tensor, t=1.0) -> torch.Tensor:
        mu, s = self._params(x_0)
        t = self._time(t, x_0)
        return t * mu + self._apply(x_0, ((1 - t) ** 2 + t**2 * s**2).sqrt())

    def inverse(self, x_1: torch.Tensor) -> torch.Tensor:
        """The noise x_0 that the flow maps to x_1."""
        mu, s = self._params(x_1)
        return self._apply(x_1 - mu, 1 / s)

    def rectified(self, x: torch.Tensor, t) -> torch.Tensor:
        """The exact 1-rectified field of the coupling (x_0, flow(x_0)): straight lines."""
        mu, s = self._params(x)
        t = self._time(t, x)
        x_0 = self._apply(x - t * mu, 1 / (1 - t + t * s))
        return mu + self._apply(x_0, s - 1)

    def log_prob_1(self, x: torch.Tensor) -> torch.Tensor:
        mu, s = self._params(x)
        y = x - mu if self.R is None else (x - mu) @ self.R.to(x)
        return (-0.5 * (y / s) ** 2 - s.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample_1(self, n: int, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(n, self.mu.shape[-1], generator=generator, dtype=torch.float64)
        return (self.mu + self._apply(noise, self.s)).float()
