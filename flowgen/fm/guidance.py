"""Classifier-free guidance (Ho & Salimans 2022, eq. 6, in velocity form) with a guidance interval.

``v = v_uncond + scale * (v_cond - v_uncond)`` for ``t`` in ``[t_lo, t_hi]`` and plain ``v_cond``
outside (Kynkaanniemi et al. 2024, "Applying guidance in a limited interval"). Conditional and
unconditional branches run as one doubled batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from flowgen.errors import InputError
from flowgen.fm.solvers import VelocityFn

ConditionalModel = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


def _cat(a: Any, b: Any) -> Any:
    if torch.is_tensor(a):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: _cat(a[k], b[k]) for k in a}
    raise InputError(f"conditions must be tensors or dicts of tensors, got {type(a).__name__}")


def cfg_velocity(
    model: ConditionalModel,
    cond: Any,
    uncond: Any,
    *,
    scale: float,
    interval: tuple[float, float] = (0.0, 1.0),
) -> VelocityFn:
    """Wrap ``model(x_t, t, c)`` into a guided ``velocity_fn(x_t, t)`` for :func:`sample`.

    Args:
        model: conditional velocity network; ``c`` is a tensor (or dict of tensors) with batch dim.
        cond, uncond: the condition and the null condition, each with the batch size of ``x_t``.
        scale: guidance scale ``w``; 1 means no guidance (one forward pass per call).
        interval: ``(t_lo, t_hi)``; outside it the conditional velocity is used alone.
    """
    t_lo, t_hi = interval
    if not 0.0 <= t_lo <= t_hi <= 1.0:
        raise InputError(f"guidance interval must satisfy 0 <= t_lo <= t_hi <= 1, got {interval}")
    both = _cat(cond, uncond)

    def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_both = model(torch.cat([x_t, x_t]), t, both)
        v_c, v_u = v_both.chunk(2)
        return v_u + scale * (v_c - v_u)

    def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return model(x_t, t, cond)
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            inside = (t >= t_lo) & (t <= t_hi)  # graph-safe: no host sync, both branches computed
            v_guided = guided(x_t, t)
            return torch.where(inside, v_guided, model(x_t, t, cond))
        if t_lo <= float(t) <= t_hi:
            return guided(x_t, t)
        return model(x_t, t, cond)

    return velocity
