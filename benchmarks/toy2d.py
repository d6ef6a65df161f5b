"""Toy 2-D benchmark of the flow-matching core: couplings, samplers, distillation, overhead.

Tasks: N(0, I) -> 8 Gaussians; 8 Gaussians -> moons (the C2OT playground setup); and a
class-conditional 8 Gaussians -> moons (condition = moon label). Methods: I-CFM (independent),
OT-CFM (exact minibatch OT), W-CFM (Gibbs-weighted independent pairs), class-conditional OT
(conditional task), plus a 1-step student distilled from the I-CFM teacher. Metric: W2^2 (POT
``emd2``, squared Euclidean cost) between generated points and fresh target points, at Euler-1,
Euler-4, Heun-8 and dopri5, mean +- std over seeds. Also: training time per iteration measured
side by side (interleaved rounds in one process) and the solver's own overhead against
torchdiffeq's ``odeint`` on the same network and grid.

    python benchmarks/toy2d.py                      # full run, writes benchmarks/results/toy2d.{md,json}
    python benchmarks/toy2d.py --quick              # a minute-long smoke run (not for the record)
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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from flowgen.fm.couplings import couple
from flowgen.fm.distill import TeacherPairs, distillation_loss, generate_pairs
from flowgen.fm.losses import cfm_loss
from flowgen.fm.paths import LinearPath
from flowgen.fm.solvers import sample
from flowgen.fm.time import uniform_grid
from flowgen.toy import data
from flowgen.toy.metrics import w2_squared
from flowgen.toy.model import MLPVelocity, MLPVelocityConfig

TASKS = {
    "normal->8gaussians": ("normal", "8gaussians", False),
    "8gaussians->moons": ("8gaussians", "moons", False),
    "8gaussians->moons|class": ("8gaussians", "moons", True),
}
METHOD_NAMES = {"independent": "I-CFM", "ot": "OT-CFM", "wcfm": "W-CFM", "class_ot": "class-OT"}
SAMPLERS = [("euler", 1), ("euler", 4), ("heun", 8), ("dopri5", None)]
PATH = LinearPath()


@dataclass(frozen=True)
class Job:
    task: str
    method: str
    seed: int
    iters: int
    batch: int
    ot_batch: int
    wcfm_eps: float
    eval_points: int
    distill_iters: int


def _methods(task: str) -> list[str]:
    conditional = TASKS[task][2]
    return ["independent", "ot", "wcfm"] + (["class_ot"] if conditional else [])


def _draw(task: str, n: int, g: torch.Generator):
    source, target, conditional = TASKS[task]
    x_0, _ = data.sample(source, n, g)
    x_1, labels = data.sample(target, n, g)
    return x_0, x_1, labels if conditional else None


def _model(task: str) -> MLPVelocity:
    return MLPVelocity(
        MLPVelocityConfig(dim=2, hidden=128, num_blocks=3, num_classes=2 if TASKS[task][2] else 0)
    )


def train_step(model, opt, chunk, g: torch.Generator) -> float:
    x_0, x_1, labels, weights = chunk
    t = torch.rand(x_0.shape[0], generator=g)
    ps = PATH.sample(x_0, x_1, t)
    loss = cfm_loss(model(ps.x_t, t, labels), ps.dx_t, weights=weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def batches(job: Job, g: torch.Generator):
    """Endless training chunks: couple ``ot_batch`` points at a time, train on ``batch``-slices."""
    while True:
        x_0, x_1, labels = _draw(job.task, job.ot_batch, g)
        c = couple(x_0, x_1, job.method, labels=labels, generator=g, wcfm_eps=job.wcfm_eps)
        for i in range(0, job.ot_batch, job.batch):
            sl = slice(i, i + job.batch)
            yield (
                c.x_0[sl],
                c.x_1[sl],
                None if c.labels is None else c.labels[sl],
                None if c.weights is None else c.weights[sl],
            )


def evaluate(model, task: str, seed: int, n: int) -> dict:
    g = torch.Generator().manual_seed(10_000 + seed)
    x_0, x_1, labels = _draw(task, n, g)
    out = {}
    with torch.no_grad():
        fn = (lambda x, t: model(x, t, labels)) if labels is not None else model
        for method, steps in SAMPLERS:
            grid = torch.tensor([0.0, 1.0]) if steps is None else uniform_grid(steps)
            sol = sample(fn, x_0, grid, method=method, rtol=1e-4, atol=1e-4)
            key = f"{method}-{steps}" if steps else method
            out[key] = {"w2": w2_squared(sol.x, x_1), "nfe": sol.nfe}
    return out


def run_job(job: Job) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(job.seed)
    g = torch.Generator().manual_seed(job.seed)
    model = _model(job.task)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    stream = batches(job, g)
    start = time.perf_counter()
    for _ in range(job.iters):
        train_step(model, opt, next(stream), g)
    train_s = time.perf_counter() - start
    result = {
        "job": job.__dict__,
        "train_s_per_iter": train_s / job.iters,
        "eval": evaluate(model, job.task, job.seed, job.eval_points),
    }
    if job.method == "independent" and not TASKS[job.task][2] and job.distill_iters:
        result["student"] = distill(model, job, g)
    return result


def distill(teacher, job: Job, g: torch.Generator) -> dict:
    """1-step student, initialised from the teacher, trained on teacher dopri5 (noise, sample) pairs."""
    source = TASKS[job.task][0]
    x_0, _ = data.sample(source, 20_000, g)
    with torch.no_grad():
        pairs = generate_pairs(teacher, x_0, time_grid=torch.tensor([0.0, 1.0]), method="dopri5")
    student = _model(job.task)
    student.load_state_dict(teacher.state_dict())
    opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    for _ in range(job.distill_iters):
        idx = torch.randint(0, x_0.shape[0], (job.batch,), generator=g)
        loss = distillation_loss(student, TeacherPairs(pairs.time_grid, pairs.states[:, idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return evaluate(student, job.task, job.seed, job.eval_points)["euler-1"]


def time_methods(
    task: str,
    methods: list[str],
    *,
    batch: int,
    ot_batch: int,
    wcfm_eps: float,
    rounds: int,
    iters: int,
) -> dict:
    """Seconds per training iteration, methods interleaved round by round in this one process."""
    torch.set_num_threads(1)
    samples: dict[str, list[float]] = {m: [] for m in methods}
    setups = {}
    for m in methods:
        job = Job(task, m, 0, 0, batch, ot_batch, wcfm_eps, 0, 0)
        model = _model(task)
        g = torch.Generator().manual_seed(0)
        setups[m] = (model, torch.optim.Adam(model.parameters(), lr=3e-4), batches(job, g), g)
    for _ in range(rounds):
        for m in methods:
            model, opt, stream, g = setups[m]
            start = time.perf_counter()
            for _ in range(iters):
                train_step(model, opt, next(stream), g)
            samples[m].append((time.perf_counter() - start) / iters)
    return {m: statistics.median(v) for m, v in samples.items()}


def solver_overhead(*, batch: int = 2000, steps: int = 200, repeats: int = 7) -> dict:
    """Wall time per NFE of flowgen's fixed-step solvers vs torchdiffeq.odeint, interleaved."""
    from torchdiffeq import odeint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = _model("normal->8gaussians").eval()
    x_0 = torch.randn(batch, 2)
    grid = uniform_grid(steps)
    calls = [0]

    def f(t, x):  # torchdiffeq's (t, x) signature, counting evaluations like flowgen does
        calls[0] += 1
        return model(x, t)

    out = {}
    with torch.no_grad():
        for method in ("euler", "rk4"):
            ours, theirs = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                sol = sample(model, x_0, grid, method=method)
                ours.append((time.perf_counter() - start) / sol.nfe)
                calls[0] = 0
                start = time.perf_counter()
                odeint(f, x_0, grid, method=method)
                theirs.append((time.perf_counter() - start) / calls[0])
            a, b = statistics.median(ours), statistics.median(theirs)
            out[method] = {"flowgen_s_per_nfe": a, "torchdiffeq_s_per_nfe": b, "ratio": a / b}
    return out


def summarise(results: list[dict]) -> dict:
    table: dict = {}
    for r in results:
        j = r["job"]
        row = table.setdefault(j["task"], {}).setdefault(
            j["method"], {"train_s_per_iter": [], "evals": {}}
        )
        row["train_s_per_iter"].append(r["train_s_per_iter"])
        for k, v in r["eval"].items():
            row["evals"].setdefault(k, []).append(v)
        if "student" in r:
            row["evals"].setdefault("student euler-1", []).append(r["student"])
    return table


def _ms(values: list[float]) -> str:
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} +- {std:.3f}"


def _mean(values):
    return statistics.fmean(values)


def render(table: dict, timing: dict, overhead: dict, args, elapsed: float) -> str:
    lines = [
        "# toy2d benchmark",
        "",
        f"- command: `{' '.join(['python'] + sys.argv)}`",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"1 thread per job, {args.jobs} jobs in parallel; total {elapsed / 60:.1f} min",
        f"- setup: MLP width 128, 3 residual blocks (4x GELU MLP), Adam 3e-4, batch {args.batch}, "
        f"coupling computed on {args.ot_batch} points, {args.iters} iterations "
        f"({args.iters_ref} on 8gaussians->moons), {args.seeds} seeds, W2^2 on {args.eval_points} "
        f"points (POT emd2, squared Euclidean), dopri5 rtol=atol=1e-4; W-CFM eps={args.wcfm_eps} "
        f"(batch-normalised weights); student: 1 step, initialised from the I-CFM teacher, "
        f"{args.distill_iters} iterations on 20k teacher dopri5 pairs.",
        "",
        "W2^2 (mean +- std over seeds; lower is better). Train s/iter is from the training runs "
        "(parallel jobs, noisy); the side-by-side timing below is the fair comparison.",
        "",
    ]
    for task, rows in table.items():
        lines += [
            f"## {task}",
            "",
            "| method | Euler-1 | Euler-4 | Heun-8 | dopri5 (NFE) | train ms/iter |",
            "|---|---|---|---|---|---|",
        ]
        for method, row in rows.items():
            ev = row["evals"]
            nfe = _mean([e["nfe"] for e in ev["dopri5"]])
            cells = [_ms([e["w2"] for e in ev[k]]) for k in ("euler-1", "euler-4", "heun-8")]
            lines.append(
                f"| {METHOD_NAMES[method]} | {' | '.join(cells)} | {_ms([e['w2'] for e in ev['dopri5']])} "
                f"({nfe:.0f}) | {1e3 * _mean(row['train_s_per_iter']):.2f} |"
            )
            if "student euler-1" in ev:
                lines.append(
                    f"| 1-step student of I-CFM | {_ms([e['w2'] for e in ev['student euler-1']])} | | | | |"
                )
        lines.append("")
    lines += [
        "## Training time per iteration, side by side",
        "",
        "Methods interleaved round by round in one process (median of rounds), task "
        f"{args.timing_task}.",
        "",
        "| method | ms/iter | vs I-CFM |",
        "|---|---|---|",
    ]
    for m, s in timing.items():
        lines.append(f"| {METHOD_NAMES[m]} | {1e3 * s:.2f} | {s / timing['independent']:.2f}x |")
    lines += [
        "",
        "## Solver overhead vs torchdiffeq",
        "",
        "Same network (width 128 MLP), batch 2000, 200 steps, median of 7 interleaved repeats.",
        "",
        "| method | flowgen us/NFE | torchdiffeq us/NFE | ratio |",
        "|---|---|---|---|",
    ]
    for m, o in overhead.items():
        lines.append(
            f"| {m} | {1e6 * o['flowgen_s_per_nfe']:.1f} | {1e6 * o['torchdiffeq_s_per_nfe']:.1f} | {o['ratio']:.2f}x |"
        )
    lines += ["", "## Targets", ""] + targets(table, timing, overhead)
    return "\n".join(lines) + "\n"


def targets(table: dict, timing: dict, overhead: dict) -> list[str]:
    out = []
    ref = table.get("8gaussians->moons", {})

    def w2(method, key, task="8gaussians->moons"):
        return [e["w2"] for e in table[task][method]["evals"][key]]

    def verdict(ok):
        return "met" if ok else "MISSED"

    if "independent" in ref and "ot" in ref:
        for method, key, pub, spread in [
            ("independent", "euler-1", 6.23, 0.19),
            ("ot", "euler-1", 0.072, 0.025),
            ("independent", "dopri5", 0.120, None),
            ("ot", "dopri5", 0.050, None),
        ]:
            vals = w2(method, key)
            m = _mean(vals)
            s = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            tol = spread if spread is not None else 0.5 * pub
            out.append(
                f"- C2OT reference, {METHOD_NAMES[method]} {key}: published {pub}"
                f"{f' +- {spread}' if spread else ''}, measured {m:.3f} +- {s:.3f}: "
                f"{verdict(abs(m - pub) <= tol + s)} (within the published spread + ours"
                f"{'' if spread else '; no spread published, 50% band used'})"
            )
    if "wcfm" in ref:
        r = _mean(w2("wcfm", "euler-1")) / _mean(w2("ot", "euler-1"))
        out.append(f"- W-CFM Euler-1 W2^2 within 1.5x of OT-CFM: {r:.2f}x: {verdict(r <= 1.5)}")
    if "wcfm" in timing:
        r = timing["wcfm"] / timing["independent"]
        out.append(f"- W-CFM time/iter <= 1.2x I-CFM: {r:.2f}x: {verdict(r <= 1.2)}")
    for task, rows in table.items():
        ev = rows.get("independent", {}).get("evals", {})
        if "student euler-1" in ev:
            r = _mean([e["w2"] for e in ev["student euler-1"]]) / _mean(
                [e["w2"] for e in ev["dopri5"]]
            )
            out.append(
                f"- {task}: 1-step student W2^2 within 2x of teacher dopri5: {r:.2f}x: {verdict(r <= 2)}"
            )
    for m, o in overhead.items():
        out.append(
            f"- solver overhead {m} <= 1.0x torchdiffeq: {o['ratio']:.2f}x: {verdict(o['ratio'] <= 1.0)}"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--iters", type=int, default=5000, help="training iterations per run (default: %(default)s)"
    )
    p.add_argument(
        "--iters-ref",
        type=int,
        default=10000,
        help="iterations on 8gaussians->moons, the C2OT reference task (default: %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=3, help="seeds per (task, method) (default: %(default)s)"
    )
    p.add_argument(
        "--batch", type=int, default=256, help="training batch size (default: %(default)s)"
    )
    p.add_argument(
        "--ot-batch",
        type=int,
        default=256,
        help="points per coupling solve (C2OT: 1024) (default: %(default)s)",
    )
    p.add_argument(
        "--wcfm-eps", type=float, default=1.0, help="W-CFM temperature eps (default: %(default)s)"
    )
    p.add_argument(
        "--eval-points", type=int, default=2000, help="points for W2^2 (default: %(default)s)"
    )
    p.add_argument(
        "--distill-iters",
        type=int,
        default=3000,
        help="1-step student iterations (default: %(default)s)",
    )
    p.add_argument(
        "--tasks", nargs="*", default=list(TASKS), choices=list(TASKS), help="tasks to run"
    )
    p.add_argument(
        "--jobs", type=int, default=2, help="parallel worker processes (default: %(default)s)"
    )
    p.add_argument(
        "--timing-task", default="8gaussians->moons|class", help="task for the side-by-side timing"
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke run; results are not meaningful"
    )
    p.add_argument("--out", default="benchmarks/results/toy2d", help="output path without suffix")
    args = p.parse_args()
    if args.quick:
        args.iters, args.iters_ref, args.seeds, args.eval_points, args.distill_iters = (
            200,
            200,
            1,
            500,
            100,
        )
    start = time.perf_counter()
    jobs = [
        Job(
            task,
            m,
            seed,
            args.iters_ref if task == "8gaussians->moons" else args.iters,
            args.batch,
            args.ot_batch,
            args.wcfm_eps,
            args.eval_points,
            args.distill_iters,
        )
        for task in args.tasks
        for m in _methods(task)
        for seed in range(args.seeds)
    ]
    jobs.sort(
        key=lambda j: -j.iters * (3 if j.method in ("ot", "class_ot") else 1)
    )  # longest first
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(run_job, jobs):
            results.append(r)
            j = r["job"]
            print(
                f"done {j['task']} {j['method']} seed {j['seed']}: euler-1 {r['eval']['euler-1']['w2']:.3f} "
                f"dopri5 {r['eval']['dopri5']['w2']:.3f}",
                flush=True,
            )
    timing_methods = _methods(args.timing_task)
    timing = time_methods(
        args.timing_task,
        timing_methods,
        batch=args.batch,
        ot_batch=args.ot_batch,
        wcfm_eps=args.wcfm_eps,
        rounds=3 if args.quick else 7,
        iters=20 if args.quick else 100,
    )
    overhead = solver_overhead(repeats=3 if args.quick else 7)
    table = summarise(results)
    elapsed = time.perf_counter() - start
    md = render(table, timing, overhead, args, elapsed)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as fh:
        fh.write(md)
    with open(args.out + ".json", "w") as fh:
        json.dump(
            {"args": vars(args), "results": results, "timing": timing, "overhead": overhead},
            fh,
            indent=1,
        )
    print(md)


if __name__ == "__main__":
    main()
