import pytest
import torch

from flowgen.errors import InputError
from flowgen.fm import time as T


@pytest.mark.parametrize(
    "grid",
    [
        T.uniform_grid(10),
        T.shifted_grid(10, 3.0),
        T.sway_grid(10, -1.0),
        T.time_grid(7, "sway", coef=0.5),
    ],
)
def test_grids_span_0_to_1_and_are_monotone(grid):
    assert grid[0] == 0 and abs(float(grid[-1]) - 1) < 1e-6
    assert (grid.diff() > 0).all()


def test_shift_one_is_identity_and_shift_moves_towards_noise():
    t = torch.linspace(0, 1, 9)
    torch.testing.assert_close(T.shift_time(t, 1.0), t)
    assert (T.shift_time(t[1:-1], 3.0) < t[1:-1]).all()
    # SD3 in noise level s = 1 - t: s' = shift s / (1 + (shift - 1) s)
    s = 1 - t
    torch.testing.assert_close(1 - T.shift_time(t, 3.0), 3 * s / (1 + 2 * s))


def test_sway_concentrates_steps_near_noise():
    grid = T.sway_grid(16, -1.0)
    assert grid.diff()[0] < grid.diff()[-1]
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(T.sway_time(t, -1.0), t - (torch.cos(torch.pi / 2 * t) - 1 + t))


def test_training_samplers():
    g = torch.Generator().manual_seed(0)
    u = T.sample_t(100_000, "uniform", generator=g)
    ln = T.sample_t(100_000, "logit_normal", mean=0.0, std=1.0, generator=g)
    sh = T.sample_t(100_000, "shifted", shift=3.0, generator=g)
    for t in (u, ln, sh):
        assert t.shape == (100_000,) and t.min() >= 0 and t.max() <= 1
    assert abs(u.mean().item() - 0.5) < 0.01
    assert abs(ln.median().item() - 0.5) < 0.01 and ln.std() < u.std()
    assert sh.mean() < 0.45  # shift > 1 spends more training time near noise


def test_custom_grid_and_errors():
    torch.testing.assert_close(T.custom_grid([0.0, 0.3, 1.0]), torch.tensor([0.0, 0.3, 1.0]))
    for bad in ([0.0], [0.0, 0.5, 0.4, 1.0], [0.0, 1.2]):
        with pytest.raises(InputError):
            T.custom_grid(bad)
    with pytest.raises(InputError):
        T.uniform_grid(0)
    with pytest.raises(InputError):
        T.time_grid(4, "cosine")
    with pytest.raises(InputError):
        T.sample_t(4, "beta")
    with pytest.raises(InputError):
        T.sway_time(torch.rand(3), 2.0)
