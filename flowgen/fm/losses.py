"""Conditional flow-matching regression loss (Lipman et al. 2023, eq. 23; Tong et al. 2024 eq. 9).

``L = E_b[ w_b * mean_{masked elements} ||v_theta(x_t, t) - dx_t||^2 ]`` with optional per-sample
weights ``w`` (e.g. W-CFM's Gibbs weights) and an element mask (variable-length audio).
"""

from __future__ import annotations

from typing import Literal

import torch

from flowgen.errors import InputError


def cfm_loss(
    v_pred: torch.Tensor,
    v_target: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Mean squared velocity error per sample, weighted and masked.

    Args:
        v_pred, v_target: ``(B, ...)`` predicted and target velocities.
        weights: ``(B,)`` per-sample weights; the loss is ``mean_b(w_b * l_b)`` (pass
            batch-normalised weights for ``sum(w l) / sum(w)``).
        mask: boolean/0-1 tensor broadcastable to ``v_pred``; 1 marks valid elements. Each sample's
            error is averaged over its valid elements only, so padding never dilutes it.
        reduction: ``"mean"`` (scalar) or ``"none"`` (``(B,)`` per-sample losses, unweighted).
    """
    if v_pred.shape != v_target.shape:
        raise InputError(
            f"prediction {tuple(v_pred.shape)} and target {tuple(v_target.shape)} differ"
        )
    err = (v_pred.float() - v_target.float()).pow(2)
    dims = tuple(range(1, err.ndim))
    if mask is not None:
        m = torch.broadcast_to(mask.to(err.dtype), err.shape)
        per_sample = (err * m).sum(dims) / m.sum(dims).clamp_min(1.0)
    else:
        per_sample = err.mean(dims) if dims else err
    if reduction == "none":
        return per_sample
    if weights is not None:
        if weights.shape != per_sample.shape:
            raise InputError(
                f"weights must have shape {tuple(per_sample.shape)}, got {tuple(weights.shape)}"
            )
        per_sample = per_sample * weights.to(per_sample.dtype)
    return per_sample.mean()
