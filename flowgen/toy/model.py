"""A residual MLP velocity network ``v(x_t, t[, y])`` for low-dimensional problems.

Matches the C2OT playground network: input and time projections summed, ``num_blocks`` residual
GELU MLP blocks (4x expansion) of width ``hidden``, a linear output. Optional class conditioning
adds a learned embedding; label ``num_classes`` is the null label used by classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from flowgen.checkpoint import register_model


@dataclass(frozen=True)
class MLPVelocityConfig:
    dim: int = 2
    hidden: int = 128
    num_blocks: int = 3
    num_classes: int = 0  # 0: unconditional; otherwise labels 0..num_classes-1, plus a null label


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.net(h)


@register_model("mlp_velocity", MLPVelocityConfig)
class MLPVelocity(nn.Module):
    """``forward(x_t (B, D), t (B,) or scalar, y (B,) | None) -> v_t (B, D)``."""

    def __init__(self, config: MLPVelocityConfig):
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.dim, config.hidden)
        self.time_proj = nn.Linear(1, config.hidden)
        self.label_embed = (
            nn.Embedding(config.num_classes + 1, config.hidden) if config.num_classes > 0 else None
        )
        self.blocks = nn.Sequential(*[_Block(config.hidden) for _ in range(config.num_blocks)])
        self.output_proj = nn.Linear(config.hidden, config.dim)

    @property
    def null_label(self) -> int:
        return self.config.num_classes

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        h = self.input_proj(x_t) + self.time_proj(t[:, None])  # (B, H)
        if self.label_embed is not None:
            if y is None:
                y = torch.full((x_t.shape[0],), self.null_label, device=x_t.device)
            h = h + self.label_embed(y)
        return self.output_proj(self.blocks(h))
