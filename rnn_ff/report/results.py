"""The study's results as pandas tables: one row per run (run.json + metrics.json), and the cost of
the recurrent solve and of the FF pass per input, measured alone (no training runs beside it)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from rnn_ff.checkpoint import approximator_from, load_checkpoint, task_from
from rnn_ff.config import DTYPES, solver_options
from rnn_ff.data import draw_inputs
from rnn_ff.solver import STATUSES, solve

COST_SEED = 12345  # fresh inputs for the timings, drawn apart from every dataset (seed 0)


def collect(runs_dir: Path) -> pd.DataFrame:
    """One row per finished run: group, task, name, what it varies (its axes) and every metric."""
    rows = []
    for run_file in sorted(runs_dir.glob("*/*/*/run.json")):
        run = json.loads(run_file.read_text())
        metrics = json.loads((run_file.parent / "metrics.json").read_text())
        rows.append({"group": run["group"], "task": run["task"], "name": run["name"], **run["axes"],
                     "seconds": run["seconds"], "folder": str(run_file.parent), **metrics})
    return pd.DataFrame(rows)


def measure_cost(run_folder: Path, n_inputs: int) -> dict:
    """The recurrent solve of `n_inputs` fresh inputs one at a time (evaluations and seconds per
    input: median and 95th percentile; how many settled) against the FF pass on the same inputs."""
    checkpoint = load_checkpoint(run_folder / "checkpoints" / "best.pt")
    task, model = task_from(checkpoint), approximator_from(checkpoint)
    solver = checkpoint["config"]["solver"]
    options, dtype = solver_options(solver), DTYPES[solver["dtype"]]
    inputs, _ = draw_inputs(task, {"test": n_inputs}, COST_SEED)
    seconds, evaluations, statuses = [], [], []
    for one in inputs.split(1):
        result = solve(task.network, one, options, dtype=dtype)
        seconds.append(result.seconds)
        evaluations.append(int(result.nfe[0]))
        statuses.append(STATUSES[int(result.status_codes[0])])
    with torch.no_grad():  # the FF on the same inputs, one at a time as well
        model(inputs[:1].float())  # warm-up
        ff = []
        for one in inputs.float().split(1):
            start = time.perf_counter()
            model(one)
            ff.append(time.perf_counter() - start)
    return {"ode_seconds_median": statistics.median(seconds), "ode_seconds_p95": _quantile(seconds, 0.95),
            "ode_evaluations_median": statistics.median(evaluations),
            "ode_evaluations_p95": _quantile(evaluations, 0.95),
            "settled": statuses.count("converged") / n_inputs, "ff_seconds": statistics.median(ff),
            "ff_flops": model.flops(), "n_units": task.network.n_units}


def measure_costs(table: pd.DataFrame, n_inputs: int) -> pd.DataFrame:
    """measure_cost for each hardness run and each task's first default run, joined to their rows."""
    chosen = pd.concat([table[table.group == "hardness"], table[table.group == "defaults"].groupby("task").head(1)])
    costs = [{"folder": folder, **measure_cost(Path(folder), n_inputs)} for folder in chosen.folder]
    return chosen.merge(pd.DataFrame(costs), on="folder")


def _quantile(values: list[float], q: float) -> float:
    return float(torch.tensor(values, dtype=torch.float64).quantile(q))
