"""Vision training tasks. ``fmnist_classifier``: the Fashion-MNIST feature classifier of FID / P&R.

Cross-entropy on Fashion-MNIST train images (Xiao et al. 2017) with optional light augmentation
(horizontal flips, shifts of up to ``max_shift`` pixels with black fill). Each global batch draws
its indices (with replacement), flips and shifts from the step's generator, so it is a pure
function of ``(seed, step)``. ``evaluate`` reports accuracy and loss on the test split. The
trained model is :class:`flowgen.vision.classifier.ImageClassifier`; its penultimate layer is the
feature space of :mod:`flowgen.vision.metrics` (shipped as ``checkpoints/fmnist_classifier``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from flowgen.errors import ConfigError
from flowgen.train.tasks import Batch, Task, register_task
from flowgen.vision.classifier import ImageClassifier, ImageClassifierConfig
from flowgen.vision.data import CLASS_NAMES, FASHION_MNIST_ROOT, FashionMNIST


@dataclass(frozen=True)
class FMNISTClassifierArgs:
    """The ``task_args:`` section of a fmnist_classifier recipe."""

    root: str = FASHION_MNIST_ROOT  # folder with the four *-idx*-ubyte.gz files
    augment: Literal["none", "flip", "flip_shift"] = "flip"  # per-sample random augmentation
    max_shift: int = 2  # pixels, for "flip_shift"
    label_smoothing: float = 0.0  # of the cross-entropy targets
    eval_samples: int = 10000  # test images for eval/accuracy and eval/loss (the first ones)
    eval_batch: int = 1000  # images per forward pass when evaluating

    def __post_init__(self) -> None:
        if self.max_shift < 0:
            raise ConfigError(f"max_shift must be >= 0, got {self.max_shift}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.eval_samples < 1 or self.eval_batch < 1:
            raise ConfigError("eval_samples and eval_batch must be >= 1")


@register_task("fmnist_classifier")
class FMNISTClassifierTask(Task):
    args_cls = FMNISTClassifierArgs
    model_config_cls = ImageClassifierConfig

    def __init__(self, args: FMNISTClassifierArgs, model_config: ImageClassifierConfig):
        super().__init__(args, model_config)
        c = model_config
        if (c.in_channels, c.image_size, c.num_classes) != (1, 28, len(CLASS_NAMES)):
            raise ConfigError(
                "fmnist_classifier needs model.in_channels: 1, model.image_size: 28, "
                f"model.num_classes: {len(CLASS_NAMES)}; got {c.in_channels}, {c.image_size}, "
                f"{c.num_classes}"
            )

    @cached_property
    def train_set(self) -> FashionMNIST:
        return FashionMNIST(self.args.root, "train")

    @cached_property
    def test_set(self) -> FashionMNIST:
        return FashionMNIST(self.args.root, "test")

    def build_model(self) -> nn.Module:
        return ImageClassifier(self.model_config)

    def make_batch(self, step: int, generator: torch.Generator, batch_size: int) -> Batch:
        a = self.args
        index = torch.randint(0, len(self.train_set), (batch_size,), generator=generator)
        images, labels = self.train_set.batch(index)  # (B, 1, 28, 28), (B,)
        if a.augment != "none":
            flip = torch.rand(batch_size, generator=generator) < 0.5  # (B,)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if a.augment == "flip_shift" and a.max_shift > 0:
            shifts = torch.randint(
                -a.max_shift, a.max_shift + 1, (batch_size, 2), generator=generator
            )
            images = shift_images(images, shifts, fill=-1.0)
        return {"images": images, "labels": labels}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        logits = model(batch["images"])  # (B, K)
        return F.cross_entropy(logits, batch["labels"], label_smoothing=self.args.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``accuracy`` and ``loss`` (cross-entropy) on the first ``eval_samples`` test images."""
        a = self.args
        device = next(model.parameters()).device
        n = min(a.eval_samples, len(self.test_set))
        correct, total_loss = 0, 0.0
        for start in range(0, n, a.eval_batch):
            images, labels = self.test_set.batch(range(start, min(start + a.eval_batch, n)))
            logits = model(images.to(device))
            labels = labels.to(device)
            total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(dim=1) == labels).sum())
        return {"accuracy": correct / n, "loss": total_loss / n}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {**super().checkpoint_extra(), "class_names": list(CLASS_NAMES)}


def shift_images(images: torch.Tensor, shifts: torch.Tensor, *, fill: float) -> torch.Tensor:
    """Translate each image by ``shifts[b] = (dy, dx)`` pixels, filling the border with ``fill``.

    Args:
        images: ``(B, C, H, W)``.
        shifts: ``(B, 2)`` integers with ``|shift| <= pad`` for ``pad = max |shifts|``.
    """
    B, C, H, W = images.shape
    pad = int(shifts.abs().max()) if shifts.numel() else 0
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad), value=fill)  # (B, C, H + 2p, W + 2p)
    rows = pad - shifts[:, 0, None] + torch.arange(H)  # (B, H): output row i reads row i - dy
    cols = pad - shifts[:, 1, None] + torch.arange(W)  # (B, W)
    batch = torch.arange(B)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
