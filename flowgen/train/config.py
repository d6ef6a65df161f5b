"""Recipes: one YAML file per trainable model, parsed into frozen dataclasses.

A recipe has exactly four sections::

    task: toy2d                 # a registered task (flowgen.train.tasks)
    model: {hidden: 128, ...}   # fields of the task's model config dataclass (the constructor args)
    train: {steps: 3000, ...}   # fields of TrainConfig below
    task_args: {source: ...}    # fields of the task's argument dataclass

Unknown or misspelled keys raise :class:`~flowgen.errors.ConfigError` naming the key and the
valid ones; values are checked against the dataclass field types (``int``, ``float``, ``bool``,
``str``, ``Literal[...]``, tuples, ``X | None``). YAML 1.1 reads ``1e-3`` as a string, so numeric
strings are accepted for float fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flowgen.checkpoint import config_from_dict, config_to_dict
from flowgen.errors import CheckpointError, ConfigError

SECTIONS: tuple[str, ...] = ("task", "model", "train", "task_args")
MixedPrecision = Literal["no", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """The ``train:`` section. Step counts are optimizer steps; ``batch_size`` is the global batch.

    The learning rate at optimizer step ``s`` (0-based) is :func:`flowgen.train.schedule.lr_factor`
    times ``lr``: linear warmup over ``warmup`` steps, then cosine decay to ``min_lr_ratio * lr``
    at ``steps``.
    """

    steps: int = 1000  # total optimizer steps; also the length of the LR schedule
    batch_size: int = 256  # global batch: split over processes, then over grad_accum micro-batches
    grad_accum: int = 1  # micro-batches per optimizer step on each process
    lr: float = 1e-3
    warmup: int = 0  # linear warmup steps
    min_lr_ratio: float = 0.0  # the cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip: float = 1.0  # max global gradient norm; 0 disables clipping (the norm is still logged)
    ema_decay: float = 0.999  # EMA of the weights, kept in fp32; the saved model is the EMA
    mixed_precision: MixedPrecision = "no"  # fp16 needs a CUDA GPU; bf16 also runs on CPU
    seed: int = 0  # model init and every batch derive from it (flowgen.train.batching)
    log_every: int = 10  # mean train loss / grad norm over this many steps -> log.csv
    eval_every: int = 0  # task.evaluate on the EMA model every N steps and at the end; 0: never
    sample_every: int = 0  # task.sample on the EMA model every N steps and at the end; 0: never
    save_every: int = 1000  # checkpoint period; one is also written when the run stops
    keep_checkpoints: int = 0  # keep only the newest N checkpoints; 0 keeps all
    output_dir: str = ""  # run folder; "" means runs/<recipe file name>
    tensorboard: bool = False  # also log to <output_dir>/tensorboard (needs tensorboard)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "sample_every", "save_every", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if self.clip < 0 or self.weight_decay < 0 or self.eps <= 0:
            raise ConfigError("clip and weight_decay must be >= 0 and eps > 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"betas must lie in [0, 1), got {list(self.betas)}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe: the task name and its three config dataclasses."""

    task: str
    model: Any  # the task's model config dataclass
    train: TrainConfig
    task_args: Any  # the task's argument dataclass

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": config_to_dict(self.model),
            "train": config_to_dict(self.train),
            "task_args": config_to_dict(self.task_args),
        }

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace_train(self, **changes: Any) -> Recipe:
        """A copy with some ``train`` fields changed (validated like the recipe)."""
        fields = {**config_to_dict(self.train), **changes}
        return dataclasses.replace(self, train=build_config(TrainConfig, fields, source="train"))


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; ``train.output_dir`` defaults to ``runs/<file stem>``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from err
    recipe = parse_recipe(raw, source=str(path))
    if not recipe.train.output_dir:
        recipe = recipe.replace_train(output_dir=f"runs/{path.stem}")
    return recipe


def parse_recipe(raw: Any, *, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping (as read from YAML) into a :class:`Recipe`."""
    from flowgen.train.tasks import get_task

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with keys {list(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}{_did_you_mean(unknown[0], SECTIONS)}; "
            f"valid keys are {list(SECTIONS)}"
        )
    if not isinstance(raw.get("task"), str):
        raise ConfigError(f"{source}: 'task' must name a task, e.g. 'task: toy2d'")
    task_cls = get_task(raw["task"])
    return Recipe(
        task=raw["task"],
        model=build_config(task_cls.model_config_cls, raw.get("model"), source=f"{source}: model"),
        train=build_config(TrainConfig, raw.get("train"), source=f"{source}: train"),
        task_args=build_config(
            task_cls.args_cls, raw.get("task_args"), source=f"{source}: task_args"
        ),
    )


def build_config(config_cls: type, fields: Any, *, source: str) -> Any:
    """Build a frozen config dataclass from a mapping, checking names and value types."""
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise ConfigError(
            f"{source} must be a mapping of field: value, got {type(fields).__name__}"
        )
    names = [f.name for f in dataclasses.fields(config_cls)]
    for key in fields:
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key {key!r}{_did_you_mean(str(key), names)}; "
                f"valid keys are {sorted(names)}"
            )
    hints = typing.get_type_hints(config_cls)
    checked = {k: _check_value(v, hints[k], f"{source}.{k}") for k, v in fields.items()}
    try:
        return config_from_dict(config_cls, checked, source=source)
    except CheckpointError as err:  # config_from_dict speaks about checkpoints; this is a recipe
        raise ConfigError(str(err)) from err
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err


def _did_you_mean(key: str, valid: typing.Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` if it fits type ``tp`` (numeric strings become floats), else raise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _check_value(value, options[0], where)
        return value  # a general union: leave it to the dataclass
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} entries, got {list(value)}")
            return tuple(
                _check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))
            )
        if args:
            return tuple(_check_value(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    elif tp is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value
