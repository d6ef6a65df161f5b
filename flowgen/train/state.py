"""Run folders, checkpoints and resume.

A run folder::

    <output_dir>/
      recipe.yaml                    the resolved recipe
      log.csv                        step,name,value rows (train/loss, train/lr, eval/...)
      checkpoints/step_0001000/      one per save, written atomically:
        config.json                    kind, format_version, model config, extra (task setup)
        model.safetensors              EMA weights: flowgen.checkpoint.load_model(folder) works
        training_state.pt              raw weights, optimizer, scheduler, EMA, step, RNG, log window
        recipe.yaml                    the recipe that produced it
      final/                         the EMA model when training completes (no training state)
      samples/step_0001000/          whatever task.sample writes

``training_state.pt`` holds only tensors and plain containers and is read with
``torch.load(weights_only=True)``: never a user pickle.
"""

from __future__ import annotations

import pickle
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from flowgen.checkpoint import CONFIG_NAME, WEIGHTS_NAME, atomic_dir, save_checkpoint
from flowgen.errors import CheckpointError

STATE_NAME = "training_state.pt"
RECIPE_NAME = "recipe.yaml"
CHECKPOINTS_DIR = "checkpoints"
FINAL_DIR = "final"
STATE_FORMAT_VERSION = 1
STATE_KEYS = (
    "format_version",
    "step",
    "model",
    "optimizer",
    "scheduler",
    "ema",
    "rng",
    "log_window",
    "recipe",
)
_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR / f"step_{step:07d}"


def write_model_folder(
    path: str | Path,
    *,
    model: torch.nn.Module,
    weights: dict[str, torch.Tensor],
    extra: dict[str, Any],
    recipe_yaml: str,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Atomically write a checkpoint folder: config + weights (+ recipe, + training state).

    ``model`` supplies ``kind`` and ``config``; ``weights`` is what goes into model.safetensors
    (the EMA). Everything lands in one temporary folder renamed into place at the end, so a crash
    never leaves a half-written checkpoint under the final name.
    """
    kind = getattr(type(model), "kind", None)
    if kind is None:
        raise TypeError(f"{type(model).__name__} is not registered with @register_model")
    with atomic_dir(path) as tmp:
        # save_checkpoint is itself atomic: it fills a sibling folder and renames it onto tmp.
        save_checkpoint(tmp, kind=kind, config=model.config, state_dict=weights, extra=extra)
        (tmp / RECIPE_NAME).write_text(recipe_yaml)
        if training_state is not None:
            torch.save(training_state, tmp / STATE_NAME)
    return Path(path)


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of a run's checkpoints, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := _STEP_DIR.match(p.name))
    ]
    return sorted(found)


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep = 0`` keeps all)."""
    if keep > 0:
        for _, folder in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(folder, ignore_errors=True)


def resolve_resume(resume: str | Path | None, output_dir: str | Path) -> Path | None:
    """The checkpoint folder to resume from, or None to start fresh.

    ``resume`` is None (fresh run; refuses a folder that already has checkpoints), ``"auto"``
    (the newest checkpoint of ``output_dir`` if any), a run folder (its newest checkpoint) or a
    checkpoint folder.
    """
    from flowgen.errors import ConfigError

    if resume is None:
        existing = list_checkpoints(output_dir)
        if existing:
            raise ConfigError(
                f"{output_dir} already holds checkpoints (newest: step {existing[-1][0]}); pass "
                "--resume auto to continue that run, or choose another --output-dir"
            )
        return None
    if str(resume) == "auto":
        existing = list_checkpoints(output_dir)
        return existing[-1][1] if existing else None
    path = Path(resume)
    if not path.exists():
        raise CheckpointError(f"nothing to resume at {path}: no such folder")
    if (path / STATE_NAME).exists() or (path / CONFIG_NAME).exists():
        return path
    existing = list_checkpoints(path)
    if existing:
        return existing[-1][1]
    raise CheckpointError(
        f"{path} is neither a checkpoint folder (with {STATE_NAME}) nor a run folder with "
        f"{CHECKPOINTS_DIR}/step_*; pass one of those to --resume"
    )


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a ``checkpoints/step_*`` folder belongs to (None for other layouts)."""
    checkpoint = Path(checkpoint)
    if checkpoint.parent.name == CHECKPOINTS_DIR and _STEP_DIR.match(checkpoint.name):
        return checkpoint.parent.parent
    return None


def load_training_state(folder: str | Path) -> dict[str, Any]:
    """Read and check ``training_state.pt`` of a checkpoint folder.

    Also checks that the folder's ``config.json`` and ``model.safetensors`` are readable, so a
    damaged checkpoint is reported when resuming rather than when it is later used for inference.

    Raises:
        CheckpointError: missing, truncated, corrupted or foreign files, with what to do.
    """
    from flowgen.checkpoint import load_state_dict, read_config

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    file = folder / STATE_NAME
    if not file.is_file():
        raise CheckpointError(
            f"{folder} has no {STATE_NAME}, so it cannot be resumed (a final/ folder holds only "
            f"the EMA model); resume from a {CHECKPOINTS_DIR}/step_* folder"
        )
    read_config(folder)  # config.json: present, valid JSON, known kind
    if not (folder / WEIGHTS_NAME).is_file():
        raise CheckpointError(f"{folder} is incomplete: {WEIGHTS_NAME} is missing")
    load_state_dict(folder)  # model.safetensors: not truncated
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{file} is corrupted or holds objects other than tensors and plain containers "
            "(refused by weights_only loading); resume from an earlier checkpoint"
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{file} is truncated or corrupted ({type(err).__name__}: {str(err).strip()[:120]}); "
            "resume from an earlier checkpoint"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} is not a flowgen training state")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{file} is not a flowgen training state: missing {missing}")
    if state["format_version"] != STATE_FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: training state format {state['format_version']!r} is not supported "
            f"(this flowgen reads {STATE_FORMAT_VERSION})"
        )
    return state
