"""Summarise a sweep: one row per job, a markdown table and a plot against what the sweep varied.

    python scripts/summarize.py sweep=outputs/multiruns/wta/<time> [out=<folder>]

Finds every job folder under the given folder (one holding .hydra/config.yaml), reads its
metrics.json and config (interpolations resolved: the task's own defaults, not `${...}`), and
writes into that folder:
  summary.csv             every metric, plus the config keys that vary across jobs
                          (and always task.name, model.hidden, seed)
  summary.md              the same rows as a markdown table: the headline metrics and each
                          population's test error (test/rel_error_<population>)
  rel_error_vs_<key>.png  test/rel_error against the key the sweep varied (model.hidden where it
                          varies, else the first other numeric key, else the seed): the mean over
                          seeds with the min-max spread shaded, one line per task and setting of
                          the other varied keys
and prints the markdown table (and, last, one JSON line). Jobs without metrics.json (failed or
still running) are skipped with a warning and counted.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from rnn_ff.cli import parse_overrides, run
from rnn_ff.config import register_configs

ALWAYS = ("task.name", "model.hidden", "seed")
# Keys that differ between jobs without saying anything about the run.
IGNORED_PREFIXES = ("paths.", "data.cache_dir", "resume", "device", "trainer.progress", "solver.progress")
HEADLINE = ("val/rel_error", "test/rel_error", "test/r2", "speed/speedup", "train/epochs")
PLOT_METRIC = "test/rel_error"


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


def resolved(config: DictConfig) -> dict:
    """Every leaf of a job's config, interpolations resolved where they can be outside the job
    (the task's defaults; a ${hydra:...} path cannot, and stays as written)."""
    register_configs()  # the rnn_ff.* resolvers
    values = {}
    for key, raw in flatten(OmegaConf.to_container(config, resolve=False)).items():
        try:
            value = OmegaConf.select(config, key, throw_on_missing=False)
        except Exception:  # an interpolation that needs the job (hydra:) or a task rnn_ff does not know
            value = raw
        values[key] = json.dumps(OmegaConf.to_container(value, resolve=True)) if OmegaConf.is_config(value) else value
    return values


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Job folders under sweep_dir (or sweep_dir itself for a single run), in a natural order."""
    jobs = [config.parent.parent for config in sweep_dir.glob("**/.hydra/config.yaml")]

    def natural(path: Path) -> tuple:
        return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                     for part in path.relative_to(sweep_dir).parts)

    return sorted(jobs, key=natural)


def collect(sweep_dir: Path) -> tuple[list[dict], list[str], list[str], list[Path]]:
    """(rows, config columns, metric columns, skipped job folders)."""
    configs, metrics, skipped = {}, {}, []
    for job in find_jobs(sweep_dir):
        metrics_file = job / "metrics.json"
        if not metrics_file.is_file():
            skipped.append(job)
            continue
        configs[job] = resolved(OmegaConf.load(job / ".hydra" / "config.yaml"))
        metrics[job] = json.loads(metrics_file.read_text())
    all_keys = sorted({key for config in configs.values() for key in config})
    varying = [key for key in all_keys
               if len({json.dumps(config.get(key), default=str) for config in configs.values()}) > 1
               and not key.startswith(IGNORED_PREFIXES) and key not in ALWAYS]
    config_columns = [*ALWAYS, *varying]
    metric_names = {name for values in metrics.values() for name in values}
    metric_columns = [name for name in HEADLINE if name in metric_names] + sorted(metric_names - set(HEADLINE))
    rows = []
    for job in configs:
        row = {"job": job.relative_to(sweep_dir).as_posix() or "."}
        row |= {key: configs[job].get(key) for key in config_columns}
        row |= {name: metrics[job].get(name) for name in metric_columns}
        rows.append(row)
    return rows, config_columns, metric_columns, skipped


def table_columns(config_columns: list[str], metric_columns: list[str]) -> list[str]:
    """summary.md's columns: the job, its config columns, the headline metrics with each
    population's test error after test/rel_error (the population that computes, not only the total)."""
    populations = [name for name in metric_columns if name.startswith("test/rel_error_")]
    headline = [name for name in HEADLINE if name in metric_columns]
    at = headline.index("test/rel_error") + 1 if "test/rel_error" in headline else len(headline)
    return ["job", *config_columns, *headline[:at], *populations, *headline[at:]]


def plot_axis(rows: list[dict], config_columns: list[str]) -> str:
    """The key to plot against: model.hidden where it varies, else the first other numeric key
    that varies, else the seed."""
    def varies_numerically(key: str) -> bool:
        values = {row.get(key) for row in rows}
        return len(values) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    candidates = ["model.hidden", *[key for key in config_columns if key not in ALWAYS]]
    return next((key for key in candidates if varies_numerically(key)), "seed")


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in columns})


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_metric(path: Path, rows: list[dict], x_key: str, config_columns: list[str],
                metric: str = PLOT_METRIC) -> int:
    """`metric` against `x_key`: one line per task and setting of the other varied keys (the seed
    aside), the mean over the jobs at each x with the min-max spread shaded; returns lines drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [key for key in config_columns
              if key not in (x_key, "seed", "task.name") and len({str(row.get(key)) for row in rows}) > 1]
    groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        value, x = row.get(metric), row.get(x_key)
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(x, (int, float)):
            label = ", ".join([str(row.get("task.name"))] + [f"{key}={row.get(key)}" for key in others])
            groups[label][x].append(float(value))
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for label, by_x in sorted(groups.items()):
        xs = sorted(by_x)
        mean = [sum(by_x[x]) / len(by_x[x]) for x in xs]
        n_jobs = max(len(by_x[x]) for x in xs)
        if x_key == "seed":  # seeds are not an axis: each job a point, the mean a level
            axis.plot(xs, mean, "o", label=label)
            axis.axhline(sum(mean) / len(mean), color=axis.lines[-1].get_color(), lw=0.8, ls="--")
            continue
        axis.plot(xs, mean, marker="o", label=f"{label} ({n_jobs} job(s) per point)" if n_jobs > 1 else label)
        axis.fill_between(xs, [min(by_x[x]) for x in xs], [max(by_x[x]) for x in xs], alpha=0.25)
    xs = sorted({x for by_x in groups.values() for x in by_x})
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 8 and x_key != "seed":
        axis.set_xscale("log", base=2 if all(float(x).is_integer() for x in xs) else 10)
    if xs and all(float(x).is_integer() for x in xs) and len(xs) <= 12:
        axis.set_xticks(xs, [f"{x:g}" for x in xs])
        axis.minorticks_off()
    axis.set_xlabel(x_key)
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} vs {x_key}" + (" (dashed: mean)" if x_key == "seed" else " (shaded: min-max)"),
                   fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    if groups:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(groups)


def summarize(sweep_dir: Path, out_dir: Path | None = None) -> dict:
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    if not sweep_dir.is_dir():
        raise SystemExit(f"error: {sweep_dir} is not a folder")
    rows, config_columns, metric_columns, skipped = collect(sweep_dir)
    for job in skipped:
        print(f"warning: skipping {job}: no metrics.json (failed or unfinished job)", file=sys.stderr)
    if not rows:
        raise SystemExit(f"error: no job with metrics.json under {sweep_dir} ({len(skipped)} skipped)")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "summary.csv", rows, ["job", *config_columns, *metric_columns])
    table = markdown_table(rows, table_columns(config_columns, metric_columns))
    (out_dir / "summary.md").write_text(f"# Sweep summary: {sweep_dir}\n\n{len(rows)} jobs"
                                        f"{f', {len(skipped)} skipped (no metrics.json)' if skipped else ''}."
                                        f" All metrics: summary.csv.\n\n{table}")
    x_key = plot_axis(rows, config_columns)
    plot = out_dir / f"rel_error_vs_{x_key.rsplit('.', 1)[-1]}.png"
    lines = plot_metric(plot, rows, x_key, config_columns)
    print(table, end="")
    print(f"{len(rows)} jobs summarised, {len(skipped)} skipped; wrote {out_dir / 'summary.csv'}, "
          f"{out_dir / 'summary.md'}, {plot} ({PLOT_METRIC} against {x_key}, {lines} line(s))")
    return {"rows": len(rows), "skipped": len(skipped), "columns": ["job", *config_columns, *metric_columns],
            "plot": str(plot)}


@dataclass
class SummarizeConfig:
    sweep: str = "???"  # a multirun folder, e.g. outputs/multiruns/wta/<time>
    out: Optional[str] = None  # where to write the summary; default: the sweep folder


def main(argv: list[str]) -> dict:
    args = parse_overrides(SummarizeConfig, argv)
    return summarize(Path(args.sweep), Path(args.out) if args.out else None)


if __name__ == "__main__":
    run(main)
