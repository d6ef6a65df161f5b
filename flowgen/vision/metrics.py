"""Sample-quality metrics in a feature space: FID, and precision / recall of k-NN manifolds.

- FID (Heusel et al. 2017, eq. 6): the Frechet distance between Gaussians fitted to two feature
  sets, ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})``.
- Precision and recall (Kynkaanniemi et al. 2019, eq. 1-2): each set's manifold is the union of
  balls around its points whose radius is the distance to the point's k-th nearest neighbour in
  the same set; precision is the fraction of generated points inside the real manifold, recall
  the fraction of real points inside the generated one.

Features come from any :class:`FeatureExtractor`: the project's Fashion-MNIST classifier
(:class:`flowgen.vision.classifier.ImageClassifier`, shipped as ``checkpoints/fmnist_classifier``)
or, for the standard FID, :class:`flowgen.vision.inception.InceptionFeatures` with a
user-supplied weights file. FIDs are only comparable within one feature extractor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from flowgen.errors import InputError


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images ``(B, C, H, W)`` in ``[-1, 1]`` to feature vectors ``(B, D)``."""

    def features(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float  # fraction of fake samples inside the real k-NN manifold
    recall: float  # fraction of real samples inside the fake k-NN manifold


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractor, images: torch.Tensor, *, batch_size: int = 500
) -> torch.Tensor:
    """Features ``(N, D)`` (float32, CPU) of ``images (N, C, H, W)``, computed in chunks.

    Images go to the extractor's device if it is an ``nn.Module`` with parameters.
    """
    if images.ndim != 4:
        raise InputError(f"expected images (N, C, H, W), got shape {tuple(images.shape)}")
    device = images.device
    if isinstance(extractor, torch.nn.Module):
        param = next(extractor.parameters(), None)
        device = param.device if param is not None else device
    chunks = [
        extractor.features(images[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of features ``(N, D)``, in float64."""
    x = _as_matrix(features, "features")
    if len(x) < 2:
        raise InputError(f"need at least 2 feature vectors for a covariance, got {len(x)}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Squared Frechet (2-Wasserstein) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``tr((S_1 S_2)^{1/2})`` is computed as ``sum sqrt(eig(S_1^{1/2} S_2 S_1^{1/2}))``: the matrix
    is symmetric positive semi-definite, so a symmetric eigendecomposition in float64 suffices
    (no complex ``sqrtm`` parts, no ill-conditioned inverses for singular covariances);
    eigenvalues below zero from round-off are clipped.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.shape != mu2.shape or s1.shape != (d, d) or s2.shape != (d, d):
        raise InputError(
            f"need means (D,) and covariances (D, D) of one size D, got {mu1.shape}, {s1.shape}, "
            f"{mu2.shape}, {s2.shape}"
        )
    for name, value in (("mu1", mu1), ("mu2", mu2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(value).all():
            raise InputError(f"{name} has non-finite values")
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(value, 0.0))


def fid_from_features(
    features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray
) -> float:
    """FID between two feature sets ``(N_a, D)`` and ``(N_b, D)``."""
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


@torch.no_grad()
def precision_recall(
    real_features: torch.Tensor | np.ndarray,
    fake_features: torch.Tensor | np.ndarray,
    *,
    k: int = 3,
    chunk: int = 1024,
) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN radii.

    Args:
        real_features: ``(N_r, D)``.
        fake_features: ``(N_f, D)``.
        k: the neighbour whose distance is a point's radius (3 in the paper).
        chunk: rows per block of the pairwise-distance matrices (memory ``chunk x N``).
    """
    real = torch.from_numpy(_as_matrix(real_features, "real_features"))
    fake = torch.from_numpy(_as_matrix(fake_features, "fake_features"))
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise InputError(
            f"need k >= 1 and more than k samples per set; k={k}, sizes {len(real)} and {len(fake)}"
        )
    real_radii = _knn_radii(real, k, chunk)  # (N_r,)
    fake_radii = _knn_radii(fake, k, chunk)  # (N_f,)
    precision = _inside(fake, real, real_radii, chunk).double().mean().item()
    recall = _inside(real, fake, fake_radii, chunk).double().mean().item()
    return PrecisionRecall(precision=precision, recall=recall)


def _knn_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row to its k-th nearest other row: ``(N,)``."""
    radii = [
        torch.cdist(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values  # +1: the point itself
        for i in range(0, len(x), chunk)
    ]
    return torch.cat(radii)


def _inside(query: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, chunk: int):
    """Whether each query row lies in some ball ``|q - c_j| <= r_j``: ``(N_q,)`` bool."""
    hits = [
        (torch.cdist(query[i : i + chunk], centers) <= radii[None, :]).any(dim=1)
        for i in range(0, len(query), chunk)
    ]
    return torch.cat(hits)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (negative eigenvalues -> 0)."""
    eig, vec = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vec * np.sqrt(np.clip(eig, 0.0, None))) @ vec.T


def _as_matrix(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    x = features.detach().cpu().double().numpy() if torch.is_tensor(features) else features
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise InputError(f"{name} must be a (N, D) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{name} has non-finite values")
    return x
