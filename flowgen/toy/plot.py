"""Scatter plots of 2-D samples (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os

import torch


def save_scatter(
    path: str | os.PathLike,
    panels: list[tuple[str, torch.Tensor, torch.Tensor | None]],
    *,
    limit: float = 8.0,
) -> None:
    """Save side-by-side scatter panels ``(title, points (N, 2), colour labels (N,) | None)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (title, pts, labels) in zip(axes[0], panels):
        pts = pts.detach().cpu().float()
        colour = {} if labels is None else {"c": labels.cpu().numpy(), "cmap": "coolwarm"}
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, **colour)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
