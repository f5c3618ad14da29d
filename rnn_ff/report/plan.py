"""What the report runs: every training run of the study, as Hydra overrides of train.py.

Five groups, each a list of `Run`s:
- defaults: `python train.py task=<task> seed=<s>` as a user runs it, seeds 0-2;
- pareto: depth (1-3 hidden layers) x width, at a common training budget (the study's data size
  and epochs), so that error against FLOPs per input compares networks and nothing else;
- data: n_train from 1k to 64k at the default width, the epochs chosen so that each run sees about
  the same number of samples (more data is not also more optimiser steps, up to the epoch cap);
- hardness: each task's own parameter grid (Task.hardness) at a fixed FF cost (the default
  network's FLOPs per input, its depth and a width that matches the grid point's input and output
  sizes);
- deeper: the data group's largest run again with one more hidden layer of the default width
  (the same data and epochs): whether depth, given the data, buys what width does not.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from rnn_ff.config import load_config
from rnn_ff.model import FeedForwardApproximator
from rnn_ff.tasks import Task, build_task

STUDY_TASKS = ("wta", "transformation", "denoising", "ssn", "wilson_cowan")
QUIET = ("trainer.progress=false", "solver.progress=false")


@dataclass(frozen=True)
class Settings:
    """The size of the study: `full` regenerates docs/results.md, `quick` checks the pipeline."""

    seeds: tuple[int, ...]
    pareto_widths: dict[int, tuple[int, ...]]  # hidden layers -> widths
    data_sizes: tuple[int, ...]
    samples_per_run: int  # data group: epochs = samples_per_run / n_train, within [min_epochs, max_epochs]
    min_epochs: int
    study_n_train: int  # pareto and hardness runs: at most this many training inputs ...
    study_epochs: int  # ... for this many epochs
    timed_inputs: int  # inputs solved one at a time per grid point for the cost figures
    hardness_points: int | None = None  # None: every value of Task.hardness; else its first (cheapest) few
    overrides: tuple[str, ...] = ()  # applied to every run (quick mode shrinks the defaults' data)


FULL = Settings(seeds=(0, 1, 2), pareto_widths={1: (32, 128, 512, 2048), 2: (32, 128, 512), 3: (32, 128)},
                data_sizes=(1024, 2048, 4096, 8192, 16384, 32768, 65536), samples_per_run=3_276_800,
                min_epochs=40, study_n_train=8192, study_epochs=100, timed_inputs=32)
QUICK = Settings(seeds=(0,), pareto_widths={1: (16, 64), 2: (16,)}, data_sizes=(256, 1024),
                 samples_per_run=20_000, min_epochs=10, study_n_train=512, study_epochs=15, timed_inputs=4,
                 hardness_points=2, overrides=("data.n_train=512", "data.n_val=128", "data.n_test=128",
                                               "trainer.max_epochs=15", "trainer.patience=10"))


@dataclass(frozen=True)
class Run:
    group: str  # defaults | pareto | data | hardness
    task: str
    name: str  # unique within (group, task): the run's folder
    overrides: tuple[str, ...]
    axes: dict = field(default_factory=dict, hash=False)  # what this run varies, for the tables

    @property
    def folder(self) -> str:
        return f"{self.group}/{self.task}/{self.name}"


def default_task(name: str) -> Task:
    return build_task(load_config([f"task={name}"]).task)


def fixed_cost_width(task: Task, flops: int, layers: int) -> int:
    """The width whose FLOPs per input, with `layers` hidden layers, match `flops` for this task's
    sizes: the root of 2 (w (n_in + n_out) + (layers - 1) w^2) = flops."""
    linear, quadratic = task.network.n_inputs + task.network.n_units, layers - 1
    width = (flops / 2 / linear if quadratic == 0 else
             (math.sqrt(linear**2 + 2 * quadratic * flops) - linear) / (2 * quadratic))
    return max(4, round(width))


def default_flops(task: Task) -> int:
    return FeedForwardApproximator(task.network.n_inputs, task.network.n_units, task.hidden,
                                   hidden_layers=task.hidden_layers).flops()


def plan(settings: Settings, tasks: tuple[str, ...] = STUDY_TASKS, extra: tuple[str, ...] = ()) -> list[Run]:
    """Every run of the study; `extra`: overrides added to every run (e.g. data.cache_dir=...)."""
    runs = []
    for name in tasks:
        task = default_task(name)
        epochs_cap = task.max_epochs  # the task's default run's
        base = (f"task={name}", *QUIET, *settings.overrides, *extra)
        study = (f"data.n_train={min(settings.study_n_train, task.n_train)}",
                 f"trainer.max_epochs={settings.study_epochs}")
        for seed in settings.seeds:
            runs.append(Run("defaults", name, f"seed{seed}", (*base, f"seed={seed}"), {"seed": seed}))
        for layers, widths in settings.pareto_widths.items():
            for width in widths:
                runs.append(Run("pareto", name, f"depth{layers}_width{width}",
                                (*base, *study, f"model.hidden_layers={layers}", f"model.hidden={width}"),
                                {"hidden_layers": layers, "hidden": width}))
        for n_train in settings.data_sizes:
            epochs = min(epochs_cap, max(settings.min_epochs, round(settings.samples_per_run / n_train)))
            runs.append(Run("data", name, f"n_train{n_train}",
                            (*base, f"data.n_train={n_train}", f"trainer.max_epochs={epochs}"),
                            {"n_train": n_train, "epochs": epochs}))
        largest, deeper = runs[-1], task.hidden_layers + 1
        runs.append(Run("deeper", name, f"{largest.name}_depth{deeper}",
                        (*largest.overrides, f"model.hidden_layers={deeper}"), {**largest.axes, "hidden_layers": deeper}))
        runs += hardness_runs(name, task, settings, (*base, *study))
    return runs


def hardness_runs(name: str, task: Task, settings: Settings, base: tuple[str, ...]) -> list[Run]:
    """Task.hardness's grid, each point at the default network's FLOPs per input."""
    grid = {key: values[:settings.hardness_points] for key, values in task.hardness.items()}
    flops = default_flops(task)
    runs = []
    for point in itertools.product(*grid.values()):
        axes = dict(zip(grid, point))
        overrides = tuple(f"task.{key}={value}" for key, value in axes.items())
        point_task = build_task(load_config([f"task={name}", *overrides]).task)
        width = fixed_cost_width(point_task, flops, task.hidden_layers)
        label = "_".join(f"{key}{value}" for key, value in axes.items())
        runs.append(Run("hardness", name, label, (*base, *overrides, f"model.hidden={width}"),
                        {**axes, "hidden": width}))
    return runs
