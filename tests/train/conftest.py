"""Shared helpers for the trainer tests: tiny recipes, a clean Accelerate state per test."""

from __future__ import annotations

import pytest

from flowgen.train.config import parse_recipe

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def tiny_recipe(output_dir, *, train=None, model=None, task_args=None):
    """A toy2d recipe small enough to run tens of steps per second on one CPU thread."""
    raw = {
        "task": "toy2d",
        "model": {"hidden": 16, "num_blocks": 1, **(model or {})},
        "train": {
            "steps": 20,
            "batch_size": 32,
            "lr": 3e-3,
            "warmup": 3,
            "log_every": 1,
            "save_every": 0,
            "ema_decay": 0.9,
            "output_dir": str(output_dir),
            **(train or {}),
        },
        "task_args": {
            "source": "normal",
            "target": "8gaussians",
            "eval_samples": 64,
            **(task_args or {}),
        },
    }
    return parse_recipe(raw, source="test recipe")


@pytest.fixture(autouse=True)
def _fresh_accelerate():
    """Accelerate keeps process-wide singletons; reset them so each test picks its own settings."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
