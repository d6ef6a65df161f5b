"""A small CNN image classifier whose penultimate layer is the feature space of FID / P&R.

No Inception weights can be downloaded here, so sample quality is measured in the features of a
classifier the project trains itself (on Fashion-MNIST: ``checkpoints/fmnist_classifier``), the
way FID was first defined (Heusel et al. 2017) with a domain-specific network in place of
Inception. Architecture, for ``channels = (c1, c2, ...)``::

    image (B, C, S, S) in [-1, 1]
    -> per stage: [conv3x3 -> GroupNorm -> SiLU] x convs_per_stage -> maxpool 2
                                                                  # (B, c_i, S / 2^i, S / 2^i)
    -> flatten -> dropout -> linear -> SiLU                       # (B, feature_dim): features()
    -> dropout -> linear                                          # (B, num_classes): forward()

GroupNorm (not BatchNorm) keeps every image's features independent of the rest of its batch and
makes the trainer's weight EMA exact (there are no running statistics to copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from flowgen.checkpoint import register_model
from flowgen.errors import InputError


@dataclass(frozen=True)
class ImageClassifierConfig:
    in_channels: int = 1
    image_size: int = 28  # square inputs; must be divisible by 2 ** len(channels)
    num_classes: int = 10
    channels: tuple[int, ...] = (32, 64)  # width of each stage; each stage halves the size
    convs_per_stage: int = 1  # conv blocks before each 2x2 max-pool
    feature_dim: int = 128  # size of the penultimate layer (the FID / P&R feature vector)
    groups: int = 8  # GroupNorm groups in every conv block
    dropout: float = 0.0  # before the feature layer and before the logits

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty tuple of widths, got {self.channels}")
        if self.image_size % 2 ** len(self.channels):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2 ** {len(self.channels)}"
            )
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"every channel width must be divisible by groups={self.groups}")
        if min(self.in_channels, self.num_classes, self.feature_dim, self.convs_per_stage) < 1:
            raise ValueError("in_channels, num_classes, feature_dim, convs_per_stage must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


def _conv(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU()
    )


@register_model("image_classifier", ImageClassifierConfig)
class ImageClassifier(nn.Module):
    """``forward(images (B, C, S, S)) -> logits (B, K)``; ``features(images) -> (B, D)``."""

    def __init__(self, config: ImageClassifierConfig):
        super().__init__()
        self.config = c = config
        stages, width = [], c.in_channels
        for out in c.channels:
            for _ in range(c.convs_per_stage):
                stages.append(_conv(width, out, c.groups))
                width = out
            stages.append(nn.MaxPool2d(2))
        self.stages = nn.Sequential(*stages)
        side = c.image_size // 2 ** len(c.channels)
        self.embed = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(c.dropout),
            nn.Linear(width * side * side, c.feature_dim),
            nn.SiLU(),
        )
        self.head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(c.feature_dim, c.num_classes))

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def _check(self, images: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise InputError(
                f"expected images of shape (B, {', '.join(map(str, want))}) in [-1, 1], "
                f"got {tuple(images.shape)}"
            )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, feature_dim)`` of images in ``[-1, 1]``."""
        self._check(images)
        return self.embed(self.stages(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))  # (B, num_classes)
