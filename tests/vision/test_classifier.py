import json

import pytest
import torch

from flowgen.checkpoint import (
    CONFIG_NAME,
    load_model,
    read_config,
    resolve_checkpoint,
    save_model,
)
from flowgen.errors import InputError
from flowgen.vision.classifier import ImageClassifier, ImageClassifierConfig
from flowgen.vision.metrics import FeatureExtractor

from .conftest import REAL_FMNIST

TINY = ImageClassifierConfig(channels=(8, 16), feature_dim=12, groups=4)


def test_shapes_and_feature_protocol():
    model = ImageClassifier(TINY).eval()
    images = torch.rand(5, 1, 28, 28) * 2 - 1
    assert isinstance(model, FeatureExtractor)
    assert model.features(images).shape == (5, 12)
    assert model(images).shape == (5, 10)
    # features of one image do not depend on the rest of the batch (GroupNorm, eval mode)
    torch.testing.assert_close(model.features(images[:1]), model.features(images)[:1])
    with pytest.raises(InputError, match=r"\(B, 1, 28, 28\)"):
        model.features(torch.zeros(2, 3, 28, 28))


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        ImageClassifierConfig(image_size=30, channels=(8, 16, 32))
    with pytest.raises(ValueError, match="groups"):
        ImageClassifierConfig(channels=(8, 12), groups=8)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(
        ImageClassifierConfig(
            in_channels=3, image_size=16, channels=(8,), feature_dim=6, groups=2, num_classes=4
        )
    ).eval()
    path = save_model(tmp_path / "clf", model, extra={"class_names": list("abcd")})
    loaded = load_model(path)
    assert isinstance(loaded, ImageClassifier) and loaded.config == model.config
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded.features(images), model.features(images))
    kind, _, extra = read_config(path)
    assert kind == "image_classifier" and extra["class_names"] == list("abcd")
    assert json.loads((path / CONFIG_NAME).read_text())["channels"] == [8]


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = ImageClassifier(TINY)
    images = torch.rand(16, 1, 28, 28) * 2 - 1
    labels = torch.arange(16) % 10
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert loss.item() < 0.05
    assert (model(images).argmax(1) == labels).all()


def test_shipped_checkpoint_loads():
    """The shipped feature classifier must always load (no dataset needed)."""
    path = resolve_checkpoint("fmnist_classifier")
    model = load_model(path)
    assert isinstance(model, ImageClassifier)
    assert (model.config.in_channels, model.config.image_size) == (1, 28)
    _, _, extra = read_config(path)
    assert extra["class_names"][0] == "T-shirt/top" and len(extra["class_names"]) == 10
    with torch.no_grad():
        feats = model.features(torch.zeros(2, 1, 28, 28))
    assert feats.shape == (2, model.feature_dim) and torch.isfinite(feats).all()
    assert (path / "README.md").is_file()


@pytest.mark.skipif(not REAL_FMNIST.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_shipped_checkpoint_accuracy_on_real_test_set():
    from flowgen.vision.data import FashionMNIST
    from flowgen.vision.metrics import extract_features, fid_from_features
    from flowgen.vision.report import gaussian_blur

    model = load_model(resolve_checkpoint("fmnist_classifier"))
    test = FashionMNIST(REAL_FMNIST, "test")
    images, labels = test.batch(range(2000))
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.87  # 0.8996 on all 10,000
    feats = extract_features(model, images)
    floor = fid_from_features(feats[:1000], feats[1000:])  # ~8.7: the bias of 1k vs 1k
    blurred = extract_features(model, gaussian_blur(images[1000:], 1.0))
    assert floor < 15.0 and fid_from_features(feats[:1000], blurred) > 5 * floor
