"""The ``toy2d`` task: flow matching between 2-D toy distributions (the demo checkpoints).

``x_0 ~ source`` (t = 0) and ``x_1 ~ target`` (t = 1) from :mod:`flowgen.toy.data`, paired by a
minibatch coupling over the *global* batch (:func:`flowgen.fm.couplings.couple`: I-CFM, OT-CFM,
Sinkhorn, class-conditional OT, W-CFM weights), the linear path and the CFM loss with the
coupling's weights (Tong et al. 2024, eq. 9 and Alg. 1-2). With ``model.num_classes > 0`` the
model is conditioned on the target's labels (8gaussians: its 8 modes, moons: its 2 halves); each
label is replaced by the null label ``num_classes`` with probability ``label_dropout`` so the
model also learns the unconditional field for classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from flowgen.errors import ConfigError
from flowgen.fm.losses import cfm_loss
from flowgen.fm.paths import LinearPath
from flowgen.fm.time import sample_t
from flowgen.toy import data
from flowgen.toy.model import MLPVelocity, MLPVelocityConfig
from flowgen.train.batching import to_device
from flowgen.train.tasks import Batch, Task, register_task

Coupling = Literal["independent", "ot", "sinkhorn", "class_ot", "wcfm"]
NUM_LABELS: dict[str, int] = {"8gaussians": 8, "moons": 2}  # classes of the labelled toy targets


@dataclass(frozen=True)
class Toy2DArgs:
    """The ``task_args:`` section of a toy2d recipe."""

    source: data.Distribution = "normal"  # x_0, the t = 0 end
    target: data.Distribution = "8gaussians"  # x_1, the t = 1 end
    coupling: Coupling = "independent"  # how x_0 and x_1 rows are paired in each global batch
    sinkhorn_reg: float = 0.05  # entropic regularisation of "sinkhorn"
    wcfm_eps: float | None = None  # W-CFM temperature; None: the image-tuned heuristic
    label_dropout: float = 0.1  # P(label -> null label) when the model is class-conditional
    sigma_min: float = 0.0  # LinearPath's sigma_min
    time_sampler: Literal["uniform", "logit_normal"] = "uniform"  # p(t) for training
    eval_samples: int = 1000  # points for the W2^2 metric, the validation loss and sample plots
    eval_steps: int = 8  # solver steps when evaluating / sampling
    eval_method: Literal["euler", "midpoint", "heun", "rk4"] = "heun"
    eval_seed: int = 0  # evaluation draws from its own generators seeded from this
    guidance_scale: float = 1.0  # classifier-free guidance scale for conditional models

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"label_dropout must lie in [0, 1), got {self.label_dropout}")
        if self.eval_samples < 2 or self.eval_steps < 1:
            raise ConfigError("eval_samples must be >= 2 and eval_steps >= 1")
        if not 0.0 <= self.sigma_min < 1.0:
            raise ConfigError(f"sigma_min must lie in [0, 1), got {self.sigma_min}")


@register_task("toy2d")
class Toy2DTask(Task):
    args_cls = Toy2DArgs
    model_config_cls = MLPVelocityConfig

    def __init__(self, args: Toy2DArgs, model_config: MLPVelocityConfig):
        super().__init__(args, model_config)
        if model_config.dim != 2:
            raise ConfigError(f"toy2d needs model.dim: 2, got {model_config.dim}")
        classes = model_config.num_classes
        if classes and NUM_LABELS.get(args.target) != classes:
            raise ConfigError(
                f"model.num_classes is {classes}, but target {args.target!r} has "
                f"{NUM_LABELS.get(args.target, 'no')} labels; set model.num_classes to that, or 0 "
                "for an unconditional model"
            )
        if args.coupling == "class_ot" and args.target not in NUM_LABELS:
            raise ConfigError(
                f"coupling 'class_ot' needs a labelled target ({sorted(NUM_LABELS)}), "
                f"not {args.target!r}"
            )
        self.path = LinearPath(sigma_min=args.sigma_min)

    @property
    def conditional(self) -> bool:
        return self.model_config.num_classes > 0

    def build_model(self) -> nn.Module:
        return MLPVelocity(self.model_config)

    def make_batch(self, step: int, generator: torch.Generator, batch_size: int) -> Batch:
        from flowgen.fm.couplings import couple  # lazy: exact OT imports POT (~5 s)

        a = self.args
        x_0, _ = data.sample(a.source, batch_size, generator)  # (B, 2)
        x_1, labels = data.sample(a.target, batch_size, generator)  # (B, 2), (B,) or None
        t = sample_t(batch_size, a.time_sampler, generator=generator)  # (B,)
        pair = couple(
            x_0,
            x_1,
            a.coupling,
            labels=labels,
            generator=generator,
            sinkhorn_reg=a.sinkhorn_reg,
            wcfm_eps=a.wcfm_eps,
        )
        batch = {"x_0": pair.x_0, "x_1": pair.x_1, "t": t}
        if pair.weights is not None:  # W-CFM: normalised over the global batch
            batch["weights"] = pair.weights
        if self.conditional:
            drop = torch.rand(batch_size, generator=generator) < a.label_dropout  # (B,)
            null = torch.full_like(pair.labels, self.model_config.num_classes)
            batch["y"] = torch.where(drop, null, pair.labels)
        return batch

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        sample = self.path.sample(batch["x_0"], batch["x_1"], batch["t"])
        v_t = model(sample.x_t, sample.t, batch.get("y"))  # (B, 2)
        return cfm_loss(v_t, sample.dx_t, weights=batch.get("weights"))

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """``w2``: W2^2 between generated and fresh target points; ``val_loss`` on a fixed batch."""
        a = self.args
        flow = self._flow(model)
        result = self._generate(flow)
        w2 = flow.w2_to_target(result.x_1, seed=a.eval_seed + 1)
        device = next(model.parameters()).device
        val = self.make_batch(-1, torch.Generator().manual_seed(a.eval_seed + 2), a.eval_samples)
        val_loss = float(self.loss(model, to_device(val, device)))
        return {"w2": w2, "val_loss": val_loss}

    @torch.no_grad()
    def sample(self, model: nn.Module, out_dir: Path, step: int) -> None:
        """``samples.csv`` (x, y[, label]) and a scatter plot ``samples.png``."""
        flow = self._flow(model)
        result = self._generate(flow)
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "samples.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            labelled = result.labels is not None
            out.writerow(["x", "y", "label"] if labelled else ["x", "y"])
            for i, (x, y) in enumerate(result.x_1.tolist()):
                out.writerow([x, y, int(result.labels[i])] if labelled else [x, y])
        flow.plot(out_dir / "samples.png", result, seed=self.args.eval_seed + 1)

    def _flow(self, model: nn.Module):
        from flowgen.toy.sampling import ToyFlow

        return ToyFlow(model, source=self.args.source, target=self.args.target)

    def _generate(self, flow):
        a = self.args
        return flow.sample(
            a.eval_samples,
            steps=a.eval_steps,
            method=a.eval_method,
            seed=a.eval_seed,
            cfg_scale=a.guidance_scale,
        )
