"""Metrics and speed of a trained approximator against the recurrent network (figures: rnn_ff/figures.py)."""

from __future__ import annotations

import statistics
import time

import torch

from rnn_ff.data import Split
from rnn_ff.model import FeedForwardApproximator
from rnn_ff.solver import SolverOptions, solve
from rnn_ff.tasks import Task
from rnn_ff.tasks.base import population_errors


def regression_metrics(predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """rel_error = ||P - T||_F / ||T||_F; r2 = 1 - SSE / total variance around the unit means.

    0-dim tensors on the inputs' device: `numbers` fetches them where a run needs Python numbers."""
    error = predicted - target
    total = ((target - target.mean(0)) ** 2).sum()
    return {
        "rel_error": error.norm() / target.norm().clamp_min(1e-300),
        "r2": 1.0 - (error**2).sum() / total.clamp_min(1e-300),
        "mse": (error**2).mean(),
    }


def numbers(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Python floats of 0-dim metric tensors, fetched from their device in one transfer: metrics
    leave the device here, at epoch and run boundaries, and nowhere else."""
    if not metrics:
        return {}
    return dict(zip(metrics, torch.stack([value.double() for value in metrics.values()]).tolist()))


@torch.no_grad()
def predict(model: FeedForwardApproximator, inputs: torch.Tensor) -> torch.Tensor:
    """The model's rates for raw inputs, on the inputs' (and model's) device, in float64 so that
    metrics are computed in float64 wherever the model runs."""
    return model(inputs.float()).double()


def evaluate(model: FeedForwardApproximator, task: Task, split: Split, prefix: str) -> dict[str, torch.Tensor]:
    """Regression and task metrics of the FF model on a split, as 0-dim tensors on the split's (and
    model's) device; the task metrics of the recurrent network itself are reported beside them as
    `<prefix>/recurrent_<name>`."""
    predicted = predict(model, split.inputs)
    metrics = regression_metrics(predicted, split.rates)
    metrics |= population_errors(task.populations(), predicted, split.rates)
    metrics |= task.metrics(split.inputs, split.labels, predicted, split.rates)
    recurrent = task.metrics(split.inputs, split.labels, split.rates, split.rates)
    metrics |= {f"recurrent_{k}": v for k, v in recurrent.items()}
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def measure_speed(model: FeedForwardApproximator, task: Task, inputs: torch.Tensor, options: SolverOptions,
                  dtype: torch.dtype, repeats: int = 5, ode_seconds: float | None = None) -> dict[str, float]:
    """Seconds per sample of the recurrent solve and of the FF pass, same inputs, both on the
    inputs' (and model's) device.

    `ode_seconds`: the time this process already spent solving exactly these inputs (then
    they are not solved again)."""
    device = inputs.device
    ode = ode_seconds if ode_seconds is not None else solve(task.network, inputs, options, device=device,
                                                            dtype=dtype).seconds
    batch = inputs.float()
    ff_times = []
    with torch.no_grad():
        model(batch)  # warm-up
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            model(batch)
            _synchronize(device)
            ff_times.append(time.perf_counter() - start)
    ff = statistics.median(ff_times)
    n = len(inputs)
    return {"speed/ode_seconds_per_sample": ode / n, "speed/ff_seconds_per_sample": ff / n, "speed/speedup": ode / ff}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
