"""Measure a Fashion-MNIST feature classifier: accuracy, FID floors and FID sensitivity.

The numbers of ``checkpoints/fmnist_classifier/README.md`` come from::

    python -m flowgen.vision.report --checkpoint fmnist_classifier --json report.json

It reports test accuracy; FID between real image sets (train vs test, the two halves of test:
the floor a perfect generator would reach at these sample sizes); and FID, precision and recall
between the test set and degraded copies of it (Gaussian pixel noise, Gaussian blur), which show
that the feature space notices both kinds of damage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from flowgen.checkpoint import load_model, resolve_checkpoint
from flowgen.errors import FlowgenError
from flowgen.vision.data import FASHION_MNIST_ROOT, FashionMNIST
from flowgen.vision.metrics import extract_features, fid_from_features, precision_recall

NOISE_STDS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)  # in units of the [-1, 1] pixel range
BLUR_SIGMAS: tuple[float, ...] = (0.5, 1.0, 1.5)  # pixels


def add_noise(images: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Images plus Gaussian noise of standard deviation ``std``, clipped to ``[-1, 1]``."""
    noise = torch.randn(images.shape, generator=generator)
    return (images + std * noise).clamp(-1.0, 1.0)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images, radius ``ceil(3 sigma)``, edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    C = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)  # along W
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)  # along H


@torch.no_grad()
def classifier_report(
    checkpoint: str | Path = "fmnist_classifier",
    *,
    root: str | Path = FASHION_MNIST_ROOT,
    pr_samples: int = 10_000,
    k: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """All the measurements as a JSON-able dict (see the module docstring)."""
    start = time.perf_counter()
    model = load_model(resolve_checkpoint(checkpoint))
    train, test = FashionMNIST(root, "train"), FashionMNIST(root, "test")
    train_images, _ = train.batch(range(len(train)))  # (60000, 1, 28, 28)
    test_images, test_labels = test.batch(range(len(test)))  # (10000, 1, 28, 28)

    logits = torch.cat([model(test_images[i : i + 1000]) for i in range(0, len(test), 1000)])
    correct = logits.argmax(dim=1) == test_labels
    per_class = {
        name: correct[test_labels == c].float().mean().item()
        for c, name in enumerate(test.class_names)
    }
    train_feats = extract_features(model, train_images)
    test_feats = extract_features(model, test_images)
    half = len(test_feats) // 2
    gen = torch.Generator().manual_seed(seed)
    subset = torch.randperm(len(train_feats), generator=gen)[:pr_samples]
    real_pr = test_feats[:pr_samples]

    def compare(other_feats: torch.Tensor) -> dict[str, float]:
        pr = precision_recall(real_pr, other_feats[:pr_samples], k=k)
        return {
            "fid": fid_from_features(test_feats, other_feats),
            "precision": pr.precision,
            "recall": pr.recall,
        }

    degraded = {}
    for std in NOISE_STDS:
        feats = extract_features(model, add_noise(test_images, std, gen))
        degraded[f"noise_std_{std:g}"] = compare(feats)
    for sigma in BLUR_SIGMAS:
        feats = extract_features(model, gaussian_blur(test_images, sigma))
        degraded[f"blur_sigma_{sigma:g}"] = compare(feats)

    return {
        "checkpoint": str(resolve_checkpoint(checkpoint)),
        "feature_dim": int(test_feats.shape[1]),
        "test_accuracy": correct.float().mean().item(),
        "test_accuracy_per_class": per_class,
        "fid_train_vs_test": fid_from_features(train_feats, test_feats),
        "fid_test_half_vs_half": fid_from_features(test_feats[:half], test_feats[half:]),
        "train_subset_vs_test": compare(train_feats[subset]),  # pr_samples train images
        "test_vs_degraded_test": degraded,
        "precision_recall": {"k": k, "samples": pr_samples, "real": "test"},
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowgen.vision.report",
        description="Accuracy, FID floors and FID/precision/recall under noise and blur of a "
        "Fashion-MNIST feature classifier.",
    )
    parser.add_argument(
        "--checkpoint",
        default="fmnist_classifier",
        help="checkpoint folder or shipped name (default: fmnist_classifier)",
    )
    parser.add_argument(
        "--root", default=FASHION_MNIST_ROOT, help="Fashion-MNIST idx folder (default: %(default)s)"
    )
    parser.add_argument(
        "--pr-samples", type=int, default=10_000, help="samples per set for precision/recall"
    )
    parser.add_argument("--k", type=int, default=3, help="k of the k-NN radii (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and the subsets")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        report = classifier_report(
            args.checkpoint, root=args.root, pr_samples=args.pr_samples, k=args.k, seed=args.seed
        )
    except FlowgenError as err:
        print(f"flowgen.vision.report: error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
