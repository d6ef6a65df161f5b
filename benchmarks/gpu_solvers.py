"""GPU sampling throughput of flowgen's fixed-step solvers: fp32 vs bf16 autocast vs CUDA graphs.

Runs unchanged on any CUDA machine; on a machine without CUDA it says so and exits 0.

    python benchmarks/gpu_solvers.py            # writes benchmarks/results/gpu_solvers.{md,json}

The network is a mid-size residual MLP velocity field (flowgen.toy.model.MLPVelocity with
dim 256, width 1024, 6 blocks, ~50 M parameters). For each batch size and method it reports
samples/s of a full solve (median of repeats, CUDA-synchronised), the bf16 deviation from fp32,
and the speed-up of bf16 and of CUDA-graph replay over eager fp32.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time

import torch

from flowgen.fm.solvers import GraphedSampler, sample
from flowgen.fm.time import uniform_grid
from flowgen.toy.model import MLPVelocity, MLPVelocityConfig


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batches", type=int, nargs="*", default=[16, 256, 4096], help="batch sizes")
    p.add_argument("--steps", type=int, default=16, help="solver steps (default: %(default)s)")
    p.add_argument("--methods", nargs="*", default=["euler", "rk4"], help="fixed-step methods")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats (default: %(default)s)")
    p.add_argument(
        "--out", default="benchmarks/results/gpu_solvers", help="output path without suffix"
    )
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_solvers: no CUDA device on this machine; nothing measured (run it on a GPU).")
        return 0

    torch.manual_seed(0)
    device = torch.device("cuda")
    model = MLPVelocity(MLPVelocityConfig(dim=256, hidden=1024, num_blocks=6)).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    grid = uniform_grid(args.steps)
    rows = []
    with torch.no_grad():
        for batch in args.batches:
            x_0 = torch.randn(batch, 256, device=device)
            for method in args.methods:
                ref = sample(model, x_0, grid, method=method)
                low = sample(model, x_0, grid, method=method, autocast_dtype=torch.bfloat16)
                rel = float((low.x - ref.x).norm() / ref.x.norm())
                t_fp32 = _timed(lambda: sample(model, x_0, grid, method=method), args.repeats)  # noqa: B023
                t_bf16 = _timed(
                    lambda: sample(model, x_0, grid, method=method, autocast_dtype=torch.bfloat16),  # noqa: B023
                    args.repeats,
                )
                g32 = GraphedSampler(model, x_0, grid, method=method)
                g16 = GraphedSampler(model, x_0, grid, method=method, autocast_dtype=torch.bfloat16)
                graph_err = float((g32(x_0).x - ref.x).abs().max())
                t_g32 = _timed(lambda: g32(x_0), args.repeats)  # noqa: B023
                t_g16 = _timed(lambda: g16(x_0), args.repeats)  # noqa: B023
                rows.append(
                    {
                        "batch": batch,
                        "method": method,
                        "nfe": ref.nfe,
                        "samples_per_s": {
                            "fp32": batch / t_fp32,
                            "bf16": batch / t_bf16,
                            "fp32_graph": batch / t_g32,
                            "bf16_graph": batch / t_g16,
                        },
                        "bf16_rel_l2_vs_fp32": rel,
                        "graph_max_abs_diff_vs_eager": graph_err,
                    }
                )
                print(rows[-1], flush=True)

    name = torch.cuda.get_device_name(0)
    lines = [
        "# GPU solver throughput",
        "",
        f"- command: `{' '.join(['python'] + sys.argv)}`",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {name}, {platform.platform()}, torch {torch.__version__}, CUDA {torch.version.cuda}",
        f"- network: MLPVelocity dim 256, width 1024, 6 blocks ({params / 1e6:.1f} M params), "
        f"{args.steps} steps, median of {args.repeats} repeats",
        "",
        "| batch | method | NFE | fp32 samples/s | bf16 | fp32 + graph | bf16 + graph | bf16 speed-up | graph speed-up | bf16 rel. L2 vs fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["samples_per_s"]
        lines.append(
            f"| {r['batch']} | {r['method']} | {r['nfe']} | {s['fp32']:.0f} | {s['bf16']:.0f} | "
            f"{s['fp32_graph']:.0f} | {s['bf16_graph']:.0f} | {s['bf16'] / s['fp32']:.2f}x | "
            f"{s['fp32_graph'] / s['fp32']:.2f}x | {r['bf16_rel_l2_vs_fp32']:.2e} |"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(args.out + ".json", "w") as fh:
        json.dump({"device": name, "rows": rows}, fh, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
