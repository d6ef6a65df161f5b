import json

import pytest
import torch

from flowgen.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_dir,
    load_model,
    read_config,
    resolve_checkpoint,
    save_model,
)
from flowgen.errors import CheckpointError
from flowgen.toy.model import MLPVelocity, MLPVelocityConfig


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = MLPVelocity(MLPVelocityConfig(hidden=16, num_blocks=1, num_classes=3))
    path = save_model(tmp_path / "ckpt", model, extra={"note": "x"})
    return model, path


def test_save_load_round_trip(saved):
    model, path = saved
    loaded = load_model(path)
    assert loaded.config == model.config
    x, t, y = torch.randn(5, 2), torch.rand(5), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(loaded(x, t, y), model(x, t, y))
    kind, config, extra = read_config(path)
    assert kind == "mlp_velocity" and extra == {"note": "x"}
    meta = json.loads((path / CONFIG_NAME).read_text())
    assert meta["format_version"] == 1 and meta["hidden"] == 16


def test_truncated_weights(saved):
    _, path = saved
    data = (path / WEIGHTS_NAME).read_bytes()
    (path / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_model(path)


def test_garbage_weights_and_config(saved):
    _, path = saved
    (path / WEIGHTS_NAME).write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        load_model(path)
    (path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_config(path)


def test_wrong_kind_fields_and_version(saved):
    _, path = saved
    meta = json.loads((path / CONFIG_NAME).read_text())
    for change, pattern in [
        ({"kind": "nope"}, "unknown model kind"),
        ({"hiden": 3}, "unknown field"),
        ({"format_version": 99}, "format_version"),
        ({"hidden": 32}, "do not fit"),
    ]:
        (path / CONFIG_NAME).write_text(json.dumps({**meta, **change}))
        with pytest.raises(CheckpointError, match=pattern):
            load_model(path)


def test_missing_files(tmp_path, saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nowhere")
    (path / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_model(path)


def test_atomic_dir_keeps_the_old_folder_on_failure(saved):
    model, path = saved
    with pytest.raises(RuntimeError), atomic_dir(path) as tmp:
        (tmp / "partial").write_text("half")
        raise RuntimeError("crash while writing")
    assert not (path / "partial").exists()
    torch.testing.assert_close(load_model(path).input_proj.weight, model.input_proj.weight)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt"]  # no temporary leftovers


def test_resolve_checkpoint(saved, monkeypatch, tmp_path):
    _, path = saved
    assert resolve_checkpoint(path) == path
    monkeypatch.setenv("FLOWGEN_CHECKPOINTS", str(path.parent))
    assert resolve_checkpoint("ckpt") == path
    with pytest.raises(CheckpointError, match="shipped names"):
        resolve_checkpoint("missing")
