import pytest
import torch

from flowgen.errors import ConfigError
from flowgen.train.tasks import get_task

from .conftest import tiny_recipe


def _task(tmp_path, **task_args):
    model = task_args.pop("model", None)
    recipe = tiny_recipe(tmp_path, task_args=task_args, model=model)
    return get_task(recipe.task)(recipe.task_args, recipe.model)


def _batch(task, n=64, seed=0):
    return task.make_batch(0, torch.Generator().manual_seed(seed), n)


def test_batch_is_a_pure_function_of_the_generator(tmp_path):
    task = _task(tmp_path, coupling="sinkhorn")  # sinkhorn also draws pairs from the generator
    a, b, c = _batch(task), _batch(task), _batch(task, seed=1)
    assert a.keys() == b.keys() == {"x_0", "x_1", "t"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x_1"], c["x_1"])
    assert a["x_0"].shape == (64, 2) and a["t"].shape == (64,)
    assert float(a["t"].min()) >= 0 and float(a["t"].max()) <= 1


def test_exact_ot_shortens_the_pairs(tmp_path):
    ind = _batch(_task(tmp_path, source="8gaussians", target="moons"), n=128)
    ot = _batch(_task(tmp_path, source="8gaussians", target="moons", coupling="ot"), n=128)
    # same draws, re-paired: the same sets of points, with a smaller total squared distance
    assert torch.equal(ot["x_0"], ind["x_0"])
    assert torch.equal(ot["x_1"].sort(0).values, ind["x_1"].sort(0).values)
    cost = lambda b: (b["x_0"] - b["x_1"]).pow(2).sum()  # noqa: E731
    assert cost(ot) < 0.5 * cost(ind)


def test_wcfm_weights_reach_the_loss(tmp_path):
    task = _task(tmp_path, coupling="wcfm", wcfm_eps=5.0)
    batch = _batch(task)
    assert batch["weights"].shape == (64,)
    torch.testing.assert_close(batch["weights"].mean(), torch.tensor(1.0))
    model = task.build_model()
    weighted = task.loss(model, batch)
    plain = task.loss(model, {k: v for k, v in batch.items() if k != "weights"})
    assert not torch.allclose(weighted, plain)


def test_class_conditioning_with_label_dropout(tmp_path):
    task = _task(tmp_path, coupling="class_ot", label_dropout=0.25, model={"num_classes": 8})
    batch = _batch(task, n=1024)
    y = batch["y"]
    assert y.dtype == torch.long and int(y.min()) >= 0 and int(y.max()) <= 8
    assert 0.18 < float((y == 8).float().mean()) < 0.32  # the null label, for CFG
    # kept labels name the 8gaussians mode each x_1 came from (angle k * 45 degrees)
    kept = y != 8
    angle = torch.atan2(batch["x_1"][kept, 1], batch["x_1"][kept, 0])
    mode = torch.round(angle / (torch.pi / 4)).long() % 8
    assert float((mode == y[kept]).float().mean()) > 0.99
    assert task.loss(task.build_model(), batch).ndim == 0


@pytest.mark.parametrize(
    "args, message",
    [
        ({"model": {"num_classes": 3}}, "num_classes is 3"),
        ({"target": "normal", "model": {"num_classes": 2}}, "no labels"),
        ({"target": "normal", "coupling": "class_ot"}, "needs a labelled target"),
        ({"model": {"dim": 3}}, "dim: 2"),
    ],
)
def test_inconsistent_setups_are_config_errors(tmp_path, args, message):
    with pytest.raises(ConfigError, match=message):
        _task(tmp_path, **args)


def test_evaluate_and_sample_hooks(tmp_path):
    task = _task(tmp_path)
    model = task.build_model().eval()
    metrics = task.evaluate(model)
    assert set(metrics) == {"w2", "val_loss"} and all(v > 0 for v in metrics.values())
    task.sample(model, tmp_path / "samples", step=7)
    lines = (tmp_path / "samples" / "samples.csv").read_text().splitlines()
    assert lines[0] == "x,y" and len(lines) == 1 + task.args.eval_samples
