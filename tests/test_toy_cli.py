"""The main job: ``flowgen toy sample`` on the shipped checkpoint, and its error handling."""

import json
import subprocess
import sys

import pytest
import torch

from flowgen.checkpoint import save_model
from flowgen.cli import main
from flowgen.toy.model import MLPVelocity, MLPVelocityConfig


def test_shipped_checkpoint_samples_the_target(tmp_path, capsys):
    out = tmp_path / "grid.png"
    pts = tmp_path / "pts.pt"
    args = ["toy", "sample", "--num", "1000", "--steps", "8", "-o", str(out), "--json"]
    assert main([*args, "--save-points", str(pts)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["nfe"] == 16 and summary["target"] == "8gaussians"
    assert summary["w2_squared"] < 1.0  # the model card reports ~0.2 with 2,000 points
    assert out.stat().st_size > 10_000
    # same seed, same samples
    assert main([*args, "--save-points", str(tmp_path / "again.pt")]) == 0
    torch.testing.assert_close(torch.load(pts), torch.load(tmp_path / "again.pt"))


def test_conditional_checkpoint_with_guidance(tmp_path, capsys):
    model = MLPVelocity(MLPVelocityConfig(hidden=16, num_blocks=1, num_classes=2))
    ckpt = save_model(
        tmp_path / "cond", model, extra={"task_args": {"source": "8gaussians", "target": "moons"}}
    )
    base = ["toy", "sample", "--checkpoint", str(ckpt), "-o", str(tmp_path / "c.png")]
    assert main([*base, "--num", "64", "--cfg", "2.0", "--class", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nfe"] == 16
    assert main([*base, "--class", "5"]) == 2
    assert "--class must be in 0..1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "no_such_model"], "no checkpoint at"),
        (["--num", "0"], "--num must be >= 1"),
        (["-o", "out.jpg"], ".png"),
        (["--method", "rk45"], "unknown ODE method"),
        (["--class", "1"], "unconditional"),
    ],
)
def test_user_mistakes_are_one_line_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["toy", "sample", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "flowgen.cli", "toy", "sample", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "examples:" in out.stdout and "--steps" in out.stdout
