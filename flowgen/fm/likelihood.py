"""Exact log-likelihood of data under a flow model (instantaneous change of variables).

For ``dx_t/dt = v(x_t, t)`` the log-density along a trajectory obeys
``d log p_t(x_t) / dt = -div v(x_t, t)`` (Chen et al. 2018, "Neural ODEs", Thm. 1; Grathwohl
et al. 2019, FFJORD, eq. 4), hence, with x_0 ~ p_0 noise at t = 0 and x_1 data at t = 1::

    log p_1(x_1) = log p_0(x_0) - int_0^1 div v(x_t, t) dt

We integrate the augmented state ``[x_t, delta_t]`` with ``d delta_t / dt = div v(x_t, t)``
backwards from ``(x_1, 0)`` at t = 1 to t = 0, so ``delta_0 = -int_0^1 div v dt`` and
``log p_1(x_1) = log p_0(x_0) + delta_0``. The divergence is exact (one backward pass per
dimension; small D) or Hutchinson's unbiased estimate ``E[eps^T (dv/dx) eps]`` (FFJORD §3.1) with
the probes ``eps`` drawn once per solve and held fixed in t.

Shapes: B batch, D = prod of the non-batch dims; the ODE state is flattened to ``(B, D + 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from flowgen.errors import InputError
from flowgen.fm.solvers import (
    ADAPTIVE_METHODS,
    NFE_PER_STEP,
    AdaptiveMethod,
    FixedMethod,
    VelocityFn,
    sample,
)
from flowgen.fm.time import uniform_grid

LogProbFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LikelihoodResult:
    """``log p_1(x_1)`` per sample ``(B,)``, the latent ``x_0`` ``(B, ...)`` and the forward NFE."""

    log_p1: torch.Tensor
    x_0: torch.Tensor
    nfe: int


def standard_normal_log_prob(x_0: torch.Tensor) -> torch.Tensor:
    """``log N(x_0; 0, I)`` summed over the non-batch dims: ``(B, ...) -> (B,)``."""
    return -0.5 * (x_0.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)


def bits_per_dim(
    log_p1: torch.Tensor, *, num_dims: int, bin_width: float | None = None
) -> torch.Tensor:
    """Negative log-likelihood in bits per dimension, ``-log_2 p / D``.

    Args:
        log_p1: ``(B,)`` continuous log-densities in nats.
        num_dims: D, the number of data dimensions per sample.
        bin_width: for dequantised discrete data, the width of one quantisation bin in model
            space (``2 / 256`` for 8-bit data mapped to [-1, 1]); the bin's probability is then
            ``p * bin_width^D``, which gives the usual discrete bits/dim. ``None``: continuous.
    """
    if num_dims < 1:
        raise InputError(f"num_dims must be >= 1, got {num_dims}")
    if bin_width is not None and bin_width <= 0:
        raise InputError(f"bin_width must be > 0, got {bin_width}")
    log_mass = log_p1 if bin_width is None else log_p1 + num_dims * math.log(bin_width)
    return -log_mass / (num_dims * math.log(2))


# --- divergences: (v, div v) at one (x, t); the network runs once, then backward passes ---------
def _velocity(velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    v = velocity_fn(x, t)
    if not torch.is_tensor(v) or v.shape != x.shape:
        got = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
        raise InputError(f"velocity_fn returned {got}, expected the input's shape {tuple(x.shape)}")
    return v


def _exact(velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = _velocity(velocity_fn, x, t)
        v_flat = v.flatten(1)  # (B, D)
        div = torch.zeros(x.shape[0], dtype=v.dtype, device=x.device)
        if v.requires_grad:
            d = v_flat.shape[1]
            for i in range(d):  # d/dx_i of v_i, summed over the batch (samples are independent)
                (g,) = torch.autograd.grad(
                    v_flat[:, i].sum(), x, retain_graph=i < d - 1, allow_unused=True
                )
                if g is not None:
                    div = div + g.flatten(1)[:, i]
    return v.detach(), div.detach()


def _hutchinson(velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor):
    # eps: (K, *x.shape)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = _velocity(velocity_fn, x, t)
        est = torch.zeros(x.shape[0], dtype=v.dtype, device=x.device)
        if v.requires_grad:
            k = eps.shape[0]
            for j in range(k):  # vector-Jacobian product eps^T (dv/dx), then dot with eps
                (g,) = torch.autograd.grad(
                    v, x, grad_outputs=eps[j].to(v.dtype), retain_graph=j < k - 1, allow_unused=True
                )
                if g is not None:
                    est = est + (g * eps[j]).flatten(1).sum(1)
            est = est / k
    return v.detach(), est.detach()


def _check_point(x: torch.Tensor) -> None:
    if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim < 2:
        raise InputError("x must be a floating-point tensor of shape (B, ...) with a non-batch dim")
    if torch.is_inference_mode_enabled():
        raise InputError("divergences need autograd: call outside torch.inference_mode()")


def divergence_exact(
    velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor | float
) -> torch.Tensor:
    """Exact ``div v(x, t) = tr(dv/dx)`` per sample, ``(B, ...) -> (B,)``, by D backward passes.

    Assumes samples do not interact inside ``velocity_fn`` (no batch-norm in training mode).
    Cost grows linearly with D: use :func:`divergence_hutchinson` beyond a few hundred dims.
    """
    _check_point(x)
    return _exact(velocity_fn, x, torch.as_tensor(t, dtype=x.dtype, device=x.device))[1]


def divergence_hutchinson(
    velocity_fn: VelocityFn, x: torch.Tensor, t: torch.Tensor | float, eps: torch.Tensor
) -> torch.Tensor:
    """Hutchinson's estimate ``eps^T (dv/dx) eps`` of ``div v(x, t)`` (FFJORD §3.1), ``(B,)``.

    Args:
        velocity_fn: ``(x_t, t) -> v_t``.
        x: ``(B, ...)`` points.
        t: time, a float or 0-dim tensor.
        eps: probes with ``E[eps eps^T] = I`` (Rademacher or standard normal), of ``x``'s shape
            or ``(K, *x.shape)`` for the mean over K probes (one backward pass each).
    """
    _check_point(x)
    if eps.shape == x.shape:
        eps = eps[None]
    if eps.ndim != x.ndim + 1 or eps.shape[1:] != x.shape or eps.shape[0] < 1:
        raise InputError(f"eps must have shape {tuple(x.shape)} or (K, *{tuple(x.shape)})")
    return _hutchinson(velocity_fn, x, torch.as_tensor(t, dtype=x.dtype, device=x.device), eps)[1]


def _probes(k: int, x: torch.Tensor, noise: str, generator: torch.Generator | None) -> torch.Tensor:
    shape = (k, *x.shape)
    if noise == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
    return (2 * bits - 1).to(x.dtype)


def log_likelihood(
    velocity_fn: VelocityFn,
    x_1: torch.Tensor,
    *,
    log_p0: LogProbFn = standard_normal_log_prob,
    method: FixedMethod | AdaptiveMethod = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    divergence: Literal["exact", "hutchinson"] = "exact",
    hutchinson_samples: int = 1,
    noise: Literal["rademacher", "gaussian"] = "rademacher",
    generator: torch.Generator | None = None,
) -> LikelihoodResult:
    """``log p_1(x_1)`` under the flow ``dx/dt = v(x, t)`` pushing ``p_0`` (t=0) to data (t=1).

    Solves ``[x_t, delta_t]`` from ``(x_1, 0)`` at t=1 back to t=0 and returns
    ``log p_0(x_0) + delta_0 = log p_0(x_0) - int_0^1 div v(x_t, t) dt`` (Chen et al. 2018,
    Thm. 1). The result is for evaluation: it is detached from any parameters of ``velocity_fn``.
    Works inside ``torch.no_grad()`` (autograd is re-enabled locally), not in inference mode.

    Args:
        velocity_fn: ``(x_t, t) -> v_t``; ``t`` is a 0-dim tensor.
        x_1: ``(B, ...)`` data points.
        log_p0: log-density of the noise distribution, ``(B, ...) -> (B,)``.
        method: fixed-step ``euler | midpoint | heun | rk4`` (needs ``steps``) or adaptive
            ``dopri5 | ...`` (controlled by ``rtol``/``atol``; ``steps`` must stay ``None``).
        steps: number of uniform steps from t=1 to t=0 for fixed-step methods.
        rtol, atol: tolerances of adaptive methods.
        divergence: ``"exact"`` (D backward passes per evaluation) or ``"hutchinson"``
            (``hutchinson_samples`` backward passes; unbiased, noisy).
        hutchinson_samples: probes averaged per evaluation.
        noise: Hutchinson probe distribution, ``"rademacher"`` (lower variance) or ``"gaussian"``.
        generator: RNG for the probes.

    Returns:
        :class:`LikelihoodResult` with ``log_p1 (B,)``, ``x_0`` of ``x_1``'s shape and the number
        of forward evaluations of ``velocity_fn``.

    Raises:
        InputError: bad shapes, method/steps combination, divergence or noise option.
    """
    _check_point(x_1)
    if divergence not in ("exact", "hutchinson"):
        raise InputError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if noise not in ("rademacher", "gaussian"):
        raise InputError(f"noise must be 'rademacher' or 'gaussian', got {noise!r}")
    if isinstance(hutchinson_samples, bool) or not isinstance(hutchinson_samples, int):
        raise InputError(f"hutchinson_samples must be an int, got {hutchinson_samples!r}")
    if hutchinson_samples < 1:
        raise InputError(f"hutchinson_samples must be >= 1, got {hutchinson_samples}")
    if method in NFE_PER_STEP:
        if steps is None:
            raise InputError(f"fixed-step method {method!r} needs steps (e.g. steps=100)")
        grid = uniform_grid(steps).flip(0)  # 1 -> 0
    elif method in ADAPTIVE_METHODS:
        if steps is not None:
            raise InputError(
                f"adaptive method {method!r} picks its own steps; set rtol/atol instead"
            )
        grid = torch.tensor([1.0, 0.0])
    else:
        raise InputError(
            f"unknown ODE method {method!r}; choose one of {[*NFE_PER_STEP, *ADAPTIVE_METHODS]}"
        )

    shape = x_1.shape
    x_1 = x_1.detach().to(torch.promote_types(x_1.dtype, torch.float32))
    eps = _probes(hutchinson_samples, x_1, noise, generator) if divergence == "hutchinson" else None

    def augmented(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (B, D + 1) -> (B, D + 1)
        x_t = y[:, :-1].reshape(shape)
        if eps is None:
            v_t, div = _exact(velocity_fn, x_t, t)
        else:
            v_t, div = _hutchinson(velocity_fn, x_t, t, eps)
        return torch.cat([v_t.flatten(1).to(y.dtype), div[:, None].to(y.dtype)], dim=1)

    y_1 = torch.cat([x_1.flatten(1), x_1.new_zeros(shape[0], 1)], dim=1)  # (B, D + 1)
    sol = sample(augmented, y_1, grid, method=method, rtol=rtol, atol=atol)
    x_0 = sol.x[:, :-1].reshape(shape)
    delta_0 = sol.x[:, -1]  # = -int_0^1 div v dt
    lp0 = log_p0(x_0)
    if not torch.is_tensor(lp0) or lp0.shape != (shape[0],):
        got = tuple(lp0.shape) if torch.is_tensor(lp0) else type(lp0).__name__
        raise InputError(f"log_p0 must return shape ({shape[0]},), got {got}")
    return LikelihoodResult(log_p1=lp0 + delta_0, x_0=x_0, nfe=sol.nfe)
