"""One training loop, on Hugging Face Accelerate, for every task.

Launching. One process: ``flowgen train recipes/toy2d_icfm.yaml``. Several processes (one per
GPU, or CPU processes talking over gloo) are started by the standard launchers, never by flowgen;
Accelerate picks the setup up from their environment::

    torchrun --standalone --nproc_per_node 2 -m flowgen.cli train recipes/toy2d_icfm.yaml
    accelerate launch --multi_gpu --num_processes 2 -m flowgen.cli train recipes/toy2d_icfm.yaml

Measured on a 2-core CPU machine without GPUs (torch 2.11, accelerate 1.15): both commands give
``DistributedType.MULTI_CPU`` with the gloo backend and DDP-wrapped models (``--multi_gpu`` only
means "launch through torchrun" and works without GPUs); torchrun sets ``OMP_NUM_THREADS=1`` in
each process. Two traps, both handled or documented here:

- ``accelerate launch --cpu --num_processes 2`` silently starts a *single* process.
- Accelerate goes multi-process on CPUs only with ``Accelerator(cpu=True)``; without it every
  process trains alone on the full batch. The trainer therefore asks for the CPU whenever it is
  launched as several processes on a machine without an accelerator, and refuses to run if the
  process count still disagrees with the launcher's ``WORLD_SIZE``.

Multi-node runs use torchrun's ``--nnodes``/``--rdzv-endpoint`` or ``accelerate launch
--num_machines``.

Determinism. The global batch of step ``k`` is a pure function of ``(seed, k)``
(:mod:`flowgen.train.batching`); each process takes its contiguous share and splits it into
``grad_accum`` micro-batches. Accelerate divides each micro-batch loss by ``grad_accum`` and DDP
averages gradients over processes, so the update is the full-batch gradient whatever the process
count, and the logged loss is the global-batch mean. Resuming restores weights, optimizer,
schedule, EMA and the partial log window; no data-loader state exists to restore.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowgen.checkpoint import load_weights_into
from flowgen.errors import CheckpointError, ConfigError
from flowgen.train.batching import (
    batch_generator,
    derive_seed,
    micro_batches,
    rank_slice,
    to_device,
)
from flowgen.train.config import Recipe
from flowgen.train.ema import EMA
from flowgen.train.logs import RunLog
from flowgen.train.schedule import warmup_cosine
from flowgen.train.state import (
    FINAL_DIR,
    RECIPE_NAME,
    STATE_FORMAT_VERSION,
    STATE_NAME,
    checkpoint_dir,
    load_training_state,
    prune_checkpoints,
    resolve_resume,
    write_model_folder,
)
from flowgen.train.tasks import Task, get_task

# train fields that may change when resuming: they do not change the trajectory (up to float
# summation order for grad_accum and precision for mixed_precision).
RESUMABLE_CHANGES = frozenset(
    {
        "grad_accum",
        "mixed_precision",
        "log_every",
        "eval_every",
        "sample_every",
        "save_every",
        "keep_checkpoints",
        "output_dir",
        "tensorboard",
    }
)


@dataclass(frozen=True)
class TrainResult:
    step: int  # optimizer steps completed
    loss: float | None  # global-batch loss of the last step run by this call
    checkpoint: Path | None  # the newest checkpoint folder written by this call
    final: Path | None  # <output_dir>/final once training has completed


@dataclass
class _Window:
    """Running sums of the metrics logged every ``log_every`` steps (saved with checkpoints)."""

    loss: float = 0.0
    grad_norm: float = 0.0
    count: int = 0

    def add(self, loss: float, grad_norm: float) -> None:
        self.loss += loss
        self.grad_norm += grad_norm
        self.count += 1

    def means(self) -> dict[str, float]:
        n = self.count
        return {"train/loss": self.loss / n, "train/grad_norm": self.grad_norm / n}


@dataclass
class _Parts:
    """What the loop updates: prepared model and optimizer, schedule, EMA, log window."""

    model: Any
    optimizer: Any
    scheduler: Any
    ema: EMA
    window: _Window = field(default_factory=_Window)


class Trainer:
    """Train a recipe: ``Trainer(recipe).train(resume="auto")``.

    Args:
        recipe: the parsed recipe (:func:`flowgen.train.config.load_recipe`).
        output_dir: run folder; defaults to ``recipe.train.output_dir``.
        cpu: force the CPU even when GPUs are visible.
    """

    def __init__(self, recipe: Recipe, *, output_dir: str | Path | None = None, cpu: bool = False):
        from accelerate import Accelerator

        if output_dir is not None:
            recipe = recipe.replace_train(output_dir=str(output_dir))
        self.recipe = recipe
        self.config = cfg = recipe.train
        self.output_dir = Path(cfg.output_dir)
        self.task: Task = get_task(recipe.task)(recipe.task_args, recipe.model)
        launched = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
        if launched > 1 and not torch.accelerator.is_available():
            cpu = True  # without cpu=True, Accelerate runs each CPU process as a separate run
        self.accelerator = Accelerator(
            cpu=cpu, mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum
        )
        if self.accelerator.num_processes != launched:
            raise ConfigError(
                f"launched as {launched} processes but Accelerate set up "
                f"{self.accelerator.num_processes}; check the launcher's options"
            )
        if cfg.mixed_precision == "fp16" and self.accelerator.device.type == "cpu":
            raise ConfigError("mixed_precision 'fp16' needs a CUDA GPU; use 'bf16' or 'no' on CPU")
        world = self.accelerator.num_processes
        if cfg.batch_size % (world * cfg.grad_accum):
            raise ConfigError(
                f"train.batch_size {cfg.batch_size} must be divisible by processes x grad_accum "
                f"= {world} x {cfg.grad_accum}"
            )

    def train(
        self, *, resume: str | Path | None = None, max_steps: int | None = None
    ) -> TrainResult:
        """Run optimizer steps until ``train.steps`` (or ``max_steps``, a resumable stop).

        Args:
            resume: None (fresh run), ``"auto"`` (newest checkpoint of the run folder, if any), a
                run folder or a ``checkpoints/step_*`` folder.
            max_steps: stop after this many completed steps and save a checkpoint there; the LR
                schedule still spans ``train.steps``, so a resumed run continues exactly.
        """
        cfg, acc, task = self.config, self.accelerator, self.task
        resume_from = resolve_resume(resume, self.output_dir)

        # Model, EMA, optimizer and LR schedule, identical on every process.
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = task.build_model()
        ema = EMA(model, cfg.ema_decay)
        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
        )
        scheduler = warmup_cosine(
            optimizer, warmup=cfg.warmup, total=cfg.steps, min_ratio=cfg.min_lr_ratio
        )
        parts = _Parts(model, optimizer, scheduler, ema)
        start = 0 if resume_from is None else self._restore(resume_from, parts)
        parts.model, parts.optimizer = acc.prepare(parts.model, parts.optimizer)
        ema.to(acc.device)
        model, optimizer = parts.model, parts.optimizer

        stop = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
        log = self._open_log(resume_step=None if resume_from is None else start)
        self._announce(start, stop, resume_from, model)
        bar = _progress_bar(total=cfg.steps, initial=start, enabled=acc.is_main_process)
        rank, world, accum = acc.process_index, acc.num_processes, cfg.grad_accum
        loss_value, saved = None, None
        model.train()
        interrupt = _StopRequest(enabled=acc.num_processes == 1)
        with interrupt:
            for step in range(start, stop):
                # 1. The global batch is a pure function of (seed, step); this process takes its rows.
                batch = task.make_batch(step, batch_generator(cfg.seed, step), cfg.batch_size)
                local = rank_slice(batch, rank, world)  # B / P rows
                # Randomness inside the model (dropout & co.) is seeded per step and rank too.
                torch.manual_seed(derive_seed(cfg.seed, "step", step, "rank", rank))

                # 2. Forward/backward per micro-batch: accelerate scales each loss by 1 / accum and
                #    all-reduces (averages) gradients over processes only on the last micro-batch.
                loss_sum = torch.zeros((), device=acc.device)
                for micro in micro_batches(local, accum):  # accum x (B / (P accum)) rows
                    with acc.accumulate(model):
                        loss = task.loss(model, to_device(micro, acc.device))
                        acc.backward(loss)
                    loss_sum += loss.detach().float()

                # 3. One optimizer step on the global-batch gradient, then the EMA.
                lr = scheduler.get_last_lr()[0]
                max_norm = cfg.clip if cfg.clip > 0 else math.inf  # inf: only measure the norm
                grad_norm = acc.clip_grad_norm_(model.parameters(), max_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                ema.update(acc.unwrap_model(model))

                # 4. Bookkeeping on the completed step: logs, evaluation, samples, checkpoints.
                done = step + 1
                loss_value = acc.reduce(loss_sum / accum, reduction="mean").item()  # global mean
                parts.window.add(loss_value, float(grad_norm))
                if done % cfg.log_every == 0 or done == cfg.steps:
                    log.scalars(done, {**parts.window.means(), "train/lr": lr})
                    bar.set_postfix(
                        loss=f"{parts.window.means()['train/loss']:.4g}", lr=f"{lr:.3g}"
                    )
                    parts.window = _Window()
                if cfg.eval_every and _due(done, cfg.eval_every, cfg.steps):
                    self._evaluate(ema, log, bar, done)
                if cfg.sample_every and _due(done, cfg.sample_every, cfg.steps):
                    self._sample(ema, done)
                if _due(done, cfg.save_every, stop) or interrupt.requested:
                    saved = self._save(done, parts)
                bar.update(1)
                if interrupt.requested:  # Ctrl-C: the step finished and was saved; stop here
                    bar.close()
                    log.close()
                    acc.print(
                        f"\ninterrupted after step {done}: saved {saved}; continue with --resume auto"
                    )
                    raise KeyboardInterrupt
        bar.close()
        log.close()

        final = None
        if start < stop == cfg.steps:
            final = self._save_final(ema, acc.unwrap_model(model), cfg.steps)
        elif (self.output_dir / FINAL_DIR).is_dir() and start >= cfg.steps:
            final = self.output_dir / FINAL_DIR
        acc.wait_for_everyone()
        return TrainResult(step=max(start, stop), loss=loss_value, checkpoint=saved, final=final)

    # --- resume -----------------------------------------------------------------------------
    def _restore(self, folder: Path, parts: _Parts) -> int:
        """Load a checkpoint's training state into the (unprepared) parts; returns its step."""
        state = load_training_state(folder)
        self._check_same_run(state["recipe"], folder)
        source = str(folder / STATE_NAME)
        load_weights_into(parts.model, state["model"], source=source)
        try:
            parts.ema.load_state_dict(state["ema"])
            parts.optimizer.load_state_dict(state["optimizer"])
            parts.scheduler.load_state_dict(state["scheduler"])
            parts.window = _Window(**state["log_window"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{source} does not fit this model or optimizer ({err})") from err
        torch.set_rng_state(state["rng"]["cpu"])
        if torch.cuda.is_available() and len(state["rng"]["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return int(state["step"])

    def _check_same_run(self, saved: dict[str, Any], folder: Path) -> None:
        now = self.recipe.to_dict()
        diffs = [k for k in ("task", "model", "task_args") if saved.get(k) != now[k]]
        saved_train = saved.get("train", {})
        diffs += [
            f"train.{k}"
            for k in now["train"]
            if k not in RESUMABLE_CHANGES and saved_train.get(k) != now["train"][k]
        ]
        if diffs:
            raise ConfigError(
                f"cannot resume {folder}: the recipe differs from the one it was trained with in "
                f"{diffs}; use its {RECIPE_NAME} (flowgen train --resume PATH without a recipe) "
                "or start a new run with another --output-dir"
            )

    # --- side effects on the main process ----------------------------------------------------
    def _open_log(self, resume_step: int | None) -> RunLog:
        acc = self.accelerator
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / RECIPE_NAME).write_text(self.recipe.to_yaml())
        return RunLog(
            self.output_dir,
            resume_step=resume_step,
            tensorboard=self.config.tensorboard,
            enabled=acc.is_main_process,
        )

    def _announce(self, start: int, stop: int, resume_from: Path | None, model) -> None:
        acc, cfg = self.accelerator, self.config
        params = sum(p.numel() for p in model.parameters())
        micro = cfg.batch_size // (acc.num_processes * cfg.grad_accum)
        origin = f"resuming {resume_from}" if resume_from else "fresh run"
        n = acc.num_processes
        setup = "1 process" if n == 1 else f"{n} processes ({acc.distributed_type.value.lower()})"
        acc.print(
            f"{self.recipe.task}: {params:,} parameters, {setup} on {acc.device.type}, "
            f"global batch {cfg.batch_size} = "
            f"{acc.num_processes} x {cfg.grad_accum} x {micro}, steps {start} -> {stop} of "
            f"{cfg.steps}, {origin}, output {self.output_dir}"
        )

    def _evaluate(self, ema: EMA, log: RunLog, bar, done: int) -> None:
        if self.accelerator.is_main_process:
            with torch.no_grad():
                metrics = self.task.evaluate(ema.module)
            log.scalars(done, {f"eval/{k}": v for k, v in metrics.items()})
            if metrics:
                bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        self.accelerator.wait_for_everyone()

    def _sample(self, ema: EMA, done: int) -> None:
        if self.accelerator.is_main_process:
            with torch.no_grad():
                self.task.sample(ema.module, self.output_dir / "samples" / f"step_{done:07d}", done)
        self.accelerator.wait_for_everyone()

    def _extra(self, step: int) -> dict[str, Any]:
        return {**self.task.checkpoint_extra(), "step": step}

    def _save(self, done: int, parts: _Parts) -> Path:
        acc = self.accelerator
        folder = checkpoint_dir(self.output_dir, done)
        if acc.is_main_process:
            raw = acc.unwrap_model(parts.model)
            ema_state = parts.ema.state_dict()
            state = {
                "format_version": STATE_FORMAT_VERSION,
                "step": done,
                "model": {k: v.detach().cpu() for k, v in raw.state_dict().items()},
                "optimizer": parts.optimizer.state_dict(),
                "scheduler": parts.scheduler.state_dict(),
                "ema": ema_state,
                "rng": _rng_state(),
                "log_window": vars(parts.window).copy(),
                "recipe": self.recipe.to_dict(),
            }
            write_model_folder(
                folder,
                model=raw,
                weights=ema_state["weights"],
                extra=self._extra(done),
                recipe_yaml=self.recipe.to_yaml(),
                training_state=state,
            )
            prune_checkpoints(self.output_dir, self.config.keep_checkpoints)
        acc.wait_for_everyone()
        return folder

    def _save_final(self, ema: EMA, raw, step: int) -> Path:
        folder = self.output_dir / FINAL_DIR
        if self.accelerator.is_main_process:
            write_model_folder(
                folder,
                model=raw,
                weights=ema.state_dict()["weights"],
                extra=self._extra(step),
                recipe_yaml=self.recipe.to_yaml(),
            )
            self.accelerator.print(f"saved the EMA model to {folder}")
        return folder


class _StopRequest:
    """Turns Ctrl-C (SIGINT) into a flag the loop checks after each completed step.

    Only for single-process runs in the main thread: there the step in flight finishes, a
    checkpoint is written and nothing is lost. Multi-process runs keep the default behaviour
    (a collective save could deadlock if processes saw the signal at different steps).
    """

    def __init__(self, *, enabled: bool):
        import threading

        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequest:
        if self.enabled:
            import signal

            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            import signal

            signal.signal(signal.SIGINT, self._previous)


def _due(done: int, every: int, last: int) -> bool:
    """Periodic events happen every ``every`` steps (never if 0) and at step ``last``."""
    return (every > 0 and done % every == 0) or done == last


def _rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _progress_bar(*, total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
