"""A toy 2-D flow loaded from a checkpoint: sampling, W2^2 to its target, plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flowgen.checkpoint import load_model, read_config, resolve_checkpoint
from flowgen.errors import CheckpointError, InputError
from flowgen.fm.guidance import cfg_velocity
from flowgen.fm.solvers import ADAPTIVE_METHODS, ODESolution, sample
from flowgen.fm.time import uniform_grid
from flowgen.toy import data
from flowgen.toy.metrics import w2_squared


@dataclass(frozen=True)
class ToySample:
    x_0: torch.Tensor
    x_1: torch.Tensor
    labels: torch.Tensor | None
    nfe: int


class ToyFlow:
    """A trained :class:`~flowgen.toy.model.MLPVelocity` with its source/target distributions."""

    def __init__(self, model, *, source: str, target: str, path: Path | None = None):
        self.model, self.source, self.target, self.path = model, source, target, path

    @classmethod
    def load(cls, name_or_path: str, *, device: str | torch.device = "cpu") -> ToyFlow:
        path = resolve_checkpoint(name_or_path)
        kind, _, extra = read_config(path)
        if kind != "mlp_velocity":
            raise CheckpointError(f"{path} holds a {kind!r} model, not a toy 2-D flow")
        task_args = extra.get("task_args", {})
        source, target = task_args.get("source", "normal"), task_args.get("target")
        if target not in data.DISTRIBUTIONS:
            raise CheckpointError(f"{path}: config.json does not say which toy target it learned")
        return cls(load_model(path, device=device), source=source, target=target, path=path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int = 8,
        method: str = "heun",
        seed: int = 0,
        cfg_scale: float = 1.0,
        label: int | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> ToySample:
        g = torch.Generator().manual_seed(seed)
        x_0, _ = data.sample(self.source, n, g)
        labels = None
        num_classes = self.model.config.num_classes
        if num_classes:
            if label is not None and not 0 <= label < num_classes:
                raise InputError(f"--class must be in 0..{num_classes - 1}, got {label}")
            labels = torch.full((n,), label) if label is not None else torch.arange(n) % num_classes
            labels = labels.to(self.device)
        elif label is not None:
            raise InputError("this checkpoint is unconditional; drop --class")
        x_0 = x_0.to(self.device)
        if labels is None:
            velocity = self.model
        else:
            null = torch.full_like(labels, self.model.null_label)
            velocity = cfg_velocity(self.model, labels, null, scale=cfg_scale)
        grid = torch.tensor([0.0, 1.0]) if method in ADAPTIVE_METHODS else uniform_grid(steps)
        sol: ODESolution = sample(velocity, x_0, grid, method=method, autocast_dtype=autocast_dtype)
        return ToySample(
            x_0=x_0.cpu(),
            x_1=sol.x.cpu(),
            labels=None if labels is None else labels.cpu(),
            nfe=sol.nfe,
        )

    def target_points(self, n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return data.sample(self.target, n, torch.Generator().manual_seed(seed))

    def w2_to_target(self, x_1: torch.Tensor, *, seed: int) -> float:
        ref, _ = self.target_points(x_1.shape[0], seed=seed)
        return w2_squared(x_1, ref)

    def plot(self, path: str | Path, result: ToySample, *, seed: int) -> None:
        from flowgen.toy.plot import save_scatter

        ref, ref_labels = self.target_points(result.x_1.shape[0], seed=seed)
        save_scatter(
            path,
            [
                (f"source: {self.source}", result.x_0, None),
                (f"samples ({result.nfe} NFE)", result.x_1, result.labels),
                (f"target: {self.target}", ref, ref_labels if result.labels is not None else None),
            ],
        )
