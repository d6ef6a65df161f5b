"""Tasks: everything a trainable model needs besides the training loop, registered by name.

A task turns a recipe's ``model:`` and ``task_args:`` sections into a model, global batches and a
loss. Contract (what makes multi-process training and resume exact, see
:mod:`flowgen.train.batching`):

- ``make_batch(step, generator, batch_size)`` builds the *whole global batch* on the CPU, drawing
  every random number (data, noise ``x_0``, times ``t``, coupling, label dropout) from
  ``generator``, so the batch is a pure function of ``(seed, step)``. Every value is a tensor (or
  list) whose first dimension is ``batch_size``; the trainer slices rows per process and
  micro-batch. Couplings and batch-normalised weights are computed here, over the global batch.
- ``loss(model, batch)`` returns a scalar that is a *mean over the batch's samples* of per-sample
  terms, so equal-sized micro-batch means average to the global-batch mean. It must not draw
  random numbers from the global RNG for the batch (the trainer re-seeds the global RNG per step
  and process, which only makes dropout-like noise reproducible).
- ``evaluate(model) -> {name: float}`` and ``sample(model, out_dir, step)`` are optional hooks,
  run on the main process with the EMA model in eval mode; use explicit generators in them.

Tasks register with :func:`register_task`; modules listed in :data:`TASK_MODULES` are imported
on the first lookup of an unknown name (no if/elif factories).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from flowgen.checkpoint import config_to_dict
from flowgen.errors import ConfigError

# Modules whose import registers tasks; later packages (audio, vision) append theirs.
TASK_MODULES: list[str] = ["flowgen.train.toy2d", "flowgen.train.vision_tasks"]

Batch = dict[str, Any]  # name -> tensor (or list) with the batch as first dimension
T = TypeVar("T", bound=type["Task"])

_TASKS: dict[str, type[Task]] = {}


class Task:
    """Base class of training tasks; subclasses set the class attributes and override methods.

    Attributes:
        name: the registered name (set by :func:`register_task`), used as ``task:`` in recipes.
        args_cls: frozen dataclass of the recipe's ``task_args:`` section.
        model_config_cls: frozen dataclass of the recipe's ``model:`` section (the model's config).
    """

    name: ClassVar[str] = ""
    args_cls: ClassVar[type]
    model_config_cls: ClassVar[type]

    def __init__(self, args: Any, model_config: Any):
        self.args = args
        self.model_config = model_config

    def build_model(self) -> nn.Module:
        """A fresh model registered with :func:`flowgen.checkpoint.register_model`."""
        raise NotImplementedError

    def make_batch(self, step: int, generator: torch.Generator, batch_size: int) -> Batch:
        """The global batch of optimizer step ``step``, drawn from ``generator`` only."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar loss: the mean over ``batch``'s samples (see the module docstring)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Metrics of the EMA model (logged as ``eval/<name>``); none by default."""
        return {}

    def sample(self, model: nn.Module, out_dir: Path, step: int) -> None:
        """Write samples of the EMA model into ``out_dir``; nothing by default."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """What goes into ``config.json``'s ``extra`` so inference knows the task's setup."""
        return {"task": self.name, "task_args": config_to_dict(self.args)}


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: make a :class:`Task` subclass available to recipes as ``task: name``."""

    def wrap(cls: T) -> T:
        previous = _TASKS.get(name)
        if previous is not None and previous is not cls:
            raise ValueError(f"task {name!r} is already registered to {previous}")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def task_names() -> list[str]:
    _import_task_modules()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; ConfigError listing the known ones otherwise."""
    if name not in _TASKS:
        _import_task_modules()
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {sorted(_TASKS)}")
    return _TASKS[name]


def _import_task_modules() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)
