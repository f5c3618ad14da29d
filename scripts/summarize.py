"""Summarise a sweep: one row per job, a markdown table and a rel_error-vs-width plot.

    python scripts/summarize.py sweep=outputs/multiruns/wta/<time> [out=<folder>]

Finds every job folder under the given folder (one holding .hydra/config.yaml), reads its
metrics.json and config, and writes into that folder:
  summary.csv              every metric, plus the config keys that vary across jobs
                           (and always task.name, model.hidden, seed)
  summary.md               the same rows as a markdown table (headline metrics only)
  rel_error_vs_hidden.png  test/rel_error against model.hidden (log x): mean over seeds,
                           min-max spread shaded, one line per task
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

from omegaconf import OmegaConf

from rnn_ff.cli import parse_overrides, run

ALWAYS = ("task.name", "model.hidden", "seed")
# Keys that differ between jobs without saying anything about the run.
IGNORED_PREFIXES = ("paths.", "data.cache_dir", "resume", "device", "trainer.progress", "solver.progress")
HEADLINE = ("val/rel_error", "test/rel_error", "test/r2", "speed/speedup", "train/epochs")
PLOT_METRIC = "test/rel_error"
OUTPUTS = ("summary.csv", "summary.md", "rel_error_vs_hidden.png")


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


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
        configs[job] = flatten(OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "config.yaml"), resolve=False))
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


def plot_rel_error(path: Path, rows: list[dict], metric: str = PLOT_METRIC) -> int:
    """One line per task: mean of `metric` over jobs with the same width, min-max shaded; returns lines drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        value, hidden = row.get(metric), row.get("model.hidden")
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(hidden, int):
            by_task[str(row.get("task.name"))][hidden].append(float(value))
    figure, axis = plt.subplots(figsize=(6, 4))
    for task, widths in sorted(by_task.items()):
        hidden = sorted(widths)
        mean = [sum(widths[h]) / len(widths[h]) for h in hidden]
        low, high = [min(widths[h]) for h in hidden], [max(widths[h]) for h in hidden]
        n_seeds = max(len(widths[h]) for h in hidden)
        axis.plot(hidden, mean, marker="o", label=f"{task} (up to {n_seeds} seeds per width)")
        axis.fill_between(hidden, low, high, alpha=0.25)
    axis.set_xscale("log", base=2)
    widths = sorted({h for task in by_task.values() for h in task})
    if widths:
        axis.set_xticks(widths, [str(h) for h in widths])
        axis.minorticks_off()
    axis.set_xlabel("model.hidden (units)")
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} vs hidden width (shaded: min-max over seeds)")
    axis.grid(True, which="both", alpha=0.3)
    if by_task:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(by_task)


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
    table = markdown_table(rows, ["job", *config_columns, *[m for m in HEADLINE if m in metric_columns]])
    (out_dir / "summary.md").write_text(f"# Sweep summary: {sweep_dir}\n\n{len(rows)} jobs"
                                        f"{f', {len(skipped)} skipped (no metrics.json)' if skipped else ''}."
                                        f" All metrics: summary.csv.\n\n{table}")
    lines = plot_rel_error(out_dir / "rel_error_vs_hidden.png", rows)
    print(table, end="")
    print(f"{len(rows)} jobs summarised, {len(skipped)} skipped; wrote "
          f"{', '.join(str(out_dir / name) for name in OUTPUTS)} ({lines} line(s) in the plot)")
    return {"rows": len(rows), "skipped": len(skipped), "columns": ["job", *config_columns, *metric_columns]}


@dataclass
class SummarizeConfig:
    sweep: str = "???"  # a multirun folder, e.g. outputs/multiruns/wta/<time>
    out: Optional[str] = None  # where to write the summary; default: the sweep folder


def main(argv: list[str]) -> dict:
    args = parse_overrides(SummarizeConfig, argv)
    return summarize(Path(args.sweep), Path(args.out) if args.out else None)


if __name__ == "__main__":
    run(main)
