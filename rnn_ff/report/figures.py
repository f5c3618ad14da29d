"""The report's figures, one function per figure, each drawn from a study table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rnn_ff.report.analysis import STUDY_GOAL, error_metrics, layers, pareto_front, power_law  # noqa: E402
from rnn_ff.tasks import Task  # noqa: E402


def save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _panels(n: int, width: float = 3.6, height: float = 3.0):
    figure, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return figure, axes[0]


def plot_pareto(tables: dict[Task, pd.DataFrame], bounds: dict[str, float], path: Path) -> Path:
    """Test error against FLOPs per input, per task: every depth x width, and the front."""
    figure, axes = _panels(len(tables))
    for ax, (task, runs) in zip(axes, tables.items()):
        for count, group in runs.groupby("hidden_layers"):
            ax.scatter(group["model/flops_per_input"], group["test/rel_error"], s=18,
                       label=layers(count))
        front = pareto_front(runs)
        ax.step(front["model/flops_per_input"], front["test/rel_error"], where="post", color="k", lw=0.8,
                label="Pareto front")
        ax.axhline(bounds[task.name], color="tab:red", ls="--", lw=0.8, label="default-run target")
        ax.axhline(STUDY_GOAL, color="tab:green", ls=":", lw=0.8, label=f"study goal {STUDY_GOAL:g}")
        ax.set(xscale="log", yscale="log", title=task.name, xlabel="FLOPs per input")
    axes[0].set_ylabel("test rel_error")
    axes[0].legend(fontsize=7)
    return save(figure, path)


def plot_data(tables: dict[Task, pd.DataFrame], path: Path) -> Path:
    """Test error against training inputs, with the fitted power law."""
    figure, axes = _panels(len(tables))
    for ax, (task, runs) in zip(axes, tables.items()):
        runs = runs.sort_values("n_train")
        for metric in error_metrics(task):
            ax.plot(runs["n_train"], runs[metric], "o", ms=4, label=metric.removeprefix("test/"))
            c, b, _ = power_law(runs["n_train"].to_numpy(float), runs[metric].to_numpy(float))
            n = np.geomspace(runs["n_train"].min(), runs["n_train"].max(), 50)
            ax.plot(n, c * n**b, "-", lw=0.8, color=ax.lines[-1].get_color(), label=f"fit n^{b:.2f}")
        ax.axhline(STUDY_GOAL, color="tab:green", ls=":", lw=0.8)
        ax.set(xscale="log", yscale="log", title=task.name, xlabel="training inputs")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("test error")
    return save(figure, path)


def plot_hardness(task: Task, runs: pd.DataFrame, path: Path) -> Path:
    """Each error over the task's hardness grid: a heat map over two axes, a line over one."""
    metrics = error_metrics(task)
    axes_names = list(task.hardness)
    figure, axes = _panels(len(metrics), width=4.8, height=3.4)
    for ax, metric in zip(axes, metrics):
        if len(axes_names) == 2:
            rows, columns = ([v for v in task.hardness[name] if v in set(runs[name])] for name in axes_names[::-1])
            grid = runs.pivot_table(index=axes_names[1], columns=axes_names[0], values=metric).reindex(
                index=rows, columns=columns)
            image = ax.imshow(np.log10(grid.to_numpy(float)), cmap="viridis", aspect="auto", origin="lower")
            for (i, j), value in np.ndenumerate(grid.to_numpy(float)):
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color="w")
            ax.set_xticks(range(grid.shape[1]), [str(v) for v in columns])
            ax.set_yticks(range(grid.shape[0]), [str(v) for v in rows])
            ax.set(xlabel=axes_names[0], ylabel=axes_names[1])
            figure.colorbar(image, ax=ax, label=f"log10 {metric.removeprefix('test/')}")
            boundary = task.hardness_boundary.get(axes_names[1])
            if boundary is not None:  # between the grid rows either side of it
                rows = [float(v) for v in grid.index]
                ax.axhline(np.interp(boundary[0], rows, range(len(rows))), color="w", ls="--", lw=1)
        else:
            axis = axes_names[0]
            ordered = runs.sort_values(axis)
            ax.plot(ordered[axis].astype(str), ordered[metric], "o-")
            ax.set(yscale="log", xlabel=axis, ylabel=metric.removeprefix("test/"))
        ax.set_title(f"{task.name}: {metric.removeprefix('test/')}", fontsize=9)
    figure.tight_layout()
    return save(figure, path)


def plot_cost(task: Task, costs: pd.DataFrame, path: Path) -> Path:
    """Seconds and evaluations per input of the recurrent solve (median and 95th percentile) and the
    FF's seconds and FLOPs, over the hardness grid's first axis (one line per value of a second)."""
    axis, *rest = list(task.hardness)
    groups = costs.groupby(rest[0]) if rest else [(None, costs)]
    figure, (time_ax, work_ax) = _panels(2, width=4.2, height=3.2)
    for value, group in groups:
        group = group.sort_values(axis)
        label = "" if value is None else f" ({rest[0]} {value})"
        x = group[axis].astype(str)
        line, = time_ax.plot(x, 1e3 * group["ode_seconds_median"], "o-", label=f"recurrent median{label}")
        time_ax.plot(x, 1e3 * group["ode_seconds_p95"], "^:", color=line.get_color())
        work_ax.plot(x, group["ode_evaluations_median"], "o-", color=line.get_color())
        work_ax.plot(x, group["ode_evaluations_p95"], "^:", color=line.get_color())
    time_ax.plot(x, 1e3 * group["ff_seconds"], "s--", color="k", label="FF (every input)")
    time_ax.set(yscale="log", xlabel=axis, ylabel="ms per input (o median, ^ 95th pct.)", title=f"{task.name}: time")
    work_ax.set(yscale="log", xlabel=axis, ylabel="recurrent RHS evaluations", title=f"{task.name}: work")
    flops_ax = work_ax.twinx()
    flops_ax.plot(x, group["ff_flops"], "s--", color="k")
    flops_ax.set_ylabel("FF FLOPs per input (black)")
    time_ax.legend(fontsize=6)
    return save(figure, path)
