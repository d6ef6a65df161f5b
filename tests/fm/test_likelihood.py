"""Log-likelihoods against a Gaussian flow whose marginal velocity and density are closed-form.

x_0 ~ N(0, I), y_1 ~ N(0, diag(s^2)), x_1 = mu + R y_1 with a rotation R, linear path: the
marginals are N(t mu, R diag(sigma_t^2) R^T), sigma_t^2 = (1 - t)^2 + t^2 s^2, and the marginal
velocity is v(x, t) = mu + R diag(sigma_t' / sigma_t) R^T (x - t mu). The rotation makes the
Jacobian non-diagonal, so Rademacher probes are not trivially exact.
"""

from __future__ import annotations

import math

import pytest
import torch

from flowgen.errors import InputError
from flowgen.fm.likelihood import (
    bits_per_dim,
    divergence_exact,
    divergence_hutchinson,
    log_likelihood,
    standard_normal_log_prob,
)
from tests.fm.gaussian_flow import GaussianFlow

FLOW = GaussianFlow([1.5, -0.5], [0.5, 2.0], angle=0.6)
gaussian_velocity = FLOW.velocity
analytic_log_p1 = FLOW.log_prob_1
analytic_x_0 = FLOW.inverse


@pytest.fixture
def x_1() -> torch.Tensor:
    return FLOW.sample_1(64, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exact_rk4_matches_analytic_density_and_inverse_map(x_1, dtype):
    res = log_likelihood(gaussian_velocity, x_1.to(dtype), method="rk4", steps=50)
    assert res.log_p1.shape == (64,) and res.x_0.shape == (64, 2)
    assert res.nfe == 4 * 50
    torch.testing.assert_close(res.log_p1, analytic_log_p1(x_1.to(dtype)), atol=1e-3, rtol=0)
    torch.testing.assert_close(res.x_0, analytic_x_0(x_1.to(dtype)), atol=1e-3, rtol=0)


def test_exact_dopri5_matches_analytic_density_under_no_grad(x_1):
    with torch.no_grad():
        res = log_likelihood(gaussian_velocity, x_1.double(), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(res.log_p1, analytic_log_p1(x_1.double()), atol=1e-5, rtol=0)
    torch.testing.assert_close(res.x_0, analytic_x_0(x_1.double()), atol=1e-5, rtol=0)
    assert not res.log_p1.requires_grad


def test_sign_contracting_flow_raises_density():
    # v = -x / 2 ... pushed from N(0, I): x_1 = x_0 e^{-1/2} is narrower, so log p_1 > log p_0 at 0.
    res = log_likelihood(lambda x, t: -0.5 * x, torch.zeros(1, 3), method="rk4", steps=20)
    expected = standard_normal_log_prob(torch.zeros(1, 3)) + 3 * 0.5
    torch.testing.assert_close(res.log_p1, expected, atol=1e-5, rtol=0)


def test_parameters_get_no_gradient_and_shapes_beyond_2d():
    scale = torch.tensor(0.3, requires_grad=True)
    x_1 = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
    res = log_likelihood(lambda x, t: scale * x, x_1, method="rk4", steps=10)
    assert res.x_0.shape == x_1.shape and not res.log_p1.requires_grad
    # linear field a x: x_0 = x_1 e^{-a}, log p_1 = log p_0(x_0) - 6 a
    x_0 = x_1 * math.exp(-0.3)
    expected = standard_normal_log_prob(x_0) - 6 * 0.3
    torch.testing.assert_close(res.log_p1, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise):
    n = 2000
    x_1 = torch.tensor([[2.0, 0.5]]).expand(n, 2)
    g = torch.Generator().manual_seed(2)
    est = log_likelihood(
        gaussian_velocity,
        x_1,
        method="rk4",
        steps=8,
        divergence="hutchinson",
        noise=noise,
        generator=g,
    ).log_p1
    exact = log_likelihood(gaussian_velocity, x_1[:1], method="rk4", steps=8).log_p1
    assert est.std() > 1e-2  # genuinely stochastic (non-diagonal Jacobian)
    assert abs(est.mean() - exact[0]) < 4 * est.std() / math.sqrt(n)


def test_hutchinson_more_samples_less_variance_and_seeded():
    x_1 = torch.tensor([[2.0, 0.5]]).expand(500, 2)

    def run(k: int, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return log_likelihood(
            gaussian_velocity,
            x_1,
            method="rk4",
            steps=4,
            divergence="hutchinson",
            hutchinson_samples=k,
            generator=g,
        ).log_p1

    torch.testing.assert_close(run(1, 3), run(1, 3))
    assert run(8, 4).std() < 0.5 * run(1, 4).std()


def test_divergence_of_linear_field_is_trace():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(5, 5, generator=g)
    x = torch.randn(7, 5, generator=g)
    field = lambda x, t: x @ a.T  # noqa: E731
    expected = torch.full((7,), float(a.trace()))
    torch.testing.assert_close(divergence_exact(field, x, 0.3), expected)
    # one probe: exactly eps^T A eps (unbiased for the trace since E[eps eps^T] = I)
    eps = torch.randn(7, 5, generator=g)
    torch.testing.assert_close(
        divergence_hutchinson(field, x, 0.3, eps), ((eps @ a.T) * eps).sum(1)
    )
    many = torch.randn(50, 7, 5, generator=g)  # (K, B, D): the mean of the K quadratic forms
    est = divergence_hutchinson(field, x, torch.tensor(0.3), many)
    torch.testing.assert_close(est, ((many @ a.T) * many).sum(2).mean(0))


def test_divergence_of_constant_field_and_under_no_grad():
    x = torch.randn(3, 2, 2)
    with torch.no_grad():
        assert torch.equal(
            divergence_exact(lambda x, t: torch.ones_like(x), x, 0.0), torch.zeros(3)
        )
        div = divergence_exact(lambda x, t: 2 * x, x, 0.0)
    torch.testing.assert_close(div, torch.full((3,), 8.0))


def test_bits_per_dim():
    # uniform on [0, 1]^D quantised to 256 levels: 8 bits/dim; N(0, 1) continuous: known entropy
    assert torch.allclose(
        bits_per_dim(torch.zeros(2), num_dims=10, bin_width=1 / 256), torch.tensor(8.0)
    )
    lp = standard_normal_log_prob(torch.zeros(1, 4))
    torch.testing.assert_close(
        bits_per_dim(lp, num_dims=4), torch.tensor([0.5 * math.log2(2 * math.pi)])
    )
    with pytest.raises(InputError):
        bits_per_dim(lp, num_dims=0)
    with pytest.raises(InputError):
        bits_per_dim(lp, num_dims=4, bin_width=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "rk4"},  # fixed step needs steps
        {"method": "dopri5", "steps": 10},  # adaptive picks its own
        {"method": "leapfrog", "steps": 10},
        {"divergence": "jacobian"},
        {"noise": "uniform"},
        {"hutchinson_samples": 0},
        {"log_p0": lambda x: x},  # wrong shape
    ],
)
def test_bad_options_raise(x_1, kwargs):
    with pytest.raises(InputError):
        log_likelihood(gaussian_velocity, x_1, **kwargs)


def test_bad_inputs_raise(x_1):
    with pytest.raises(InputError):
        log_likelihood(gaussian_velocity, torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(InputError):
        log_likelihood(gaussian_velocity, torch.ones(4))
    with pytest.raises(InputError):
        log_likelihood(lambda x, t: x[:, :1], x_1, method="euler", steps=2)
    with pytest.raises(InputError):
        divergence_hutchinson(gaussian_velocity, x_1, 0.5, torch.ones(3, 2))
    with torch.inference_mode(), pytest.raises(InputError):
        divergence_exact(gaussian_velocity, x_1, 0.5)
