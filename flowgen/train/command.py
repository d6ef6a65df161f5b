"""``flowgen train``: run a recipe (one YAML per trainable model) with the Accelerate trainer."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  flowgen train recipes/toy2d_icfm.yaml --threads 1         # tiny models: 1 thread is fastest
  flowgen train recipes/toy2d_icfm.yaml --dry-run            # validate, print the resolved recipe
  flowgen train recipes/toy2d_icfm.yaml --max-steps 500      # stop early, resumable
  flowgen train recipes/toy2d_icfm.yaml --resume auto        # continue the newest checkpoint
  flowgen train --resume runs/toy2d_icfm/checkpoints/step_0000500
  flowgen train recipes/toy2d_moons_otcfm.yaml --output-dir runs/moons_try2 --cpu

several processes (GPUs, or CPU processes over gloo), started by the standard launchers:
  torchrun --standalone --nproc_per_node 2 -m flowgen.cli train recipes/toy2d_icfm.yaml
  accelerate launch --multi_gpu --num_processes 2 -m flowgen.cli train recipes/toy2d_icfm.yaml
  (on CPU-only machines 'accelerate launch --cpu --num_processes 2' starts ONE process; use one
  of the above). The loss curve does not depend on the number of processes: train.batch_size is
  the global batch.
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train a model from a recipe (recipes/*.yaml)",
        description="Train the model a recipe describes. The run folder gets log.csv,\n"
        "checkpoints/step_*/ (config.json + model.safetensors with the EMA weights,\n"
        "training_state.pt, recipe.yaml) and final/ (the EMA model) when training completes.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "recipe",
        nargs="?",
        help="recipe YAML file, e.g. recipes/toy2d_icfm.yaml; may be left out with --resume PATH "
        "(the checkpoint's own recipe.yaml is used)",
    )
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        default=None,
        help="continue a run: 'auto' takes the newest checkpoint of the output folder (fresh start "
        "if there is none); PATH is a run folder or one of its checkpoints/step_* folders",
    )
    p.add_argument(
        "--output-dir",
        default=None,
        help="run folder (default: the recipe's train.output_dir, or the resumed run's folder)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many completed steps and save a checkpoint there; the LR schedule "
        "still spans train.steps, so --resume continues exactly",
    )
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if GPUs are visible")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per process for torch ops (torch.set_num_threads); 1 is fastest for "
        "the toy recipes and on busy machines (default: OMP_NUM_THREADS, else all cores)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe, print it resolved (all defaults filled in) as YAML and exit",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from flowgen.errors import CheckpointError, ConfigError, InputError
    from flowgen.train.config import load_recipe
    from flowgen.train.state import RECIPE_NAME, resolve_resume, run_dir_of

    if args.max_steps is not None and args.max_steps < 1:
        raise InputError(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    resume_path = None
    if args.resume not in (None, "auto"):
        resume_path = resolve_resume(args.resume, output_dir=".")
    if args.recipe:
        recipe = load_recipe(args.recipe)
    elif resume_path is not None:
        if not (resume_path / RECIPE_NAME).is_file():
            raise CheckpointError(
                f"{resume_path} has no {RECIPE_NAME}; pass the recipe file as well"
            )
        recipe = load_recipe(resume_path / RECIPE_NAME)
    else:
        raise ConfigError(
            "give a recipe file (e.g. flowgen train recipes/toy2d_icfm.yaml), or --resume PATH "
            "to continue a run with its saved recipe"
        )
    output_dir = args.output_dir or (run_dir_of(resume_path) if resume_path else None)
    if output_dir is not None:
        recipe = recipe.replace_train(output_dir=str(output_dir))
    if args.dry_run:
        print(recipe.to_yaml(), end="")
        return 0

    import torch

    from flowgen.train.trainer import Trainer

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    trainer = Trainer(recipe, cpu=args.cpu)
    result = trainer.train(resume=resume_path or args.resume, max_steps=args.max_steps)
    trainer.accelerator.end_training()
    if trainer.accelerator.is_main_process:
        loss = "" if result.loss is None else f", last loss {result.loss:.4g}"
        print(f"step {result.step}/{recipe.train.steps}{loss}")
        if result.final is not None:
            print(f"EMA model: {result.final}")
        elif result.checkpoint is not None:
            print(
                f"stopped at a checkpoint; continue with: flowgen train --resume {result.checkpoint}"
            )
    return 0
