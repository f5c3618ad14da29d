"""Where a default run's training time goes, and how close its steps come to the machine's matmul rate.

    python scripts/benchmark_training.py [--tasks wta transformation denoising] [--seeds 0]
        [--variant "trainer.batch_size=512 trainer.lr=4e-3"] [--common "..."] [--device cpu] [--threads N]

Runs each task's default training (its dataset from the shared cache, generated once if need
be) in a fresh process per run, as `python train.py task=<task>` runs it, and, with --variant,
the same run with those overrides next to it (--common: overrides of both, e.g. to shrink them). Prints per run: the whole run's wall seconds
(data included), the loop's phases (optimiser steps, validation, logging, checkpoints; the rest
is start-up, the final evaluation and figures), epochs, optimiser steps, the FLOP/s the steps
achieve (3 x the forward FLOPs per input x inputs seen, over the steps' seconds) beside the
FLOP/s of this machine's matmul at the model's own shapes (batch x hidden @ hidden x hidden,
the physical limit for this model size) measured in the same process, and the quality: test
rel_error and the task's headline population error. Medians over seeds; a variant's ratios
against the defaults. Then, in this one process and interleaved (so that the machine's noise
falls on both alike), the optimiser step at each task's default shapes with the fused AdamW
kernel that training uses against PyTorch's default CPU AdamW: ms per step, medians of rounds.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
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
    """ms per training step (loss, backward, clip, AdamW) at `cfg`'s model and batch shapes, fused
    AdamW against the default (for-loop) one, interleaved round by round; medians."""
    from rnn_ff.model import FeedForwardApproximator
    from rnn_ff.tasks import build_task
    from rnn_ff.training import training_step

    network = build_task(cfg.task).network
    torch.manual_seed(0)
    inputs, targets = torch.rand(8192, network.n_inputs), torch.rand(8192, network.n_units)
    kinds = {"fused": True, "default": None}
    models, optimizers = {}, {}
    for kind, fused in kinds.items():
        models[kind] = FeedForwardApproximator(network.n_inputs, network.n_units, hidden=int(cfg.model.hidden),
                                               hidden_layers=int(cfg.model.hidden_layers), output_activation="relu")
        models[kind].fit_normalisation(inputs, targets)
        optimizers[kind] = torch.optim.AdamW(models[kind].parameters(), lr=1e-3, fused=fused)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    batch = int(cfg.trainer.batch_size)
    for _ in range(rounds):
        for kind in kinds:
            start = time.perf_counter()
            for _ in range(steps):
                index = torch.randint(0, len(inputs), (batch,))
                training_step(models[kind], optimizers[kind], inputs[index], targets[index], 1.0)
            times[kind].append(1e3 * (time.perf_counter() - start) / steps)
    return {kind: statistics.median(values) for kind, values in times.items()}


def run_once(task: str, seed: int, overrides: list[str], device: str, root: Path) -> dict:
    """One default run of `task` in its own process; its metrics.json (with time/* phases)."""
    run_dir = root / f"{task}-{seed}-{abs(hash(tuple(overrides)))}"
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), f"task={task}", f"seed={seed}", f"device={device}",
               f"hydra.run.dir={run_dir}", "trainer.progress=false", "solver.progress=false", *overrides]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics | {"wall_seconds": wall}


def summary(task: str, runs: list[dict], batch: int, hidden: int, matmul: float, headline: str | None) -> dict:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    steps_seconds = median("time/steps_seconds")
    inputs_seen = median("data/train_size") * median("train/epochs")
    achieved = 3 * median("model/flops_per_input") * inputs_seen / steps_seconds
    row = {"task": task, "wall_s": median("wall_seconds"), "data_s": median("data/seconds"),
           **{f"{phase}_s": median(f"time/{phase}_seconds") for phase in PHASES},
           "epochs": median("train/epochs"), "optimizer_steps": inputs_seen / batch,
           "steps_gflops": achieved / 1e9, "matmul_gflops": matmul / 1e9, "of_matmul": achieved / matmul,
           "test_rel_error": median("test/rel_error"), "headline": median(headline) if headline else None,
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
        for task in args.tasks:
            for name, overrides in variants.items():
                cfg = load_config([f"task={task}", *overrides])
                batch, hidden = int(cfg.trainer.batch_size), int(cfg.model.hidden)
                runs = [run_once(task, seed, overrides, args.device, Path(root)) for seed in args.seeds]
                matmul = matmul_flops(batch, hidden, args.device)
                # the task's own population error (Task.headline_metrics: its first is the population's)
                population = next((f"test/{m}" for m in build_task(cfg.task).headline_metrics
                                   if m.startswith("rel_error_")), None)
                rows.append(summary(task, runs, batch, hidden, matmul, population) | {"variant": args.variant if name == "variant"
                                                                          else name})
                print(f"{task} {name}: {rows[-1]['wall_s']:.1f} s, test/rel_error {rows[-1]['test_rel_error']:.4g}",
                      file=sys.stderr, flush=True)
    print_table(rows)
    steps = {}
    for task in args.tasks:
        steps[task] = step_milliseconds(load_config([f"task={task}", *common]))
        print(f"{task}: optimiser step {steps[task]['fused']:.3f} ms fused AdamW, {steps[task]['default']:.3f} ms "
              f"default AdamW ({steps[task]['default'] / steps[task]['fused']:.2f}x), interleaved in this process")
    if args.variant:
        for task in args.tasks:
            base, other = (row for row in rows if row["task"] == task)
            print(f"{task}: the variant takes {other['wall_s'] / base['wall_s']:.2f}x the defaults' time; "
                  f"test/rel_error {other['test_rel_error'] / base['test_rel_error']:.2f}x")
    print(json.dumps({"rows": rows, "step_ms": steps, "seeds": args.seeds, "device": args.device}))


if __name__ == "__main__":
    main()
