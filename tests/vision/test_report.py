import json

import torch

from flowgen.checkpoint import save_model
from flowgen.vision.classifier import ImageClassifier, ImageClassifierConfig
from flowgen.vision.report import add_noise, classifier_report, gaussian_blur, main

from .conftest import write_fmnist


def test_blur_keeps_constants_and_smooths():
    flat = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)
    spike = torch.zeros(1, 1, 9, 9)
    spike[0, 0, 4, 4] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.shape == spike.shape
    assert abs(blurred.sum().item() - 1) < 1e-5
    assert blurred[0, 0, 4, 4] < 0.2 and blurred[0, 0, 4, 5] > 0.05


def test_noise_is_clipped_and_seeded():
    images = torch.ones(3, 1, 4, 4)
    a = add_noise(images, 0.5, torch.Generator().manual_seed(0))
    b = add_noise(images, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.max() <= 1 and a.min() >= -1


def test_report_on_tiny_data(tmp_path, capsys):
    write_fmnist(tmp_path / "data", "train", n=30, seed=0)
    write_fmnist(tmp_path / "data", "test", n=24, seed=1)
    model = ImageClassifier(ImageClassifierConfig(channels=(8,), feature_dim=4, groups=4))
    ckpt = save_model(tmp_path / "clf", model)
    report = classifier_report(ckpt, root=tmp_path / "data", pr_samples=20)
    assert 0 <= report["test_accuracy"] <= 1 and report["feature_dim"] == 4
    assert report["fid_train_vs_test"] >= 0
    assert set(report["test_vs_degraded_test"]) >= {"noise_std_0.1", "blur_sigma_1"}
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "--checkpoint",
                str(ckpt),
                "--root",
                str(tmp_path / "data"),
                "--pr-samples",
                "20",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["feature_dim"] == 4
    assert main(["--checkpoint", str(ckpt), "--root", str(tmp_path / "none")]) == 2
    assert "apt-get install" in capsys.readouterr().err
