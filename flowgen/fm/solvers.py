"""ODE samplers for flow models: ``dx/dt = v(x_t, t)`` from ``x_0`` along a time grid.

Every sampler is one plain function call, ``sample(velocity_fn, x_0, time_grid, method=...)``:
- fixed-step ``euler`` (1 NFE/step), ``midpoint`` and ``heun`` (2, second order), ``rk4`` (4, fourth
  order) in plain torch;
- adaptive ``dopri5``, ``dopri8``, ``bosh3``, ``adaptive_heun``, ``fehlberg2`` through torchdiffeq.

The number of network evaluations (NFE) is counted exactly, not estimated. The ODE state is kept
in at least fp32 while the network may run under autocast (``autocast_dtype=torch.bfloat16``), so
low-precision networks do not make the state drift or stall. Non-finite values are detected
without a host sync per step and reported with the step and time at which they appeared. For CUDA,
:class:`GraphedSampler` captures a whole fixed-step solve into one CUDA graph.

``velocity_fn(x_t, t)`` receives ``x_t`` of the state's shape and ``t`` as a 0-dim tensor on the
same device; it returns ``v_t`` of the same shape. Grids may run backwards (1 -> 0, e.g. for
likelihoods).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from flowgen.errors import InputError, IntegrationError
from flowgen.fm.time import check_grid

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]
FixedMethod = Literal["euler", "midpoint", "heun", "rk4"]
AdaptiveMethod = Literal["dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2"]

NFE_PER_STEP: dict[str, int] = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}
ADAPTIVE_METHODS: tuple[str, ...] = ("dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2")
METHODS: tuple[str, ...] = (*NFE_PER_STEP, *ADAPTIVE_METHODS)


@dataclass(frozen=True)
class ODESolution:
    """Result of a solve: the final state, the exact NFE and, if asked, the states on the grid."""

    x: torch.Tensor
    nfe: int
    trajectory: torch.Tensor | None  # (len(time_grid), *x.shape) or None


class _Field:
    """Wraps ``velocity_fn``: counts calls, runs it under autocast, returns state-dtype output."""

    def __init__(self, velocity_fn: VelocityFn, autocast_dtype: torch.dtype | None, state_dtype):
        self.velocity_fn = velocity_fn
        self.autocast_dtype = autocast_dtype
        self.state_dtype = state_dtype
        self.nfe = 0
        self.step = 0  # the step being computed, for error messages

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        if self.autocast_dtype is None:
            v = self.velocity_fn(x, t)
        else:
            with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
                v = self.velocity_fn(x, t)
        if not torch.is_tensor(v) or v.shape != x.shape:
            got = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
            raise InputError(
                f"velocity_fn returned {got} at step {self.step}, expected the state's shape "
                f"{tuple(x.shape)}"
            )
        return v.to(self.state_dtype)


# --- one step of each fixed-step method: x_{t+h} from x_t -----------------------------------
def _euler(f: _Field, x, t, h):
    return x + h * f(x, t)


def _midpoint(f: _Field, x, t, h):
    k1 = f(x, t)
    return x + h * f(x + 0.5 * h * k1, t + 0.5 * h)


def _heun(f: _Field, x, t, h):
    k1 = f(x, t)
    k2 = f(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


def _rk4(f: _Field, x, t, h):
    k1 = f(x, t)
    k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = f(x + h * k3, t + h)
    return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


_STEPPERS = {"euler": _euler, "midpoint": _midpoint, "heun": _heun, "rk4": _rk4}


def _prepare(x_0: torch.Tensor, time_grid, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not torch.is_tensor(x_0) or not x_0.is_floating_point() or x_0.ndim == 0:
        raise InputError("x_0 must be a floating-point tensor of shape (B, ...)")
    if method not in METHODS:
        raise InputError(f"unknown ODE method {method!r}; choose one of {list(METHODS)}")
    state_dtype = torch.promote_types(x_0.dtype, torch.float32)
    grid = torch.as_tensor(time_grid, dtype=state_dtype).to(x_0.device)
    check_grid(grid.cpu())
    return x_0.to(state_dtype), grid


def _integrate_fixed(
    f: _Field,
    x: torch.Tensor,
    grid: torch.Tensor,
    stepper,
    callback: Callback | None,
    trajectory: list[torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the fixed-step loop; returns the final state and a per-step non-finite flag."""
    n_steps = grid.numel() - 1
    bad = torch.zeros(n_steps, dtype=torch.bool, device=x.device)
    for i in range(n_steps):
        f.step = i
        t, h = grid[i], grid[i + 1] - grid[i]
        x = stepper(f, x, t, h)
        bad[i] = ~torch.isfinite(x).all()  # no host sync: checked once after the loop
        if trajectory is not None:
            trajectory.append(x)
        if callback is not None:
            callback(i, grid[i + 1], x)
    return x, bad


def _raise_if_bad(bad: torch.Tensor, grid: torch.Tensor) -> None:
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise IntegrationError(
            f"non-finite values appeared at step {i} (t={float(grid[i]):.4g} -> "
            f"{float(grid[i + 1]):.4g}); the network or its input diverged"
        )


def sample(
    velocity_fn: VelocityFn,
    x_0: torch.Tensor,
    time_grid: torch.Tensor,
    *,
    method: FixedMethod | AdaptiveMethod = "euler",
    autocast_dtype: torch.dtype | None = None,
    callback: Callback | None = None,
    return_trajectory: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> ODESolution:
    """Integrate ``dx/dt = velocity_fn(x, t)`` from ``x_0`` at ``time_grid[0]`` to ``time_grid[-1]``.

    Args:
        velocity_fn: ``(x_t, t) -> v_t``; ``t`` is a 0-dim tensor.
        x_0: ``(B, ...)`` start state (noise when sampling); fp16/bf16 input is promoted to fp32.
        time_grid: ``(N+1,)`` strictly monotone points in [0, 1]; the steps for fixed-step methods,
            the output times for adaptive ones (see :mod:`flowgen.fm.time` for grid builders).
        method: fixed-step ``euler | midpoint | heun | rk4`` or adaptive (torchdiffeq) ``dopri5 |
            dopri8 | bosh3 | adaptive_heun | fehlberg2``.
        autocast_dtype: run the network under ``torch.autocast`` with this dtype; the state stays
            fp32.
        callback: ``callback(i, t_next, x)`` after each step (each output time for adaptive).
        return_trajectory: also return the states at every grid point.
        rtol, atol: tolerances of adaptive methods.

    Raises:
        InputError: bad shapes, grid or method. IntegrationError: non-finite state, naming the step.
    """
    x, grid = _prepare(x_0, time_grid, method)
    f = _Field(velocity_fn, autocast_dtype, x.dtype)
    trajectory = [x] if return_trajectory else None
    if method in _STEPPERS:
        x, bad = _integrate_fixed(f, x, grid, _STEPPERS[method], callback, trajectory)
        _raise_if_bad(bad, grid)
    else:
        x = _integrate_adaptive(f, x, grid, method, rtol, atol, callback, trajectory)
    traj = torch.stack(trajectory) if trajectory is not None else None
    return ODESolution(x=x, nfe=f.nfe, trajectory=traj)


def _integrate_adaptive(f: _Field, x, grid, method, rtol, atol, callback, trajectory):
    from torchdiffeq import odeint

    try:
        states = odeint(lambda t, y: f(y, t), x, grid, method=method, rtol=rtol, atol=atol)
    except AssertionError as err:  # torchdiffeq signals step-size underflow with assertions
        raise IntegrationError(f"adaptive solver {method} failed near NFE {f.nfe}: {err}") from err
    for i in range(1, grid.numel()):
        if not torch.isfinite(states[i]).all():
            raise IntegrationError(
                f"non-finite values appeared between output times t={float(grid[i - 1]):.4g} and "
                f"t={float(grid[i]):.4g} ({method}, NFE {f.nfe})"
            )
        if trajectory is not None:
            trajectory.append(states[i])
        if callback is not None:
            callback(i - 1, grid[i], states[i])
    return states[-1]


class GraphedSampler:
    """A fixed-step solve captured once into a CUDA graph and replayed for new ``x_0``.

    Removes per-kernel launch overhead, which dominates small networks at small batch sizes.
    The shape, dtype, grid and method are fixed at capture; ``velocity_fn`` must be graph-safe
    (no host syncs, no data-dependent control flow). Each call copies ``x_0`` into the static
    input buffer, replays the graph and returns a copy of the result.
    """

    def __init__(
        self,
        velocity_fn: VelocityFn,
        example_x_0: torch.Tensor,
        time_grid: torch.Tensor,
        *,
        method: FixedMethod = "euler",
        autocast_dtype: torch.dtype | None = None,
        warmup: int = 2,
    ):
        if example_x_0.device.type != "cuda":
            raise InputError("GraphedSampler needs a CUDA tensor; use sample() on other devices")
        if method not in _STEPPERS:
            raise InputError(
                f"CUDA graphs need a fixed-step method {list(_STEPPERS)}, got {method!r}"
            )
        x, self.grid = _prepare(example_x_0, time_grid, method)
        self.method = method
        self.nfe = NFE_PER_STEP[method] * (self.grid.numel() - 1)
        self._field = _Field(velocity_fn, autocast_dtype, x.dtype)
        self._x_in = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up outside the graph (allocations, autotuning)
            for _ in range(warmup):
                _integrate_fixed(self._field, self._x_in, self.grid, _STEPPERS[method], None, None)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._x_out, self._bad = _integrate_fixed(
                self._field, self._x_in, self.grid, _STEPPERS[method], None, None
            )

    def __call__(self, x_0: torch.Tensor) -> ODESolution:
        if x_0.shape != self._x_in.shape:
            raise InputError(
                f"captured for shape {tuple(self._x_in.shape)}, got {tuple(x_0.shape)}"
            )
        self._x_in.copy_(x_0)
        self.graph.replay()
        _raise_if_bad(self._bad, self.grid)
        return ODESolution(x=self._x_out.clone(), nfe=self.nfe, trajectory=None)
