"""A flow with a closed-form marginal velocity, shared by the fm tests.

x_0 ~ N(0, I), x_1 ~ N(mu, diag(s^2)) independent, linear path x_t = (1 - t) x_0 + t x_1.
Marginals are N(t mu, sigma_t^2) with sigma_t^2 = (1 - t)^2 + t^2 s^2; the marginal velocity is
v(x, t) = mu + (sigma_t' / sigma_t) (x - t mu) and the flow map is x_t = t mu + sigma_t x_0.
"""

from __future__ import annotations

import torch


class GaussianFlow:
    def __init__(self, mu: torch.Tensor, s: torch.Tensor):
        self.mu, self.s = mu, s

    def sigma(self, t):
        return torch.sqrt((1 - t) ** 2 + t**2 * self.s**2)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype)
        sig2 = (1 - t) ** 2 + t**2 * self.s.to(x.dtype) ** 2
        rate = (t * self.s.to(x.dtype) ** 2 - (1 - t)) / sig2
        mu = self.mu.to(x.dtype)
        return mu + rate * (x - t * mu)

    def flow(self, x_0: torch.Tensor, t: float = 1.0) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x_0.dtype)
        return t * self.mu.to(x_0.dtype) + self.sigma(t).to(x_0.dtype) * x_0

    def log_prob_1(self, x: torch.Tensor) -> torch.Tensor:
        return (
            torch.distributions.Normal(self.mu.to(x.dtype), self.s.to(x.dtype)).log_prob(x).sum(-1)
        )
