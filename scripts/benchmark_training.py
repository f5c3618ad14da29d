"""Where a default run's training time goes, and how close its steps come to the machine's matmul rate.

    python scripts/benchmark_training.py [--tasks wta transformation denoising] [--seeds 0 1 2]
        [--before GIT_REV] [--variant "trainer.batch_size=512 trainer.lr=4e-3"] [--common "..."]
        [--device cpu] [--threads N]

Runs each task's default training (its dataset from the shared cache, generated once if need
be) in a fresh process per run, as `python train.py task=<task>` runs it, and, with --variant,
the same run with those overrides next to it (--common: overrides of both, e.g. to shrink them);
with --before, the same default run of the code at GIT_REV (a git worktree of it, sharing the
dataset cache), seed by seed in turn with today's, so that the machine's noise falls on both alike.
Prints per run: the whole run's wall seconds
(data included), the loop's phases (optimiser steps, validation, logging, checkpoints; the rest
is start-up, the final evaluation and figures), epochs, optimiser steps, the FLOP/s the steps
achieve (3 x the forward FLOPs per input x inputs seen, over the steps' seconds) beside the
FLOP/s of this machine's matmul at the model's own shapes (batch x hidden @ hidden x hidden,
the physical limit for this model size) measured in the same process, and the quality: test
rel_error and the task's headline population error. Means over seeds (the datasets' generation
is timed apart: runs read them from the cache); a variant's or GIT_REV's ratios against today's
defaults. Then, in this one process and interleaved (so that the machine's noise
falls on both alike), the optimiser step at each task's default shapes with the fused AdamW
kernel that training uses against PyTorch's default CPU AdamW: ms per step, medians of rounds.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PHASES = ("steps", "validation", "logging", "checkpoints")


def matmul_flops(batch: int, width: int, device: str, seconds: float = 0.5) -> float:
    """FLOP/s of (batch x width) @ (width x width) in float32, repeated for about `seconds`."""
    a = torch.randn(batch, width, device=device)
    b = torch.randn(width, width, device=device)
    for _ in range(10):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        count += 20
    return 2 * batch * width * width * count / (time.perf_counter() - start)


def step_milliseconds(cfg, rounds: int = 7, steps: int = 100) -> dict[str, float]:
    """ms per optimiser step (loss, backward, clip, AdamW: EpochSteps, as train() runs it) at `cfg`'s
    model and batch shapes, fused AdamW against the default (for-loop) one, interleaved round by
    round; medians."""
    from rnn_ff.model import FeedForwardApproximator
    from rnn_ff.tasks import build_task
    from rnn_ff.training_steps import EpochSteps

    network = build_task(cfg.task).network
    batch = int(cfg.trainer.batch_size)
    torch.manual_seed(0)
    inputs, targets = torch.rand(steps * batch, network.n_inputs), torch.rand(steps * batch, network.n_units)
    kinds = {"fused": True, "default": None}
    epochs = {}
    for kind, fused in kinds.items():
        model = FeedForwardApproximator(network.n_inputs, network.n_units, hidden=int(cfg.model.hidden),
                                        hidden_layers=int(cfg.model.hidden_layers), output_activation="relu")
        model.fit_normalisation(inputs, targets)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
        epochs[kind] = EpochSteps(model, optimizer, inputs, targets, batch, grad_clip=1.0)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            start = time.perf_counter()
            epochs[kind].run(torch.randperm(len(inputs))).item()
            times[kind].append(1e3 * (time.perf_counter() - start) / steps)
    return {kind: statistics.median(values) for kind, values in times.items()}


def run_once(task: str, seed: int, overrides: list[str], device: str, root: Path, project: Path = PROJECT_ROOT) -> dict:
    """One default run of `task` by the train.py in `project`, in its own process; its metrics.json
    (with time/* phases; a `project` from before they were recorded has none)."""
    run_dir = root / f"{task}-{seed}-{abs(hash((str(project), *overrides)))}"
    command = [sys.executable, str(project / "train.py"), f"task={task}", f"seed={seed}", f"device={device}",
               f"hydra.run.dir={run_dir}", "trainer.progress=false", "solver.progress=false", *overrides]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics | {"wall_seconds": wall}


def summary(task: str, runs: list[dict], batch: int, hidden: int, matmul: float, headline: str | None) -> dict:
    def mean(key: str) -> float:  # over seeds, as the training-time targets are stated
        return statistics.mean(run.get(key, math.nan) for run in runs)

    steps_seconds = mean("time/steps_seconds")
    inputs_seen = mean("data/train_size") * mean("train/epochs")
    achieved = 3 * mean("model/flops_per_input") * inputs_seen / steps_seconds
    row = {"task": task, "wall_s": mean("wall_seconds"), "data_s": mean("data/seconds"),
           **{f"{phase}_s": mean(f"time/{phase}_seconds") for phase in PHASES},
           "epochs": mean("train/epochs"), "optimizer_steps": inputs_seen / batch,
           "steps_gflops": achieved / 1e9, "matmul_gflops": matmul / 1e9, "of_matmul": achieved / matmul,
           "test_rel_error": mean("test/rel_error"), "headline": mean(headline) if headline else None,
           "batch_size": batch, "hidden": hidden}
    row["other_s"] = row["wall_s"] - row["data_s"] - sum(row[f"{phase}_s"] for phase in PHASES)
    return row


def print_table(rows: list[dict]) -> None:
    columns = ("task", "variant", "wall_s", "data_s", "steps_s", "validation_s", "logging_s", "checkpoints_s",
               "other_s", "epochs", "optimizer_steps", "steps_gflops", "matmul_gflops", "of_matmul",
               "test_rel_error", "headline")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["wta", "transformation", "denoising"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--before", default=None, help="a git revision whose default runs are timed beside today's")
    parser.add_argument("--variant", default="", help="overrides of the run compared with the defaults")
    parser.add_argument("--common", default="", help="overrides of every run (defaults and variant)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the matmul measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(PROJECT_ROOT))
    from rnn_ff.config import load_config
    from rnn_ff.tasks import build_task

    common = args.common.split()
    variants = {"defaults": common} | ({"variant": [*common, *args.variant.split()]} if args.variant else {})
    rows = []
    with tempfile.TemporaryDirectory(prefix="benchmark_training-") as root:
        projects = {name: PROJECT_ROOT for name in variants}
        if args.before:  # the same dataset cache as today's runs, not the worktree's own
            projects[f"before {args.before}"] = Path(root) / "before"
            variants[f"before {args.before}"] = [*common, f"paths.cache_dir={load_config(common).paths.cache_dir}"]
            subprocess.run(["git", "-C", str(PROJECT_ROOT), "worktree", "add", "--detach", str(Path(root) / "before"),
                            args.before], check=True, capture_output=True)
        try:
            for task in args.tasks:
                runs: dict[str, list[dict]] = {name: [] for name in variants}
                for seed in args.seeds:  # seed by seed, each variant in turn: the machine's drift falls on all
                    for name, overrides in variants.items():
                        runs[name].append(run_once(task, seed, overrides, args.device, Path(root), projects[name]))
                        print(f"{task} seed {seed} {name}: {runs[name][-1]['wall_seconds']:.1f} s", file=sys.stderr,
                              flush=True)
                for name, overrides in variants.items():
                    cfg = load_config([f"task={task}", *overrides])
                    batch, hidden = int(cfg.trainer.batch_size), int(cfg.model.hidden)
                    matmul = matmul_flops(batch, hidden, args.device)
                    # the task's own population error (Task.headline_metrics: its first is the population's)
                    population = next((f"test/{m}" for m in build_task(cfg.task).headline_metrics
                                       if m.startswith("rel_error_")), None)
                    rows.append(summary(task, runs[name], batch, hidden, matmul, population)
                                | {"variant": args.variant if name == "variant" else name, "seeds": runs[name]})
        finally:
            if args.before:
                subprocess.run(["git", "-C", str(PROJECT_ROOT), "worktree", "remove", "--force",
                                str(Path(root) / "before")], capture_output=True)
    print_table(rows)
    steps = {}
    for task in args.tasks:
        steps[task] = step_milliseconds(load_config([f"task={task}", *common]))
        print(f"{task}: optimiser step {steps[task]['fused']:.3f} ms fused AdamW, {steps[task]['default']:.3f} ms "
              f"default AdamW ({steps[task]['default'] / steps[task]['fused']:.2f}x), interleaved in this process")
    for task in args.tasks:
        base, *others = (row for row in rows if row["task"] == task)
        for other in others:
            print(f"{task}: {other['variant']} takes {other['wall_s'] / base['wall_s']:.2f}x the defaults' time "
                  f"(defaults: {base['wall_s'] / other['wall_s']:.2f}x its); test/rel_error "
                  f"{other['test_rel_error'] / base['test_rel_error']:.2f}x, population error "
                  f"{other['headline'] / base['headline']:.2f}x")
    print(json.dumps({"rows": rows, "step_ms": steps, "seeds": args.seeds, "device": args.device}))


if __name__ == "__main__":
    main()
