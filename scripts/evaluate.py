"""Evaluate a trained approximator on fresh inputs of the network it was trained on.

    python scripts/evaluate.py checkpoint=outputs/runs/wta/<time>/checkpoints/best.pt n_samples=1000 seed=1
    python scripts/evaluate.py checkpoint=.../best.pt inputs=held_out.npy   # a custom task: your own inputs

Rebuilds the recurrent network from the checkpoint (no weight files or config needed),
draws new inputs from the task's distribution (a custom task's input set: its rows, with
replacement), or takes those of `inputs` (an n x D array, file:name for an entry; a file of
train/val/test splits gives its test split), solves their fixed points, runs the FF model
and prints the metrics; the last stdout line is one JSON object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import OmegaConf

from rnn_ff.checkpoint import approximator_from, load_checkpoint, task_from
from rnn_ff.cli import parse_overrides, run
from rnn_ff.config import DTYPES, SolverConfig, resolve_device, solver_options
from rnn_ff.data import Split
from rnn_ff.evaluation import evaluate, measure_speed, numbers
from rnn_ff.solver import CONVERGED, solve
from rnn_ff.tasks.input_sets import ONE_ARRAY, InputSet


@dataclass
class EvaluateConfig:
    checkpoint: str = "???"
    n_samples: int = 1000
    seed: int = 0
    device: str = "auto"
    inputs: Optional[str] = None  # a file of inputs to evaluate instead of n_samples fresh draws


def main(argv: list[str]) -> dict:
    args = parse_overrides(EvaluateConfig, argv)
    if args.n_samples < 1:
        raise SystemExit(f"n_samples={args.n_samples} is invalid: must be >= 1")
    checkpoint = load_checkpoint(args.checkpoint)
    task = task_from(checkpoint)
    solver_cfg = OmegaConf.merge(OmegaConf.structured(SolverConfig), checkpoint["config"]["solver"])
    device = resolve_device(args.device)
    model = approximator_from(checkpoint).to(device)

    inputs, labels = task.sample(args.n_samples, torch.Generator().manual_seed(args.seed))
    if args.inputs is not None:
        if labels:
            raise SystemExit(f"inputs={args.inputs}: task {task.name} draws labels with its inputs ({', '.join(labels)}), "
                             "which a file of inputs does not hold; inputs= is for tasks without (custom)")
        given = InputSet.read(args.inputs, key="inputs")
        given.check_width(task.network.n_inputs)
        inputs = given.arrays.get("test", given.arrays.get(ONE_ARRAY))
    result = solve(task.network, inputs, solver_options(solver_cfg), device=device, dtype=DTYPES[solver_cfg.dtype])
    keep = result.status_codes == CONVERGED
    converged = Split(inputs[keep], result.rates[keep], {k: v[keep] for k, v in labels.items()}).to(device)
    metrics = numbers(evaluate(model, task, converged, "eval"))
    metrics |= {f"data/{status}": count for status, count in result.counts().items()}
    # The solve above, of these same inputs in this process, is the recurrent side's timing.
    metrics |= measure_speed(model, task, inputs.to(device), solver_options(solver_cfg), DTYPES[solver_cfg.dtype],
                             ode_seconds=result.seconds)
    metrics |= {"checkpoint": str(args.checkpoint), "task": task.name, "n_samples": len(inputs), "seed": args.seed,
                "inputs": args.inputs}
    return metrics


if __name__ == "__main__":
    run(main)
