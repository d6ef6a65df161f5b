"""The fmnist_classifier trainer task, on a tiny synthetic Fashion-MNIST."""

import pytest
import torch

from flowgen.errors import ConfigError
from flowgen.train.config import parse_recipe
from flowgen.train.vision_tasks import FMNISTClassifierArgs, FMNISTClassifierTask, shift_images
from flowgen.vision.classifier import ImageClassifierConfig

from .conftest import write_fmnist

TINY = ImageClassifierConfig(channels=(8, 16), feature_dim=12, groups=4)


@pytest.fixture
def task(tmp_path):
    write_fmnist(tmp_path, "train", n=40, seed=0)
    write_fmnist(tmp_path, "test", n=20, seed=1)
    args = FMNISTClassifierArgs(root=str(tmp_path), augment="flip_shift", eval_batch=8)
    return FMNISTClassifierTask(args, TINY)


def test_batch_is_a_pure_function_of_the_generator(task):
    a = task.make_batch(3, torch.Generator().manual_seed(7), 16)
    b = task.make_batch(3, torch.Generator().manual_seed(7), 16)
    c = task.make_batch(3, torch.Generator().manual_seed(8), 16)
    assert a["images"].shape == (16, 1, 28, 28) and a["labels"].shape == (16,)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["images"], c["images"])
    assert a["images"].min() >= -1 and a["images"].max() <= 1


def test_loss_and_evaluate(task):
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.make_batch(0, torch.Generator().manual_seed(0), 8)
    loss = task.loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    metrics = task.evaluate(model.eval())
    assert set(metrics) == {"accuracy", "loss"} and 0 <= metrics["accuracy"] <= 1
    assert task.checkpoint_extra()["class_names"][9] == "Ankle boot"


def test_shift_images():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = shift_images(images, torch.tensor([[1, 0], [0, -1]]), fill=-1.0)
    torch.testing.assert_close(out[0, 0, 1:], images[0, 0, :-1])  # down by one row
    assert out[0, 0, 0].eq(-1).all()
    torch.testing.assert_close(out[1, 0, :, :-1], images[1, 0, :, 1:])  # left by one column
    assert out[1, 0, :, -1].eq(-1).all()


def test_recipe_validation(tmp_path):
    raw = {"task": "fmnist_classifier", "model": {"in_channels": 3}, "task_args": {}}
    recipe = parse_recipe(raw)
    with pytest.raises(ConfigError, match="in_channels: 1"):
        FMNISTClassifierTask(recipe.task_args, recipe.model)
    with pytest.raises(ConfigError, match="augment"):
        parse_recipe({**raw, "task_args": {"augment": "rotate"}})


def test_shipped_recipe_parses():
    from flowgen.train.config import load_recipe

    from .conftest import REPO

    recipe = load_recipe(REPO / "recipes" / "fmnist_classifier.yaml")
    assert recipe.task == "fmnist_classifier" and recipe.model.feature_dim == 128
