"""Reflow and distillation against a Gaussian teacher with a closed-form flow.

x_0 ~ N(0, I), x_1 ~ N(mu, diag(s^2)), linear path: the marginal velocity is
v(x, t) = mu + (sigma_t' / sigma_t)(x - t mu) with sigma_t^2 = (1 - t)^2 + t^2 s^2, and its flow
is x_t = t mu + sigma_t x_0, so the teacher's exact map is x_1 = mu + s x_0.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowgen.errors import InputError
from flowgen.fm.distill import (
    TeacherPairs,
    distillation_loss,
    generate_pairs,
    reflow_loss,
    straightness,
)
from flowgen.fm.paths import expand_like
from flowgen.fm.solvers import sample
from flowgen.fm.time import custom_grid, uniform_grid
from tests.fm.gaussian_flow import GaussianFlow

MU = torch.tensor([1.5, -0.5])
S = torch.tensor([0.5, 2.0])


FLOW = GaussianFlow(MU, S)
teacher, flow, rectified, sigma = FLOW.velocity, FLOW.flow, FLOW.rectified, FLOW.sigma


def noise(n: int, seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(n, *(shape or (2,)), generator=torch.Generator().manual_seed(seed))


class Student(nn.Module):
    def __init__(self, dim: int = 2, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x_t, t):
        t = torch.as_tensor(t, dtype=x_t.dtype).expand(x_t.shape[0])
        return self.net(torch.cat([x_t, t[:, None]], dim=1))


def test_pairs_follow_the_analytic_flow_at_student_points():
    x_0 = noise(256, 0)
    student_grid = custom_grid([0.0, 0.37, 0.8, 1.0])  # 0.37 is not a teacher grid point
    pairs = generate_pairs(teacher, x_0, time_grid=uniform_grid(32), student_grid=student_grid)
    assert pairs.states.shape == (4, 256, 2)
    assert torch.equal(pairs.time_grid, student_grid)
    assert torch.equal(pairs.x_0, x_0)
    torch.testing.assert_close(pairs.x_1, MU + S * x_0, atol=1e-4, rtol=0)
    for t, x_t in zip(student_grid, pairs.states):
        torch.testing.assert_close(x_t, flow(x_0, t), atol=1e-4, rtol=0)


def test_states_are_the_teacher_trajectory_and_default_is_one_step():
    x_0 = noise(16, 1)
    grid = uniform_grid(8)
    traj = sample(teacher, x_0, grid, method="heun", return_trajectory=True).trajectory
    pairs = generate_pairs(teacher, x_0, time_grid=grid, method="heun", student_grid=grid[::4])
    torch.testing.assert_close(pairs.states, traj[::4], atol=0, rtol=0)
    one = generate_pairs(teacher, x_0, time_grid=grid, method="heun")
    assert one.states.shape == (2, 16, 2) and one.time_grid.tolist() == [0.0, 1.0]
    torch.testing.assert_close(one.x_1, traj[-1], atol=0, rtol=0)


def test_adaptive_teacher_and_any_state_shape_with_a_conditional_closure():
    x_0 = noise(8, 2, 2, 3)  # (B, 2, 3)
    mu = torch.linspace(-1, 1, 8).reshape(8, 1, 1)  # a per-sample "condition"
    conditional = GaussianFlow(mu, 1.5)
    pairs = generate_pairs(
        conditional.velocity,
        x_0,
        time_grid=uniform_grid(1),
        method="dopri5",
        student_grid=uniform_grid(2),
        rtol=1e-7,
        atol=1e-7,
    )
    assert pairs.states.shape == (3, 8, 2, 3)
    torch.testing.assert_close(pairs.states[1], conditional.flow(x_0, 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(pairs.x_1, mu + 1.5 * x_0, atol=1e-5, rtol=0)
    assert reflow_loss(conditional.rectified, pairs.x_0, pairs.x_1, torch.rand(8)) < 1e-8


def test_distillation_loss_is_zero_for_the_exact_secant_student():
    x_0 = noise(128, 3)
    grid = uniform_grid(2)
    pairs = generate_pairs(teacher, x_0, time_grid=uniform_grid(32), student_grid=grid)

    def secant(x, t):  # the exact Euler-step velocity x_{t_k} -> x_{t_k + 1/2}
        t = expand_like(t, x)
        t_next = t + 0.5
        return (t_next * MU + sigma(t_next) / sigma(t) * (x - t * MU) - x) / 0.5

    assert distillation_loss(secant, pairs) < 1e-8
    assert distillation_loss(teacher, pairs) > 1e-2  # Euler on the curved teacher is off
    one = generate_pairs(teacher, x_0, time_grid=uniform_grid(32))
    assert distillation_loss(lambda x, t: MU + (S - 1) * x, one) < 1e-8  # x_0 + u = mu + s x_0


def _train(pairs: TeacherPairs, loss_fn, steps: int = 300, seed: int = 0) -> Student:
    torch.manual_seed(seed)
    model = Student()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    n = pairs.states.shape[1]
    for _ in range(steps):
        idx = torch.randint(0, n, (256,), generator=g)
        loss = loss_fn(
            model, TeacherPairs(time_grid=pairs.time_grid, states=pairs.states[:, idx]), g
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).sum(1).mean().sqrt())


@pytest.mark.parametrize("k", [1, 2])
def test_distilled_student_beats_teacher_with_k_euler_steps(k):
    grid = uniform_grid(k)
    pairs = generate_pairs(teacher, noise(4096, 4), time_grid=uniform_grid(16), student_grid=grid)
    student = _train(pairs, lambda m, p, g: distillation_loss(m, p))
    x_0 = noise(1024, 5)
    target = MU + S * x_0
    with torch.no_grad():
        student_err = _rms(sample(student, x_0, grid, method="euler").x, target)
    teacher_err = _rms(sample(teacher, x_0, grid, method="euler").x, target)
    assert student_err < 0.1 * teacher_err, (student_err, teacher_err)


def test_straightness_matches_closed_form_and_vanishes_for_the_rectified_flow():
    x_0 = noise(64, 6)
    grid = uniform_grid(64)
    # int_0^1 (s - 1 - sigma_t')^2 dt per dim, times x_0^2 (the deviation is (s - 1 - sigma_t') x_0)
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
    s = S.double()
    d_sigma = (t * s**2 - (1 - t)) / sigma(t)
    c = torch.trapezoid((s - 1 - d_sigma) ** 2, t[:, 0], dim=0).float()
    expected = (x_0**2 * c).sum(1)
    torch.testing.assert_close(
        straightness(teacher, x_0, time_grid=grid), expected, rtol=1e-3, atol=1e-4
    )
    assert straightness(rectified, x_0, time_grid=grid).abs().max() < 1e-8


def test_reflow_straightens_the_teacher():
    pairs = generate_pairs(teacher, noise(4096, 7), time_grid=uniform_grid(16))
    assert reflow_loss(rectified, pairs.x_0, pairs.x_1, torch.rand(4096)) < 1e-8

    def loss_fn(model, p, g):
        return reflow_loss(model, p.x_0, p.x_1, torch.rand(p.x_0.shape[0], generator=g))

    student = _train(pairs, loss_fn)
    x_0 = noise(512, 8)
    with torch.no_grad():
        s_student = straightness(student, x_0, time_grid=uniform_grid(16)).mean()
    s_teacher = straightness(teacher, x_0, time_grid=uniform_grid(16)).mean()
    assert s_student < 0.1 * s_teacher, (float(s_student), float(s_teacher))


def test_bad_inputs_raise():
    x_0 = noise(4, 9)
    with pytest.raises(InputError):
        generate_pairs(teacher, x_0, time_grid=uniform_grid(4).flip(0))
    with pytest.raises(InputError):
        generate_pairs(
            teacher, x_0, time_grid=uniform_grid(4), student_grid=custom_grid([0.0, 0.5])
        )
    with pytest.raises(InputError):
        generate_pairs(
            teacher, x_0, time_grid=uniform_grid(4), student_grid=torch.tensor([0.0, 0.7, 0.3, 1.0])
        )
    with pytest.raises(InputError):
        generate_pairs(teacher, x_0.long(), time_grid=uniform_grid(4))
    with pytest.raises(InputError):
        TeacherPairs(time_grid=uniform_grid(2), states=torch.zeros(2, 4, 2))
    pairs = generate_pairs(teacher, x_0, time_grid=uniform_grid(4))
    with pytest.raises(InputError):
        distillation_loss(lambda x, t: x[:, :1], pairs)
    with pytest.raises(InputError):
        reflow_loss(teacher, x_0, x_0[:, :1], torch.rand(4))
