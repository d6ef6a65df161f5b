import math

import pytest
import torch

from flowgen.train.ema import EMA
from flowgen.train.schedule import lr_factor, warmup_cosine


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 0.1),  # warmup: (s + 1) / W
        (4, 0.5),
        (9, 1.0),
        (10, 1.0),  # cosine starts at its top
        (55, 0.1 + 0.9 * 0.5),  # halfway: cos(pi / 2) = 0
        (100, 0.1),  # ends at min_ratio
        (150, 0.1),  # and stays there
    ],
)
def test_warmup_cosine_values(step, expected):
    assert lr_factor(step, warmup=10, total=100, min_ratio=0.1) == pytest.approx(expected)


def test_cosine_formula_at_a_quarter():
    got = lr_factor(10 + 25, warmup=10, total=110, min_ratio=0.0)
    assert got == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_applies_the_factor_per_optimizer_step():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = warmup_cosine(opt, warmup=3, total=10, min_ratio=0.0)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([2.0 * lr_factor(s, warmup=3, total=10) for s in range(10)])


def test_ema_matches_manual_computation():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.named_parameters()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 3))  # moves the BatchNorm running stats (buffers are copied)
        ema.update(model)
        for k, p in model.named_parameters():
            expected[k] = 0.9 * expected[k] + 0.1 * p.detach()
    for k, p in ema.module.named_parameters():
        torch.testing.assert_close(p, expected[k], rtol=0, atol=1e-6)
        assert not p.requires_grad and p.dtype == torch.float32
    torch.testing.assert_close(ema.module[1].running_mean, model[1].running_mean)
    assert ema.num_updates == 3


def test_ema_is_fp32_for_a_bf16_model_and_round_trips():
    model = torch.nn.Linear(2, 2).to(torch.bfloat16)
    ema = EMA(model, decay=0.5)
    assert ema.module.weight.dtype == torch.float32
    ema.update(model)
    other = EMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    torch.testing.assert_close(other.module.weight, ema.module.weight)


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError):
        EMA(torch.nn.Linear(1, 1), decay=1.0)
