import pytest
import torch

from flowgen.errors import InputError
from flowgen.fm.guidance import cfg_velocity
from flowgen.fm.solvers import sample
from flowgen.fm.time import uniform_grid


class Recorder:
    """v(x, t, c) = x * c: conditional branch c = 2, unconditional c = 0."""

    def __init__(self):
        self.batch_sizes = []

    def __call__(self, x, t, c):
        self.batch_sizes.append(x.shape[0])
        return x * c[:, None]


def test_scale_formula_and_single_batched_forward():
    model = Recorder()
    cond, uncond = torch.full((4,), 2.0), torch.zeros(4)
    v = cfg_velocity(model, cond, uncond, scale=3.0)
    x = torch.randn(4, 2)
    torch.testing.assert_close(v(x, torch.tensor(0.5)), 0 + 3.0 * (2 * x - 0))
    assert model.batch_sizes == [8]


def test_scale_one_is_conditional_only():
    model = Recorder()
    v = cfg_velocity(model, torch.full((4,), 2.0), torch.zeros(4), scale=1.0)
    x = torch.randn(4, 2)
    torch.testing.assert_close(v(x, torch.tensor(0.5)), 2 * x)
    assert model.batch_sizes == [4]


def test_interval_limits_guidance():
    model = Recorder()
    v = cfg_velocity(model, torch.full((3,), 2.0), torch.zeros(3), scale=4.0, interval=(0.15, 0.65))
    sample(v, torch.randn(3, 2), uniform_grid(10))  # steps start at t = 0, 0.1, ..., 0.9
    guided_steps = [bs == 6 for bs in model.batch_sizes]
    assert guided_steps == [2 <= i <= 6 for i in range(10)]


def test_dict_conditions_and_bad_interval():
    def model(x, t, c):
        return x * c["a"][:, None]

    v = cfg_velocity(model, {"a": torch.ones(2)}, {"a": torch.zeros(2)}, scale=2.0)
    x = torch.randn(2, 3)
    torch.testing.assert_close(v(x, torch.tensor(0.1)), 2 * x)
    with pytest.raises(InputError):
        cfg_velocity(
            model, {"a": torch.ones(2)}, {"a": torch.zeros(2)}, scale=2.0, interval=(0.8, 0.2)
        )
