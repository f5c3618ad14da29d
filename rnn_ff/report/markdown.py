"""docs/results.md and the README's results section, from the study's tables (pandas' to_markdown)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pandas as pd
import torch

from rnn_ff.report import analysis
from rnn_ff.tasks import Task

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def table(frame: pd.DataFrame, digits: int = 4) -> str:
    return frame.to_markdown(index=False, floatfmt=f".{digits}g")


def summary(defaults: pd.DataFrame, verdicts: pd.DataFrame, tasks: list[Task]) -> pd.DataFrame:
    """One row per task: the default run (mean over seeds) and its targets."""
    rows = []
    for task in tasks:
        runs = defaults[defaults.task == task.name]
        informative = analysis.informative_metric(task)
        mine = verdicts[verdicts.task == task.name]
        rows.append({
            "task": task.name,
            "train inputs": f"{int(runs['data/train_size'].iloc[0]):,}",
            "run time (s)": f"{runs['seconds'].median():.0f}",
            "data (s)": f"{runs['data/generation_seconds'].iloc[0]:.0f}",
            "test/rel_error": f"{runs['test/rel_error'].mean():.4f}",
            "informative population": (f"{informative.removeprefix('test/rel_error_')} "
                                       f"{runs[informative].mean():.4f}" if informative else "—"),
            "targets": "; ".join(f"{row.target}: {row['mean over seeds']:.4g} {'met' if row.met else 'MISSED'}"
                                 for _, row in mine.iterrows()),
            "FF speedup": f"{runs['speed/speedup'].median():,.0f}x",
        })
    return pd.DataFrame(rows)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def results_document(sections: dict[str, str], header: str) -> str:
    """The sections in order, each heading, figure and table set off by a blank line."""
    lines = []
    for line in "\n\n".join([header, *sections.values()]).splitlines():
        starts_block = line.startswith(("#", "![")) or (line.startswith("|") and not lines[-1].startswith("|"))
        if lines and lines[-1] and starts_block:
            lines.append("")
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, summary_table: str, note: str) -> None:
    """Replace the README's results section (between its markers) with the report's summary."""
    text = readme.read_text()
    start, end = text.index(README_START) + len(README_START), text.index(README_END)
    readme.write_text(text[:start] + "\n" + note + "\n\n" + summary_table + "\n" + text[end:])
