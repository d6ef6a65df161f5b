import pytest
import torch

from flowgen.errors import InputError
from flowgen.fm.paths import CosinePath, LinearPath, PolynomialPath, VPPath

PATHS = [LinearPath(), LinearPath(sigma_min=0.01), CosinePath(), VPPath(), PolynomialPath(n=3)]


def test_linear_path_matches_the_convention():
    x_0, x_1, t = torch.randn(5, 3), torch.randn(5, 3), torch.rand(5)
    ps = LinearPath().sample(x_0, x_1, t)
    torch.testing.assert_close(ps.x_t, (1 - t[:, None]) * x_0 + t[:, None] * x_1)
    torch.testing.assert_close(ps.dx_t, x_1 - x_0)


def test_sigma_min_endpoints():
    x_0, x_1 = torch.randn(4, 2), torch.randn(4, 2)
    path = LinearPath(sigma_min=0.1)
    torch.testing.assert_close(path.sample(x_0, x_1, torch.zeros(4)).x_t, x_0)
    torch.testing.assert_close(path.sample(x_0, x_1, torch.ones(4)).x_t, x_1 + 0.1 * x_0)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: repr(p))
def test_dx_t_is_the_time_derivative_of_x_t(path):
    x_0, x_1 = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    t.requires_grad_(True)
    ps = path.sample(x_0, x_1, t)
    for d in range(3):
        (grad,) = torch.autograd.grad(ps.x_t[:, d].sum(), t, retain_graph=True)
        torch.testing.assert_close(grad, ps.dx_t[:, d].detach())


@pytest.mark.parametrize("path", PATHS, ids=lambda p: repr(p))
def test_path_moments(path):
    # x_0 ~ N(0, I), x_1 fixed: x_t ~ N(alpha_t x_1, sigma_t^2 I).
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x_1 = torch.tensor([[1.5, -2.0]]).expand(n, 2)
    t = torch.full((n,), 0.3)
    ps = path.sample(torch.randn(n, 2, generator=g), x_1, t)
    tt = torch.tensor(0.3)
    torch.testing.assert_close(ps.x_t.mean(0), path.alpha(tt) * x_1[0], atol=1e-2, rtol=0)
    torch.testing.assert_close(ps.x_t.std(0), path.sigma(tt).expand(2), atol=1e-2, rtol=0)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: repr(p))
def test_converters_round_trip(path):
    x_0, x_1 = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.8 + 0.1
    ps = path.sample(x_0, x_1, t)
    torch.testing.assert_close(path.velocity_to_x1(ps.dx_t, ps.x_t, t), x_1)
    torch.testing.assert_close(path.velocity_to_noise(ps.dx_t, ps.x_t, t), x_0)
    torch.testing.assert_close(path.x1_to_velocity(x_1, ps.x_t, t), ps.dx_t)
    torch.testing.assert_close(path.noise_to_velocity(x_0, ps.x_t, t), ps.dx_t)


def test_variance_preserving_paths():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for path in (CosinePath(), VPPath()):
        torch.testing.assert_close(path.alpha(t) ** 2 + path.sigma(t) ** 2, torch.ones_like(t))
    assert VPPath().alpha(torch.tensor(0.0)) < 1e-2  # nearly pure noise at t = 0


def test_bad_input():
    with pytest.raises(InputError):
        LinearPath().sample(torch.randn(2, 3), torch.randn(3, 3), torch.rand(2))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        LinearPath().sample(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0.5, 1.5]))
    with pytest.raises(InputError):
        LinearPath().sample(torch.randn(2, 3), torch.randn(2, 3), torch.rand(3))
    with pytest.raises(InputError):
        PolynomialPath(n=0)
