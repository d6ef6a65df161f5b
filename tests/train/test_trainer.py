"""End-to-end runs of the trainer on tiny toy2d recipes (one CPU thread each)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from flowgen.checkpoint import load_model, read_config
from flowgen.errors import ConfigError
from flowgen.train.logs import metric, read_log
from flowgen.train.schedule import lr_factor
from flowgen.train.state import list_checkpoints
from flowgen.train.trainer import Trainer

from .conftest import REPO, tiny_recipe


def _state(folder):
    return torch.load(folder / "training_state.pt", weights_only=True)


def _assert_same_tensors(a, b, *, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k


def test_trainer_learns_and_logs_the_schedule(tmp_path):
    recipe = tiny_recipe(
        tmp_path,
        model={"hidden": 64, "num_blocks": 2},
        train={"steps": 300, "batch_size": 256, "warmup": 20, "log_every": 1, "eval_every": 300},
        task_args={"eval_samples": 500},
    )
    result = Trainer(recipe).train()
    losses = [v for _, v in metric(tmp_path / "log.csv", "train/loss")]
    first, last = sum(losses[:5]) / 5, sum(losses[-50:]) / 50
    assert last < 0.5 * first, (first, last)  # ~14 -> ~5 (the CFM loss has a floor above 0)
    assert result.step == 300 and result.final == tmp_path / "final"
    ((w2_step, w2),) = metric(tmp_path / "log.csv", "eval/w2")
    assert w2_step == 300 and w2 < 3.0  # an untrained model is at ~15
    for step, lr in metric(tmp_path / "log.csv", "train/lr"):
        assert lr == pytest.approx(3e-3 * lr_factor(step - 1, warmup=20, total=300))


def test_interrupted_then_resumed_run_is_exact(tmp_path):
    full = tiny_recipe(tmp_path / "full", train={"steps": 30, "log_every": 4, "save_every": 10})
    Trainer(full).train()

    part = tiny_recipe(tmp_path / "part", train={"steps": 30, "log_every": 4, "save_every": 10})
    first = Trainer(part).train(max_steps=13)  # mid log window, between periodic saves
    assert first.step == 13 and first.final is None
    assert [s for s, _ in list_checkpoints(tmp_path / "part")] == [10, 13]
    second = Trainer(part).train(resume="auto")
    assert second.step == 30 and second.final is not None

    a = _state(tmp_path / "full/checkpoints/step_0000030")
    b = _state(tmp_path / "part/checkpoints/step_0000030")
    _assert_same_tensors(a["model"], b["model"])
    _assert_same_tensors(a["ema"]["weights"], b["ema"]["weights"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        _assert_same_tensors(a["optimizer"]["state"][k], b["optimizer"]["state"][k])
    assert read_log(tmp_path / "full/log.csv") == read_log(tmp_path / "part/log.csv")
    assert (tmp_path / "full/final/model.safetensors").read_bytes() == (
        tmp_path / "part/final/model.safetensors"
    ).read_bytes()


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    runs = {}
    for accum in (1, 4):
        out = tmp_path / f"accum{accum}"
        Trainer(tiny_recipe(out, train={"grad_accum": accum})).train()
        runs[accum] = out
    la, lb = (metric(runs[a] / "log.csv", "train/loss") for a in (1, 4))
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=1e-5, atol=1e-6)
    sa, sb = (_state(runs[a] / "checkpoints/step_0000020") for a in (1, 4))
    _assert_same_tensors(sa["model"], sb["model"], atol=1e-5)


def test_two_processes_match_one(tmp_path):
    """torchrun, 2 CPU processes over gloo (2 micro-batches each) == 1 process (4 micro-batches)."""
    train = {"steps": 12, "batch_size": 64}
    one = tiny_recipe(tmp_path / "one", train={**train, "grad_accum": 4})
    Trainer(one).train()

    two = tiny_recipe(tmp_path / "two", train={**train, "grad_accum": 2})
    recipe_file = tmp_path / "two.yaml"
    recipe_file.write_text(two.to_yaml())
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "flowgen.cli", "train", str(recipe_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes (multi_cpu)" in proc.stdout, proc.stdout

    l1 = metric(tmp_path / "one/log.csv", "train/loss")
    l2 = metric(tmp_path / "two/log.csv", "train/loss")
    assert [s for s, _ in l1] == [s for s, _ in l2] == list(range(1, 13))
    torch.testing.assert_close(torch.tensor(l2), torch.tensor(l1), rtol=1e-5, atol=1e-6)
    s1, s2 = (_state(tmp_path / f"{n}/checkpoints/step_0000012") for n in ("one", "two"))
    _assert_same_tensors(s1["model"], s2["model"], atol=1e-5)
    _assert_same_tensors(s1["ema"]["weights"], s2["ema"]["weights"], atol=1e-5)


def test_checkpoint_folder_round_trip(tmp_path):
    recipe = tiny_recipe(tmp_path, model={"num_classes": 8}, train={"steps": 5})
    trainer = Trainer(recipe)
    trainer.train()
    folder = tmp_path / "checkpoints/step_0000005"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "recipe.yaml",
        "training_state.pt",
    ]
    kind, config, extra = read_config(folder)
    assert kind == "mlp_velocity" and config == recipe.model
    assert extra["task"] == "toy2d" and extra["step"] == 5
    assert extra["task_args"]["target"] == "8gaussians"

    state = _state(folder)
    model = load_model(folder)
    final = load_model(tmp_path / "final")
    x, t, y = torch.randn(7, 2), torch.rand(7), torch.randint(0, 9, (7,))
    ema = trainer.task.build_model()
    ema.load_state_dict(state["ema"]["weights"])
    raw = trainer.task.build_model()
    raw.load_state_dict(state["model"])
    with torch.no_grad():
        assert torch.equal(model(x, t, y), ema.eval()(x, t, y))
        assert torch.equal(final(x, t, y), model(x, t, y))
        assert not torch.equal(model(x, t, y), raw.eval()(x, t, y))  # the EMA, not the raw weights


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    recipe = tiny_recipe(tmp_path, train={"steps": 3})
    Trainer(recipe).train()
    with pytest.raises(ConfigError, match="--resume auto"):
        Trainer(recipe).train()
    assert Trainer(recipe).train(resume="auto").step == 3  # already complete: nothing to do


def test_resume_refuses_a_different_recipe(tmp_path):
    Trainer(tiny_recipe(tmp_path, train={"steps": 10})).train(max_steps=5)
    other = tiny_recipe(tmp_path, train={"steps": 10, "seed": 1, "log_every": 2})
    with pytest.raises(ConfigError, match=r"train\.seed"):
        Trainer(other).train(resume="auto")
    # logging / accumulation may change: they do not change the trajectory
    ok = tiny_recipe(tmp_path, train={"steps": 10, "log_every": 2, "grad_accum": 2})
    assert Trainer(ok).train(resume="auto").step == 10


def test_keep_checkpoints_and_tensorboard(tmp_path):
    recipe = tiny_recipe(
        tmp_path, train={"steps": 8, "save_every": 2, "keep_checkpoints": 2, "tensorboard": True}
    )
    Trainer(recipe).train()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [6, 8]
    assert any((tmp_path / "tensorboard").iterdir())


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="fp16"):
        Trainer(tiny_recipe(tmp_path, train={"mixed_precision": "fp16"}), cpu=True)


def test_bf16_autocast_runs_on_cpu(tmp_path):
    result = Trainer(tiny_recipe(tmp_path, train={"mixed_precision": "bf16", "steps": 3})).train()
    assert result.loss is not None and result.loss == result.loss  # finite, not NaN
    assert load_model(tmp_path / "final").input_proj.weight.dtype == torch.float32


def test_cli_stop_and_resume_from_the_run_folder(tmp_path, capsys):
    from flowgen.cli import main

    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(tiny_recipe(tmp_path / "run", train={"steps": 6}).to_yaml())
    assert main(["train", str(recipe_file), "--max-steps", "4"]) == 0
    assert "continue with: flowgen train --resume" in capsys.readouterr().out
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0  # recipe from the checkpoint
    out = capsys.readouterr().out
    assert "resuming" in out and "step 6/6" in out
    assert (tmp_path / "run/final/model.safetensors").is_file()
    assert [s for s, _ in metric(tmp_path / "run/log.csv", "train/loss")] == list(range(1, 7))


def test_ctrl_c_saves_the_last_step_and_resume_finishes(tmp_path):
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(tiny_recipe(tmp_path / "run", train={"steps": 100_000}).to_yaml())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowgen.cli", "train", str(recipe_file), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    log = tmp_path / "run/log.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        log.is_file() and len(log.read_text().splitlines()) > 20
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    saved = sorted((tmp_path / "run/checkpoints").glob("step_*"))
    assert len(saved) == 1 and "interrupted after step" in out
    step = int(saved[0].name.split("_")[1])
    logged = [s for s, _ in metric(log, "train/loss")]
    assert logged[-1] == step  # the saved step is the last completed (and logged) one
