"""``flowgen toy sample``: draw 2-D samples from a toy flow checkpoint and plot them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

EXAMPLES = """examples:
  flowgen toy sample --checkpoint toy2d_8gaussians -o samples.png
  flowgen toy sample --checkpoint toy2d_8gaussians --steps 1 --method euler --num 4000 --json
  flowgen toy sample --checkpoint runs/toy2d_icfm/final --method dopri5 -o adaptive.png
"""

DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    toy = sub.add_parser("toy", help="2-D toy flows (the demo of the shared flow-matching core)")
    toy_sub = toy.add_subparsers(dest="toy_command", metavar="ACTION", required=True)
    p = toy_sub.add_parser(
        "sample",
        help="sample a toy checkpoint, plot source/samples/target, report W2^2",
        description="Integrate a trained 2-D flow from source noise to samples, save a scatter "
        "plot (source | samples | fresh target samples) and report the squared 2-Wasserstein "
        "distance to the target distribution.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        default="toy2d_8gaussians",
        help="checkpoint folder or shipped name (default: %(default)s)",
    )
    p.add_argument("--num", type=int, default=2000, help="number of samples (default: %(default)s)")
    p.add_argument(
        "--steps",
        type=int,
        default=8,
        help="solver steps (output times for adaptive methods) (default: %(default)s)",
    )
    p.add_argument(
        "--method",
        default="heun",
        help="euler | midpoint | heun | rk4 | dopri5 | ... (default: %(default)s)",
    )
    p.add_argument(
        "--cfg",
        type=float,
        default=1.0,
        help="classifier-free guidance scale for class-conditional checkpoints (default: %(default)s)",
    )
    p.add_argument(
        "--class",
        dest="label",
        type=int,
        default=None,
        help="class id for conditional checkpoints (default: balanced over classes)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; same seed, same samples (default: %(default)s)",
    )
    p.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)"
    )
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="network precision under autocast; the ODE state stays fp32 (default: %(default)s)",
    )
    p.add_argument(
        "-o",
        "--output",
        default="toy_samples.png",
        help="scatter plot to write (.png) (default: %(default)s)",
    )
    p.add_argument("--save-points", default=None, help="also save the samples as a .pt tensor file")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from flowgen.errors import InputError
    from flowgen.toy.sampling import ToyFlow

    if args.num < 1:
        raise InputError("--num must be >= 1")
    if not str(args.output).lower().endswith(".png"):
        raise InputError(f"--output must be a .png file, got {args.output!r}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    dtype = getattr(torch, DTYPES[args.dtype]) if DTYPES[args.dtype] else None

    flow = ToyFlow.load(args.checkpoint, device=device)
    start = time.perf_counter()
    result = flow.sample(
        args.num,
        steps=args.steps,
        method=args.method,
        seed=args.seed,
        cfg_scale=args.cfg,
        label=args.label,
        autocast_dtype=dtype,
    )
    seconds = time.perf_counter() - start
    w2 = flow.w2_to_target(result.x_1, seed=args.seed + 1)
    flow.plot(args.output, result, seed=args.seed + 1)
    if args.save_points:
        torch.save(result.x_1.cpu(), args.save_points)
    summary = {
        "checkpoint": str(flow.path),
        "source": flow.source,
        "target": flow.target,
        "num": args.num,
        "method": args.method,
        "steps": args.steps,
        "nfe": result.nfe,
        "w2_squared": round(w2, 5),
        "seconds": round(seconds, 4),
        "output": str(Path(args.output)),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{args.num} samples {flow.source} -> {flow.target} with {args.method} "
            f"({result.nfe} NFE, {seconds:.2f}s): W2^2 to target = {w2:.4f}; plot -> {args.output}"
        )
    return 0
