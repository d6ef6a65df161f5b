"""Exponential moving average of the weights, kept in fp32 (Polyak & Juditsky 1992).

After every optimizer step ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` for each
parameter; buffers are copied. The EMA lives in its own module (a deep copy of the raw model), so
evaluation, sampling and saving use it directly: the saved ``model.safetensors`` is the EMA.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """``EMA(model, decay)``; ``update(model)`` after each optimizer step; ``.module`` to use it."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.module = copy.deepcopy(model).float().eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights (an unwrapped, non-DDP module)."""
        params = dict(model.named_parameters())
        for name, ema_p in self.module.named_parameters():
            p = params[name].detach().to(ema_p.dtype)
            ema_p.mul_(self.decay).add_(p, alpha=1.0 - self.decay)
        buffers = dict(model.named_buffers())
        for name, ema_b in self.module.named_buffers():
            ema_b.copy_(buffers[name])
        self.num_updates += 1

    def to(self, device: torch.device | str) -> EMA:
        self.module.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        weights = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        return {"decay": self.decay, "num_updates": self.num_updates, "weights": weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.num_updates = int(state["num_updates"])
