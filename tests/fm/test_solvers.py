import math

import pytest
import torch
from torch import nn

from flowgen.errors import InputError, IntegrationError
from flowgen.fm.solvers import NFE_PER_STEP, GraphedSampler, sample
from flowgen.fm.time import uniform_grid
from tests.fm.gaussian_flow import GaussianFlow

FLOW = GaussianFlow(mu=torch.tensor([2.0, -1.0, 0.5]), s=torch.tensor([0.5, 2.0, 1.0]))


def test_polynomial_field_solution():
    # dx/dt = 3 t^2 from 0 to 1 gives x_0 + 1; RK4 integrates cubic-in-t fields exactly.
    x_0 = torch.randn(4, 3)
    sol = sample(lambda x, t: 3 * t**2 * torch.ones_like(x), x_0, uniform_grid(4), method="rk4")
    torch.testing.assert_close(sol.x, x_0 + 1)


def _observed_orders(velocity, x_0, exact, method, steps=(8, 16, 32, 64)):
    errors = []
    for n in steps:
        sol = sample(velocity, x_0, uniform_grid(n, dtype=torch.float64), method=method)
        errors.append((sol.x - exact).abs().max().item())
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(steps) - 1)]


ORDERS = [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)]


@pytest.mark.parametrize(("method", "order"), ORDERS)
def test_convergence_order_gaussian(method, order):
    # On this linear Gaussian problem the midpoint rule superconverges (observed order 3), so the
    # check is "at least the expected order"; the nonlinear test below pins the exact order.
    x_0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    slope = _observed_orders(FLOW.velocity, x_0, FLOW.flow(x_0), method)[-1]
    assert order - 0.25 < slope < order + 1.25, (method, slope)


def _nonlinear(x, t):
    return torch.sin(3 * x) * torch.cos(2 * t) + 0.5 * x * t


@pytest.mark.parametrize(("method", "order"), ORDERS)
def test_convergence_order_nonlinear(method, order):
    x_0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = sample(_nonlinear, x_0, uniform_grid(1024, dtype=torch.float64), method="rk4").x
    slope = _observed_orders(_nonlinear, x_0, reference, method)[-1]
    assert abs(slope - order) < 0.25, (method, slope)


@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_adaptive_meets_tolerance(tol):
    x_0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sol = sample(FLOW.velocity, x_0, torch.tensor([0.0, 1.0]), method="dopri5", rtol=tol, atol=tol)
    err = (sol.x - FLOW.flow(x_0)).abs().max().item()
    assert err < 10 * tol * (1 + FLOW.flow(x_0).abs().max().item())


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4", "dopri5", "bosh3"])
def test_nfe_is_exact(method):
    calls = []

    def v(x, t):
        calls.append(float(t))
        return FLOW.velocity(x, t)

    sol = sample(v, torch.randn(8, 3), uniform_grid(5), method=method)
    assert sol.nfe == len(calls)
    if method in NFE_PER_STEP:
        assert sol.nfe == 5 * NFE_PER_STEP[method]


def test_backward_grid_inverts_forward():
    x_0 = torch.randn(16, 3, dtype=torch.float64)
    fwd = sample(FLOW.velocity, x_0, uniform_grid(32, dtype=torch.float64), method="rk4")
    back = sample(FLOW.velocity, fwd.x, uniform_grid(32, dtype=torch.float64).flip(0), method="rk4")
    torch.testing.assert_close(back.x, x_0, atol=1e-6, rtol=1e-6)


def test_trajectory_and_callback():
    seen = []
    grid = uniform_grid(6)
    sol = sample(
        FLOW.velocity,
        torch.randn(5, 3),
        grid,
        method="heun",
        callback=lambda i, t, x: seen.append((i, float(t), x.shape)),
        return_trajectory=True,
    )
    assert sol.trajectory.shape == (7, 5, 3)
    torch.testing.assert_close(sol.trajectory[-1], sol.x)
    assert [s[0] for s in seen] == list(range(6))
    assert [s[1] for s in seen] == pytest.approx(grid[1:].tolist())


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 3)
    )


def _net_velocity(net):
    def v(x, t):
        return net(torch.cat([x, t.expand(x.shape[0], 1).to(x.dtype)], dim=1))

    return v


def test_bf16_autocast_stays_close_to_fp32():
    net = _mlp()
    x_0 = torch.randn(256, 3, generator=torch.Generator().manual_seed(2))
    v = _net_velocity(net)
    ref = sample(v, x_0, uniform_grid(50), method="heun")
    low = sample(v, x_0, uniform_grid(50), method="heun", autocast_dtype=torch.bfloat16)
    assert low.x.dtype == torch.float32
    rel = ((low.x - ref.x).norm() / ref.x.norm()).item()
    assert rel < 2e-2  # stated tolerance: 2% relative L2 for bf16 networks


def test_low_precision_state_is_promoted_so_small_steps_are_not_lost():
    # At |x| = 256 the bf16 spacing is 2, so 1000 updates of 0.001 would all round away in a bf16
    # state; the solver keeps an fp32 state and reaches 257.
    x_0 = torch.full((4, 1), 256.0, dtype=torch.bfloat16)
    sol = sample(lambda x, t: torch.ones_like(x, dtype=torch.bfloat16), x_0, uniform_grid(1000))
    assert sol.x.dtype == torch.float32
    torch.testing.assert_close(sol.x, torch.full((4, 1), 257.0), atol=1e-2, rtol=0)


def test_wrong_velocity_shape_names_the_step():
    with pytest.raises(InputError, match="step 0"):
        sample(lambda x, t: x[:, :1], torch.randn(2, 3), uniform_grid(3))


def test_nan_during_integration_names_the_step():
    def v(x, t):
        return torch.where(t > 0.45, torch.full_like(x, float("nan")), torch.zeros_like(x))

    with pytest.raises(IntegrationError, match="step 5"):
        sample(v, torch.randn(2, 3), uniform_grid(10))


@pytest.mark.parametrize(
    "grid",
    [[0.0, 1.5], [-0.1, 1.0], [0.0, 0.5, 0.5, 1.0], [0.5], [[0.0, 1.0]], [0.0, float("nan")]],
)
def test_bad_grid_raises(grid):
    with pytest.raises(InputError):
        sample(FLOW.velocity, torch.randn(2, 3), torch.tensor(grid))


def test_bad_method_and_input():
    with pytest.raises(InputError, match="unknown ODE method"):
        sample(FLOW.velocity, torch.randn(2, 3), uniform_grid(2), method="rk45")
    with pytest.raises(InputError):
        sample(FLOW.velocity, torch.ones(2, 3, dtype=torch.long), uniform_grid(2))


def test_works_with_torch_compile():
    net = _mlp(1)
    x_0 = torch.randn(32, 3)
    eager = sample(_net_velocity(net), x_0, uniform_grid(4), method="midpoint")
    compiled = torch.compile(net, backend="aot_eager")
    sol = sample(_net_velocity(compiled), x_0, uniform_grid(4), method="midpoint")
    torch.testing.assert_close(sol.x, eager.x)
    assert sol.nfe == eager.nfe == 8


@pytest.mark.slow
def test_works_with_inductor_compile():
    net = _mlp(1)
    x_0 = torch.randn(32, 3)
    eager = sample(_net_velocity(net), x_0, uniform_grid(4), method="rk4")
    sol = sample(_net_velocity(torch.compile(net)), x_0, uniform_grid(4), method="rk4")
    torch.testing.assert_close(sol.x, eager.x, atol=1e-5, rtol=1e-5)


def test_graphed_sampler_refuses_cpu():
    with pytest.raises(InputError, match="CUDA"):
        GraphedSampler(FLOW.velocity, torch.randn(2, 3), uniform_grid(2))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_matches_eager():
    net = _mlp(2).cuda()
    v = _net_velocity(net)
    x_0 = torch.randn(128, 3, device="cuda")
    graphed = GraphedSampler(v, x_0, uniform_grid(8), method="rk4")
    x_new = torch.randn(128, 3, device="cuda")
    torch.testing.assert_close(graphed(x_new).x, sample(v, x_new, uniform_grid(8), method="rk4").x)
    assert graphed(x_new).nfe == 32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_close_to_fp32():
    net = _mlp(3).cuda()
    v = _net_velocity(net)
    x_0 = torch.randn(512, 3, device="cuda")
    ref = sample(v, x_0, uniform_grid(32), method="heun")
    low = sample(v, x_0, uniform_grid(32), method="heun", autocast_dtype=torch.bfloat16)
    assert ((low.x - ref.x).norm() / ref.x.norm()).item() < 2e-2
