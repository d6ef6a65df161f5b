"""Reflow and few-step distillation of a teacher flow (Liu et al. 2023, "Flow Straight and Fast").

- Teacher pairs: solve the teacher ODE from noise ``x_0`` to ``x_1 = ODE[v](x_0)``, keeping the
  states at a student's time grid ``t_0 < ... < t_K``: :func:`generate_pairs`.
- Reflow (Liu et al. eq. 1, Alg. 1): flow matching on the deterministic coupling ``(x_0, x_1)``
  instead of independent noise/data pairs, which straightens the flow: :func:`reflow_loss`.
- Distillation (Liu et al. §2.3; InstaFlow, Liu et al. 2024): a K-step Euler student is trained
  so that ``x_{t_k} + (t_{k+1} - t_k) u(x_{t_k}, t_k) ~ x_{t_{k+1}}`` on teacher states; K = 1 is
  one-step ``x_0 + u(x_0, 0) ~ x_1``: :func:`distillation_loss`. Sample the student with
  ``sample(u, x_0, pairs.time_grid, method="euler")`` from :mod:`flowgen.fm.solvers`.
- Straightness ``S = int_0^1 E||(x_1 - x_0) - dx_t/dt||^2 dt`` (Liu et al. §2), zero for straight
  flows, which one Euler step integrates exactly: :func:`straightness`.

Models are called as ``model(x_t, t)`` with ``t`` of shape ``(B,)`` in the losses (as in
training) and a 0-dim ``t`` when sampling; conditional models enter through a closure. States are
``(B, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowgen.errors import InputError
from flowgen.fm.losses import cfm_loss
from flowgen.fm.paths import AffinePath, LinearPath
from flowgen.fm.solvers import AdaptiveMethod, FixedMethod, VelocityFn, sample
from flowgen.fm.time import check_grid


@dataclass(frozen=True)
class TeacherPairs:
    """Teacher ODE states ``(K+1, B, ...)`` at the student grid ``time_grid (K+1,)``.

    ``states[0]`` is the noise ``x_0`` and ``states[-1]`` the teacher's sample ``x_1``.
    """

    time_grid: torch.Tensor
    states: torch.Tensor

    def __post_init__(self):
        if self.time_grid.ndim != 1 or self.states.shape[0] != self.time_grid.numel():
            raise InputError(
                f"states {tuple(self.states.shape)} must have one entry per grid point "
                f"{tuple(self.time_grid.shape)}"
            )

    @property
    def x_0(self) -> torch.Tensor:
        return self.states[0]

    @property
    def x_1(self) -> torch.Tensor:
        return self.states[-1]


def _forward_grid(grid, dtype, device, name: str) -> torch.Tensor:
    grid = torch.as_tensor(grid, dtype=dtype).to(device)
    check_grid(grid.cpu())
    if grid[-1] < grid[0]:
        raise InputError(f"{name} must run forwards from noise to data (increasing t)")
    return grid


def generate_pairs(
    velocity_fn: VelocityFn,
    x_0: torch.Tensor,
    *,
    time_grid: torch.Tensor,
    method: FixedMethod | AdaptiveMethod = "rk4",
    student_grid: torch.Tensor | None = None,
    autocast_dtype: torch.dtype | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> TeacherPairs:
    """Solve the teacher ODE from ``x_0`` and keep its states at the student grid (no gradients).

    Args:
        velocity_fn: the teacher ``(x_t, t) -> v_t``.
        x_0: ``(B, ...)`` noise.
        time_grid: the teacher's increasing grid (steps of fixed-step methods, end points of
            adaptive ones), e.g. ``uniform_grid(32)``.
        method: any :func:`~flowgen.fm.solvers.sample` method.
        student_grid: increasing ``(K+1,)`` grid with the teacher's end points; its points are
            added to the teacher grid so states are solved there, not interpolated. Default: the
            two end points (one-step distillation, reflow).
        autocast_dtype, rtol, atol: passed to :func:`~flowgen.fm.solvers.sample`.

    Raises:
        InputError: a grid runs backwards or the student grid's end points differ.
    """
    if not torch.is_tensor(x_0) or not x_0.is_floating_point() or x_0.ndim == 0:
        raise InputError("x_0 must be a floating-point tensor of shape (B, ...)")
    dtype = torch.promote_types(x_0.dtype, torch.float32)
    teacher = _forward_grid(time_grid, dtype, x_0.device, "time_grid")
    if student_grid is None:
        student = teacher[[0, -1]]
    else:
        student = _forward_grid(student_grid, dtype, x_0.device, "student_grid")
        ends = torch.stack([student[0] - teacher[0], student[-1] - teacher[-1]]).abs()
        if (ends > 1e-6).any():
            raise InputError(
                f"student_grid must start and end where the teacher's grid does "
                f"({float(teacher[0]):.4g} -> {float(teacher[-1]):.4g}), got "
                f"{float(student[0]):.4g} -> {float(student[-1]):.4g}"
            )
        gap, nearest = (student[:, None] - teacher[None, :]).abs().min(1)  # snap 1-ulp misses
        student = torch.where(gap < 1e-6, teacher[nearest], student)
    grid = torch.unique(torch.cat([teacher, student]))  # sorted; student points are grid points
    keep = set(torch.searchsorted(grid, student).tolist())
    states = [x_0.detach().to(dtype)]

    def collect(i: int, t: torch.Tensor, x: torch.Tensor) -> None:  # x is the state at grid[i+1]
        if i + 1 in keep:
            states.append(x)

    with torch.no_grad():
        sample(
            velocity_fn,
            x_0,
            grid,
            method=method,
            autocast_dtype=autocast_dtype,
            callback=collect,
            rtol=rtol,
            atol=atol,
        )
    return TeacherPairs(time_grid=student, states=torch.stack(states))  # (K+1, B, ...)


def reflow_loss(
    model: VelocityFn,
    x_0: torch.Tensor,
    x_1: torch.Tensor,
    t: torch.Tensor,
    *,
    path: AffinePath | None = None,
) -> torch.Tensor:
    """Flow matching on a fixed coupling ``(x_0, x_1)`` (Liu et al. 2023 eq. 1, Alg. 1).

    With teacher pairs this is one reflow step: ``E||model(x_t, t) - (x_1 - x_0)||^2`` on the
    linear path ``x_t = (1 - t) x_0 + t x_1`` (default ``LinearPath()``).

    Args:
        model: ``(x_t, t (B,)) -> v_t``.
        x_0, x_1: ``(B, ...)`` coupled noise and teacher samples (``pairs.x_0``, ``pairs.x_1``).
        t: ``(B,)`` times, e.g. from :func:`flowgen.fm.time.sample_t`.
        path: probability path; ``None`` for the linear (rectified) path.
    """
    ps = (path or LinearPath()).sample(x_0, x_1, t)
    return cfm_loss(model(ps.x_t, ps.t), ps.dx_t)


def distillation_loss(model: VelocityFn, pairs: TeacherPairs) -> torch.Tensor:
    """Mean squared error of the student's Euler steps between consecutive teacher states.

    For each segment k of ``pairs.time_grid``, ``x_{t_k} + h_k model(x_{t_k}, t_k)`` regresses
    ``x_{t_{k+1}}`` (h_k = t_{k+1} - t_k), averaged over elements, samples and segments; with
    K = 1 it is one-step distillation ``x_0 + model(x_0, 0) ~ x_1`` (Liu et al. 2023 §2.3).

    Args:
        model: the student ``(x_t, t (B,)) -> v_t``.
        pairs: teacher states from :func:`generate_pairs` (or a minibatch of them).
    """
    grid, states = pairs.time_grid, pairs.states
    b = states.shape[1]
    losses = []
    for k in range(grid.numel() - 1):
        x_k, h = states[k], grid[k + 1] - grid[k]
        v_k = model(x_k, grid[k].expand(b))
        if not torch.is_tensor(v_k) or v_k.shape != x_k.shape:
            got = tuple(v_k.shape) if torch.is_tensor(v_k) else type(v_k).__name__
            raise InputError(f"model returned {got}, expected the state's shape {tuple(x_k.shape)}")
        losses.append(cfm_loss(x_k + h * v_k, states[k + 1]))
    return torch.stack(losses).mean()


def straightness(
    velocity_fn: VelocityFn,
    x_0: torch.Tensor,
    *,
    time_grid: torch.Tensor,
    method: FixedMethod | AdaptiveMethod = "rk4",
) -> torch.Tensor:
    """Per-sample straightness ``int_0^1 ||(x_1 - x_0) - v(x_t, t)||^2 dt`` (Liu et al. 2023 §2).

    Solves from ``x_0`` along ``time_grid`` (increasing), evaluates ``v`` at every grid point
    (``len(time_grid)`` extra network calls) and integrates with the trapezoid rule. The squared
    norm sums over the non-batch dims. Returns ``(B,)``; 0 means straight paths.
    """
    pairs = generate_pairs(
        velocity_fn, x_0, time_grid=time_grid, method=method, student_grid=time_grid
    )
    grid, states = pairs.time_grid, pairs.states  # (N+1,), (N+1, B, ...)
    chord = (pairs.x_1 - pairs.x_0).flatten(1)  # (B, D)
    with torch.no_grad():
        dev = torch.stack(
            [
                (chord - velocity_fn(x_t, t).to(chord.dtype).flatten(1)).pow(2).sum(1)
                for x_t, t in zip(states, grid)
            ]
        )  # (N+1, B)
    return torch.trapezoid(dev, grid, dim=0)
