import numpy as np
import pytest
import torch

from flowgen.errors import InputError
from flowgen.vision.metrics import (
    extract_features,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    precision_recall,
)


def _random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d


def test_frechet_distance_closed_form_commuting():
    # diagonal covariances commute: tr((S1 S2)^1/2) = sum sqrt(s1_i s2_i)
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 + 4 - 4) + (4 + 1 - 4) + (9 + 1 - 6)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_and_is_symmetric():
    from scipy import linalg

    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_singular_and_identical():
    rng = np.random.default_rng(1)
    s = _random_spd(rng, 10, rank=3)  # rank-deficient, as with fewer samples than dimensions
    mu = rng.normal(size=10)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    # scalar multiples commute: tr((a S)(b S))^1/2 = sqrt(ab) tr S
    expected = (np.sqrt(2.0) - np.sqrt(0.5)) ** 2 * np.trace(s)
    # (zero eigenvalues carry round-off ~1e-16 whose square roots ~1e-8 remain: rel 1e-6)
    assert frechet_distance(mu, 2 * s, mu, 0.5 * s) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(InputError):
        frechet_distance(mu, s, mu[:3], s)
    with pytest.raises(InputError, match="non-finite"):
        frechet_distance(mu * np.nan, s, mu, s)


def test_fid_from_features():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 8))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid_from_features(torch.from_numpy(x), x) == pytest.approx(0.0, abs=1e-8)
    # a mean shift of 3 along one axis: FID ~ 9 (+ finite-sample noise)
    y = rng.normal(size=(4000, 8)) + np.eye(8)[0] * 3
    assert fid_from_features(x, y) == pytest.approx(9.0, abs=0.3)
    mu, sigma = feature_statistics(x)
    assert mu.shape == (8,) and sigma.shape == (8, 8)
    with pytest.raises(InputError):
        fid_from_features(x[:1], x)


def test_precision_recall_identical_disjoint_and_subset():
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(300, 5, generator=gen)
    same = precision_recall(real, real.clone(), k=3)
    assert same.precision == 1.0 and same.recall == 1.0
    far = precision_recall(real, real + 100.0, k=3)
    assert far.precision == 0.0 and far.recall == 0.0
    # fakes collapsed onto the real mode: high precision, low recall
    collapsed = 0.05 * torch.randn(300, 5, generator=gen)
    pr = precision_recall(real, collapsed, k=3, chunk=64)
    assert pr.precision > 0.9 and pr.recall < 0.1
    # fakes spread far wider than the reals: high recall, low precision
    spread = precision_recall(real, 10 * torch.randn(300, 5, generator=gen), k=3)
    assert spread.precision < 0.1 and spread.recall > 0.9
    with pytest.raises(InputError):
        precision_recall(real, real[:, :3])
    with pytest.raises(InputError):
        precision_recall(real[:3], real, k=3)


def test_extract_features_in_chunks():
    class Mean:
        def features(self, images):
            return images.mean(dim=(2, 3))

    images = torch.randn(7, 3, 4, 4)
    feats = extract_features(Mean(), images, batch_size=3)
    torch.testing.assert_close(feats, images.mean(dim=(2, 3)))
