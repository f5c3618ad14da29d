"""Conclusions computed from the study's tables: target verdicts, Pareto fronts, power laws, and
how error and cost change over each task's hardness grid. Every sentence quotes its numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rnn_ff.tasks import Task

STUDY_GOAL = 0.01  # test/rel_error the best configuration the study finds should reach


def informative_metric(task: Task) -> str | None:
    """The error of the population that carries the task's computation (its first headline metric)."""
    first = task.headline_metrics[0] if task.headline_metrics else ""
    return f"test/{first}" if first.startswith("rel_error") else None


def error_metrics(task: Task) -> list[str]:
    return ["test/rel_error", *filter(None, [informative_metric(task)])]


def target_verdicts(defaults: pd.DataFrame, task: Task) -> pd.DataFrame:
    """Each quality target of the task against the mean over the default runs' seeds."""
    rows = []
    for target in task.quality_targets:
        values = [target.value(run) for run in defaults.to_dict("records")]
        mean = float(np.mean(values))
        rows.append({"task": task.name, "target": str(target), "mean over seeds": mean,
                     "seeds": ", ".join(f"{value:.4g}" for value in values), "met": target.met(mean)})
    return pd.DataFrame(rows)


def pareto_front(runs: pd.DataFrame, metric: str = "test/rel_error") -> pd.DataFrame:
    """The runs no cheaper run beats: sorted by FLOPs, each with a lower error than all before it."""
    ordered = runs.sort_values(["model/flops_per_input", metric])
    return ordered[ordered[metric] < ordered[metric].cummin().shift(fill_value=math.inf)]


def pareto_conclusion(runs: pd.DataFrame, default_flops: int, bound: float) -> str:
    front = pareto_front(runs)
    steps = "; ".join(f"{int(row.hidden_layers)}x{int(row.hidden)} ({_flops(row['model/flops_per_input'])}: "
                      f"{row['test/rel_error']:.4f})" for _, row in front.iterrows())
    text = [f"Pareto front (hidden layers x width, FLOPs per input: test/rel_error): {steps}."]
    for level in sorted({bound, STUDY_GOAL}, reverse=True):
        reaching = front[front["test/rel_error"] <= level]
        text.append(f"The cheapest network under {level:g} is {_describe(reaching.iloc[0])}." if len(reaching)
                    else f"No network of this grid reaches {level:g} at this training budget.")
    affordable = runs[runs["model/flops_per_input"] <= default_flops]
    if len(affordable):
        best = affordable.loc[affordable["test/rel_error"].idxmin()]
        text.append(f"Within the default network's budget ({_flops(default_flops)}) the best is {_describe(best)}.")
    depth_gain = runs.groupby("hidden_layers")["test/rel_error"].min()
    text.append("Best error by depth: " + ", ".join(f"{layers(d)} {e:.4f}" for d, e in depth_gain.items()) + ".")
    return " ".join(text)


def power_law(n: np.ndarray, error: np.ndarray) -> tuple[float, float, float]:
    """error ~ c n^b fitted in log-log; returns (c, b, R^2)."""
    x, y = np.log(n), np.log(error)
    b, log_c = np.polyfit(x, y, 1)
    residual = y - (log_c + b * x)
    r2 = 1 - residual.var() / y.var() if y.var() > 0 else 1.0
    return float(math.exp(log_c)), float(b), float(r2)


def data_conclusion(runs: pd.DataFrame, metric: str = "test/rel_error") -> str:
    runs = runs.sort_values("n_train")
    n, error = runs["n_train"].to_numpy(float), runs[metric].to_numpy(float)
    c, b, r2 = power_law(n, error)
    text = (f"{metric} goes from {error[0]:.4f} at {int(n[0]):,} to {error[-1]:.4f} at {int(n[-1]):,} training "
            f"inputs; fit {c:.3g} n^{b:.2f} (R^2 {r2:.2f}).")
    log_needed = math.log(STUDY_GOAL / c) / b if b < 0 else math.inf  # in logs: a flat fit overflows
    needed = math.exp(log_needed) if log_needed < math.log(100 * n.max()) else math.inf
    if error.min() <= STUDY_GOAL:
        return text + f" Measured under {STUDY_GOAL:g} from {int(n[error <= STUDY_GOAL][0]):,} inputs."
    if needed <= 100 * n.max():
        return text + f" The fit puts {STUDY_GOAL:g} at about {needed:,.0f} inputs ({needed / n.max():.2g}x the largest size)."
    return text + (f" At this rate {STUDY_GOAL:g} lies beyond 100x the largest size: more data alone is not the "
                   "way there.")


def depth_conclusion(data_runs: pd.DataFrame, deeper: pd.DataFrame) -> str:
    """The largest data run against the same run with one more hidden layer."""
    if deeper.empty:
        return ""
    deep = deeper.iloc[0]
    shallow = data_runs[data_runs.n_train == deep.n_train].iloc[0]
    return (f"With {layers(deep.hidden_layers)} of the same width on the same {int(deep.n_train):,} inputs and "
            f"{int(deep.epochs)} epochs: {deep['test/rel_error']:.4f} against {shallow['test/rel_error']:.4f} with "
            f"{layers(deep.hidden_layers - 1)} ({deep['model/flops_per_input'] / shallow['model/flops_per_input']:.1f}x "
            "the FLOPs).")


def trend(task: Task, runs: pd.DataFrame, column: str, digits: int = 4) -> list[str]:
    """Along each hardness axis: the column's mean over the other axes, value by value."""
    text = []
    for axis, values in task.hardness.items():
        means = runs.groupby(axis)[column].mean()
        present = [value for value in values if value in means.index]
        if len(present) > 1:
            text.append(f"Along {axis} " + " -> ".join(_value(v) for v in present) + ": " +
                        " -> ".join(f"{means[v]:.{digits}g}" for v in present) +
                        (" (mean over the other axis)." if len(task.hardness) > 1 else "."))
    return text


def hardness_conclusion(task: Task, runs: pd.DataFrame) -> str:
    """How each error changes along each hardness axis, and across an axis's boundary if it has one."""
    text = []
    for metric in error_metrics(task):
        worst, best = runs.loc[runs[metric].idxmax()], runs.loc[runs[metric].idxmin()]
        text.append(f"{metric} ranges from {best[metric]:.4g} ({_point(task, best)}) to {worst[metric]:.4g} "
                    f"({_point(task, worst)}).")
        text += trend(task, runs, metric)
        for axis, (edge, meaning) in task.hardness_boundary.items():
            text += _across(task, runs, metric, axis, edge, meaning)
    return " ".join(text)


def _across(task: Task, runs: pd.DataFrame, metric: str, axis: str, edge: float, meaning: str) -> list[str]:
    """Compare each error just below and beyond a boundary, the other axes held fixed."""
    others = [name for name in task.hardness if name != axis]
    below, beyond = runs[runs[axis] < edge], runs[runs[axis] > edge]
    if below.empty or beyond.empty:
        return []
    if others:
        worst_below = below.groupby(others)[metric].max()
        best_beyond = beyond.groupby(others)[metric].min()
        ratio = (best_beyond / worst_below).dropna()
    else:
        ratio = pd.Series([beyond[metric].min() / below[metric].max()])
    where = f" at every {', '.join(others)}" if others else ""
    if (ratio > 1).all():
        return [f"Beyond {axis} = {edge:g} ({meaning}) the best point is {ratio.min():.3g}-{ratio.max():.3g}x worse "
                f"than the worst point below{where}: a floor that this FF budget does not pass."]
    return [f"Beyond {axis} = {edge:g} ({meaning}) the best point is not worse than the worst below everywhere "
            f"(ratios {ratio.min():.2g}-{ratio.max():.2g}): the boundary does not set a floor at this budget."]


def cost_conclusion(task: Task, costs: pd.DataFrame) -> str:
    """How the recurrent solve's and the FF's costs per input change over the grid."""
    slowest = costs.loc[costs["ode_seconds_median"].idxmax()]
    spread = (costs["ode_seconds_p95"] / costs["ode_seconds_median"]).max()
    text = [f"One input at a time, the recurrent solve takes {1e3 * costs.ode_seconds_median.min():.3g}-"
            f"{1e3 * costs.ode_seconds_median.max():.3g} ms (median over inputs) and "
            f"{costs.ode_evaluations_median.min():.0f}-{costs.ode_evaluations_median.max():.0f} evaluations of the "
            f"network over the grid; the slowest point is {_point(task, slowest)} ({1e3 * slowest.ode_seconds_median:.3g}"
            f" ms median, {1e3 * slowest.ode_seconds_p95:.3g} ms at the 95th percentile), and the 95th percentile is up "
            f"to {spread:.2g}x the median. The FF takes {1e6 * costs.ff_seconds.min():.3g}-"
            f"{1e6 * costs.ff_seconds.max():.3g} µs for any input ({_flops(costs.ff_flops.min())}-"
            f"{_flops(costs.ff_flops.max())}), {costs.ode_seconds_median.min() / costs.ff_seconds.max():,.0f}x faster "
            "or more.", "Median solve time (ms):"]
    text += trend(task, costs.assign(ms=1e3 * costs.ode_seconds_median), "ms", 3)
    text.append("Median evaluations:")
    text += trend(task, costs, "ode_evaluations_median", 3)
    unsettled = 1 - costs.settled.min()
    if unsettled > 0:
        worst = costs.loc[costs.settled.idxmin()]
        text.append(f"{unsettled:.0%} of the timed inputs did not settle at {_point(task, worst)}.")
    return " ".join(text)


def layers(count) -> str:
    return f"{int(count)} hidden layer{'s' if int(count) > 1 else ''}"


def _point(task: Task, row) -> str:
    return ", ".join(f"{axis} {_value(row[axis])}" for axis in task.hardness)


def _value(value) -> str:
    """A grid value as written in Task.hardness (pandas stores integer axes as floats beside NaN)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _describe(row) -> str:
    return (f"{layers(row.hidden_layers)} of {int(row.hidden)} "
            f"({_flops(row['model/flops_per_input'])} per input, test/rel_error {row['test/rel_error']:.4f})")


def _flops(value: float) -> str:
    return f"{value / 1e6:.2f} MFLOP" if value >= 1e6 else f"{value / 1e3:.1f} kFLOP"
