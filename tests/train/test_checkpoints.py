"""Damaged checkpoints and training states raise CheckpointError; the CLI prints one line."""

import shutil
import subprocess
import sys

import pytest
import torch

from flowgen.checkpoint import load_model
from flowgen.cli import main
from flowgen.errors import CheckpointError
from flowgen.train.state import load_training_state, resolve_resume
from flowgen.train.trainer import Trainer

from .conftest import REPO, tiny_recipe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_recipe(out, train={"steps": 4, "save_every": 2})).train()
    return out


@pytest.fixture
def checkpoint(run_dir, tmp_path):
    """A private copy of a good checkpoint folder, inside a run layout, to damage."""
    folder = tmp_path / "run" / "checkpoints" / "step_0000004"
    shutil.copytree(run_dir / "checkpoints" / "step_0000004", folder)
    return folder


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class _NotATensor:
    pass


DAMAGE = {
    "truncated weights": (lambda f: _truncate(f / "model.safetensors"), "truncated or corrupted"),
    "garbage config": (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
    "truncated state": (lambda f: _truncate(f / "training_state.pt"), "truncated or corrupted"),
    "empty state": (lambda f: (f / "training_state.pt").write_bytes(b""), "truncated or corrupted"),
    "missing state": (lambda f: (f / "training_state.pt").unlink(), "has no training_state.pt"),
    "missing weights": (
        lambda f: (f / "model.safetensors").unlink(),
        "model.safetensors is missing",
    ),
    "missing config": (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    "foreign state": (
        lambda f: torch.save({"step": 3}, f / "training_state.pt"),
        "not a flowgen training state",
    ),
    "pickled object": (
        lambda f: torch.save({"x": _NotATensor()}, f / "training_state.pt"),
        "refused by weights_only",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_checkpoint_raises_checkpoint_error(checkpoint, damage):
    hurt, message = DAMAGE[damage]
    hurt(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        load_training_state(checkpoint)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_cli_resume_of_damaged_checkpoint_prints_one_line(checkpoint, damage, capsys):
    hurt, message = DAMAGE[damage]
    hurt(checkpoint)
    code = main(["train", "--resume", str(checkpoint), "--cpu"])  # recipe: the checkpoint's own
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("flowgen train: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_damaged_weights_also_fail_load_model(checkpoint):
    _truncate(checkpoint / "model.safetensors")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_model(checkpoint)


def test_final_folder_is_not_resumable(run_dir):
    with pytest.raises(CheckpointError, match="final/ folder holds only"):
        load_training_state(run_dir / "final")


def test_resume_path_that_is_neither_run_nor_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        resolve_resume(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        resolve_resume(tmp_path / "empty", tmp_path)


def test_resume_a_run_folder_picks_its_newest_checkpoint(run_dir):
    assert resolve_resume(run_dir, "unused") == run_dir / "checkpoints" / "step_0000004"
    assert resolve_resume("auto", run_dir) == run_dir / "checkpoints" / "step_0000004"


def test_real_command_has_no_traceback(checkpoint, tmp_path):
    """The installed entry point path: python -m flowgen.cli, a fresh interpreter."""
    _truncate(checkpoint / "training_state.pt")
    cmd = [sys.executable, "-m", "flowgen.cli", "train", "--resume", str(checkpoint), "--cpu"]
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "training_state.pt is truncated or corrupted" in proc.stderr
