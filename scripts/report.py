"""Results report: run the width sweeps of the three tasks and write docs/results.md with figures.

    python scripts/report.py                 # full: the experiment configs' widths (+ the default 512) x seeds 0-2
    python scripts/report.py --quick         # a few minutes: widths 64,512 x seeds 0,1, 60 epochs, 1024 train inputs
    python scripts/report.py --reuse outputs/multiruns/report/full-<time>/wta ...   # report on finished sweeps
                                                                  # (and <task>_tried beside them), run nothing
    python scripts/report.py --quick --widths 8,16 --seeds 0 --override data.n_train=96 trainer.max_epochs=3

For each task it runs `train.py -m experiment=<task>_width_sweep` in a subprocess (sweep dirs under
--runs-dir) and, in full mode (or with --tried), "what was tried" sweeps at the default width: 1x and 4x
the training inputs x 1x and 3x the epochs, and one more hidden layer, to tell a data, schedule or
depth limit from a width one. Sweeps run --jobs at a time (one thread each when several run on a small
machine). It summarises each sweep with scripts/summarize.py, then loads the best checkpoint and its
cached dataset to draw: example responses, error and task metric vs hidden width, the recurrent
solve's cost per input against the FF's constant cost, and one task-specific figure (WTA: error vs
input margin and the tie discontinuity; transformation: decoded C vs a + b; denoising: SNR vs noise).
A summary table with the quality targets (met or not, and by how much) heads docs/results.md.

Command line: --flags (argparse), not the key=value overrides of train.py and of the tools that act
on a run (evaluate, export, summarize: rnn_ff/cli.py): a developer's tool with modes, it composes no
config of its own; what it hands to train.py are Hydra overrides (--override).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from rnn_ff.checkpoint import approximator_from, load_checkpoint, task_from  # noqa: E402
from rnn_ff.config import DTYPES, PROJECT_ROOT, ModelConfig, SolverConfig, TrainConfig, solver_options  # noqa: E402
from rnn_ff.data import split_slices  # noqa: E402
from rnn_ff.evaluation import numbers, predict  # noqa: E402
from rnn_ff.solver import CONVERGED, solve  # noqa: E402
from rnn_ff.storage import safe_load  # noqa: E402
from rnn_ff.tasks.transformation import circular_distance, decode_ring  # noqa: E402
from rnn_ff.tasks.wta import WTAConfig, wta_network  # noqa: E402

TASK_NAMES = ("wta", "transformation", "denoising")
QUICK = {"widths": [64, 512], "seeds": [0, 1],
         "overrides": ["trainer.max_epochs=60", "trainer.patience=20", "data.n_train=1024", "data.n_val=256",
                       "data.n_test=256"]}
ALWAYS_OVERRIDES = ["trainer.progress=false", "solver.progress=false"]
# What was tried beyond width, at the default width with the first seed; each entry is one Hydra multirun.
# Training-set sizes and epoch limits are multiples of the mode's own. Where error falls with 4x the data but
# not with 3x the epochs, data is the limit; where only another hidden layer helps, one hidden layer is.
TRIED = {"grid": {"data.n_train": (1, 4), "trainer.max_epochs": (1, 3)},
         "depth": {"model.hidden_layers": (2,)}}
SCALED = ("data.n_train", "trainer.max_epochs")
TRIED_SUFFIX = "_tried"  # <runs>/<task>_tried/<entry> beside <runs>/<task>; --reuse picks it up from there
REL_ERROR_DEFAULT_TARGET, REL_ERROR_BEST_TARGET = 0.10, 0.03
# The task metric reported per task: (metric, recurrent reference or None, label).
TASK_METRIC = {
    "wta": ("test/winner_agreement_clear", "test/recurrent_winner_agreement_clear",
            "winner agreement (top-two margin >= 5% of range)"),
    "transformation": ("test/decode_error", "test/recurrent_decode_error", "C decode error (units)"),
    "denoising": ("test/snr_gain_db", "test/recurrent_snr_gain_db", "SNR gain (dB)"),
}
N_TIMED = {"quick": 32, "full": 128}  # test inputs solved one at a time for the wall-time distribution

# Hand-written analysis, per task, written after reading the numbers of the full run of 2026-11-27 (CPU
# training is reproducible bit for bit, so a rerun on a CPU reproduces the errors quoted; timings vary).
# The generated text around it carries the numbers of the run that produced the report.
ANALYSIS = {
    "wta": (
        "Error falls with width up to 256 hidden units (0.076 at 16, 0.050 at 64, 0.034 at 256) and then rises "
        "slightly (0.038 at 512, 0.041 at 4,096). Past 256 units the MLP memorises its 4,096 training inputs: at "
        "4,096 units it fits them to a relative error of about 0.002 while new inputs stay at 0.040, and early "
        "stopping ends those runs after about 230 epochs. The limit is data, not width or training time: with "
        "4x the training inputs the same width-512 network reaches 0.019 (target met), 3x the epochs gives "
        "0.037 and one more hidden layer 0.035. The defaults keep 4,096 training inputs because that size is "
        "shared by all tasks and 4x multiplies every run's cost (the transformation gains nothing from it); "
        "`data.n_train=16384` makes a WTA run about 40 s on this CPU and brings it under 0.03. The relative "
        "error hardly depends on the input margin (mean 0.025-0.033 in every bin up to a 20% margin): it is "
        "spread over the piecewise-linear regions where units cross threshold, not concentrated at ties. "
        "Winner agreement does depend on it (0.63 below a 0.5% margin, 1.000 from 5% up), because near a tie "
        "the two top rates differ by only 2x the margin and a small rate error flips the argmax while the "
        "response stays almost right. Self-excitation > 1 would make the map jump at ties (wta_ties.png) and "
        "put a floor under the error that neither width nor data removes; the defaults stay at 0.5 for that."
    ),
    "transformation": (
        "The computation is approximated as well as the network itself performs it: at every width from 64 up "
        "the FF output's decoded C position is within 0.045 units of a + b, against 0.052 for the recurrent "
        "fixed point (target 0.5). The relative-error targets are where it falls short: 0.096 at the default "
        "width (one seed of three at 0.108, above 0.10) and no width below 0.096. Almost all of that error "
        "(98% of the squared error) sits in the 144 hidden conjunction units H (relative error about 0.36 "
        "there, against 0.009 for rings A and B and 0.04 for C). The MLP underfits rather than memorises: its "
        "error on the training inputs equals its test error (about 0.11 at widths 1,024 and 4,096), wider is "
        "slightly worse, and at width 512 neither 4x the data (0.078) nor 3x the epochs (0.080) moves it; a "
        "separate check with 4x lower and 2.5x higher learning rates (5e-4: 0.080, 5e-3: 0.084) did not either. "
        "One more hidden layer of the same width does: 0.080 -> 0.030 with the same data and schedule. Each "
        "H(i, j) is a threshold of a sum of thresholded, inhibition-sharpened ring rates (it fires only where "
        "the A and B bumps coincide): a composition of rectifications, which a second layer builds directly and "
        "one hidden layer has to piece together from single half-space ridges of the 24-D input. So with the "
        "paper's two-layer network the 0.03 target is out of reach for this task at any width we can train "
        "on a CPU, while `model.hidden_layers=2` brings it to the target's edge (0.0302 against 0.03, one seed, "
        "at 3.5x the FLOPs of width 512). A loss weighted towards the rings was not tried for the target: the "
        "loss is already the squared error that rel_error measures, so reweighting would trade H error for ring "
        "error and raise rel_error."
    ),
    "denoising": (
        "All targets are met at the default width: test/rel_error 0.024 (all three seeds 0.023-0.024) and the "
        "FF's SNR gain 15.33 dB against the recurrent network's 15.06 dB. The best checkpoint (width 256) tracks "
        "the recurrent output within 0.12 dB at every noise level except the highest (+0.69 dB for noise std "
        "0.43-0.50, where it removes some noise the recurrent network keeps). From width 512 up the MLP "
        "memorises (training error 0.006-0.007 against test 0.024-0.031). At widths 64, 256 and 1,024 one seed "
        "in three ends at about twice the error (0.045-0.050, SNR about 2 dB low) with training error as high as test error: "
        "an optimisation outlier, not a capacity limit, since the other seeds of the same widths reach "
        "0.019-0.027. Narrow networks denoise *better* than the network they imitate (width 16: 20.7 dB against "
        "15.1): the recurrent fixed point passes the within-pattern part of the input noise at gain 1 (the "
        "within-pattern weights have rank one), and a small MLP reproduces the recalled pattern's amplitude but "
        "not that noise: a better denoiser, a worse approximation (rel_error 0.058). More data is what lowers "
        "the error further (4x the training inputs: 0.013); 3x the epochs (0.024) and one more hidden layer "
        "(0.037, early-stopped after 96 epochs) do not. Pattern identification is perfect for both networks."
    ),
}


# ---------------------------------------------------------------- running the sweeps

def experiment_grid(task: str) -> tuple[list[int], list[int]]:
    """(widths, seeds) of configs/experiment/<task>_width_sweep.yaml."""
    config = yaml.safe_load((PROJECT_ROOT / "configs" / "experiment" / f"{task}_width_sweep.yaml").read_text())
    params = config["hydra"]["sweeper"]["params"]
    return ([int(v) for v in str(params["model.hidden"]).split(",")], [int(v) for v in str(params["seed"]).split(",")])


def default_width() -> int:
    return ModelConfig().hidden


def width_sweep_command(task: str, widths: list[int], seeds: list[int], overrides: list[str],
                        sweep_dir: Path) -> list[str]:
    return [sys.executable, "train.py", "-m", f"experiment={task}_width_sweep",
            f"model.hidden={','.join(map(str, widths))}", f"seed={','.join(map(str, seeds))}",
            *ALWAYS_OVERRIDES, *overrides, f"hydra.sweep.dir={sweep_dir}"]


def configured_value(key: str, overrides: list[str]) -> int:
    """A numeric setting as the runs will see it: the last command-line override, else its schema default."""
    for override in reversed(overrides):
        name, _, value = override.partition("=")
        if name == key:
            return int(value)
    group, name = key.split(".")
    return int(getattr(getattr(TrainConfig(), group), name))


def tried_sweep_command(task: str, seed: int, overrides: list[str], values: dict[str, tuple],
                        sweep_dir: Path) -> list[str]:
    """One TRIED entry as a multirun; SCALED keys are multiples of the mode's (or config's) value."""
    grid = [f"{key}={','.join(str(v * configured_value(key, overrides) if key in SCALED else v) for v in factors)}"
            for key, factors in values.items()]
    kept = [o for o in overrides if o.partition("=")[0] not in values]
    return [sys.executable, "train.py", "-m", f"task={task}", f"model.hidden={default_width()}", f"seed={seed}",
            *grid, *ALWAYS_OVERRIDES, *kept, f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(command: list[str], threads: int | None) -> float:
    """Run one Hydra multirun in a subprocess; returns its wall time in seconds."""
    label = "/".join(Path(command[-1].partition("=")[2]).parts[-2:])
    print(f"[report] {label}: {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads is not None and not env.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"error: the {label} sweep failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                         f"{result.stderr[-3000:]}")
    print(f"[report] {label}: done in {seconds / 60:.1f} min", flush=True)
    return seconds


def run_sweeps(commands: dict[Path, list[str]], jobs: int) -> dict[Path, float]:
    """Run the sweeps `jobs` at a time, in the given order; {sweep dir: seconds}.

    Several sweeps at once each get an equal share of the cores as their thread count (unless
    OMP_NUM_THREADS is set): small MLPs train faster on one thread each than on all of them
    contending. Sweeps of one task share its dataset through the cache lock.
    """
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {path: pool.submit(run_sweep, command, threads) for path, command in commands.items()}
        return {path: future.result() for path, future in futures.items()}


def load_summarize():
    spec = importlib.util.spec_from_file_location("summarize", PROJECT_ROOT / "scripts" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- collecting results

@dataclass
class TaskResults:
    task: str
    sweep_dir: Path
    rows: list[dict]  # one per job (summarize.collect), plus "run_dir"
    sweep_seconds: float | None = None
    tried: list[dict] = field(default_factory=list)  # the "what was tried" grid's jobs, if it was run
    by_width: dict[int, list[dict]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups = defaultdict(list)
        for row in self.rows:
            groups[int(row["model.hidden"])].append(row)
        self.by_width = dict(sorted(groups.items()))

    def stat(self, width: int, metric: str) -> tuple[float, float, float]:
        """(mean, min, max) of a metric over the seeds of one width; nan where missing."""
        values = [float(r[metric]) for r in self.by_width.get(width, []) if _finite(r.get(metric))]
        if not values:
            return (math.nan,) * 3
        return statistics.fmean(values), min(values), max(values)

    def best_width(self) -> int:
        return min(self.by_width, key=lambda w: _nan_last(self.stat(w, "test/rel_error")[0]))

    def best_run(self) -> dict:
        """The job with the lowest val/rel_error: its checkpoint is the one drawn from."""
        return min(self.rows, key=lambda r: _nan_last(r.get("val/rel_error")))

    def seeds(self) -> list[int]:
        return sorted({int(r["seed"]) for r in self.rows})


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _nan_last(value) -> float:
    return float(value) if _finite(value) else math.inf


def collect_jobs(summarize, sweep_dir: Path) -> list[dict]:
    """Finished jobs of a sweep, each with its folder and wall time (its config's to its metrics' write time)."""
    rows = summarize.collect(sweep_dir)[0]
    for row in rows:
        job = sweep_dir / row["job"]
        row["run_dir"] = job
        row["seconds"] = (job / "metrics.json").stat().st_mtime - (job / ".hydra" / "config.yaml").stat().st_mtime
    return rows


def collect_task(summarize, sweep_dir: Path, seconds: float | None) -> TaskResults:
    rows = collect_jobs(summarize, sweep_dir)
    if not rows:
        raise SystemExit(f"error: no finished job under {sweep_dir}")
    tasks = {row["task.name"] for row in rows}
    if len(tasks) != 1:
        raise SystemExit(f"error: {sweep_dir} mixes tasks {sorted(tasks)}; pass one sweep per task")
    if seconds is None:  # a reused sweep: from its files, first job's config to last metrics.json
        jobs = [Path(row["run_dir"]) for row in rows]
        seconds = (max((job / "metrics.json").stat().st_mtime for job in jobs)
                   - min((job / ".hydra" / "config.yaml").stat().st_mtime for job in jobs))
    tried_dir = sweep_dir.with_name(sweep_dir.name + TRIED_SUFFIX)
    tried = collect_jobs(summarize, tried_dir) if tried_dir.is_dir() else []
    if {row["task.name"] for row in tried} - tasks:
        raise SystemExit(f"error: {tried_dir} is not a {tasks.pop()} sweep")
    return TaskResults(tasks.pop(), sweep_dir, rows, seconds, tried)


# ---------------------------------------------------------------- the best checkpoint on its test split

@dataclass
class TestData:
    task: object
    inputs: torch.Tensor
    labels: dict
    target: torch.Tensor
    predicted: torch.Tensor
    nfe: torch.Tensor
    settle_time: torch.Tensor
    counts: dict
    model: torch.nn.Module
    solver_options: object
    dtype: torch.dtype
    checkpoint: Path


def load_test_data(run_dir: Path) -> TestData:
    """The best checkpoint of a run, its task, and the converged test split of its cached dataset."""
    path = run_dir / "checkpoints" / "best.pt"
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    task = task_from(checkpoint)
    stored = safe_load(checkpoint["dataset"], "dataset cache file")
    test = split_slices(stored["key"]["sizes"])["test"]
    index = torch.arange(test.start, test.stop)
    index = index[stored["status_codes"][index] == CONVERGED]
    model = approximator_from(checkpoint)
    inputs = stored["inputs"][index]
    solver_cfg = OmegaConf.merge(OmegaConf.structured(SolverConfig), config["solver"])
    return TestData(task, inputs, {k: v[index] for k, v in stored["labels"].items()}, stored["rates"][index],
                    predict(model, inputs), stored["nfe"][index].double(),
                    stored["settle_time"][index].double(), stored["info"]["counts"], model,
                    solver_options(solver_cfg), DTYPES[solver_cfg.dtype], path)


def per_input_rel_error(data: TestData) -> torch.Tensor:
    return (data.predicted - data.target).norm(dim=1) / data.target.norm(dim=1).clamp_min(1e-12)


# ---------------------------------------------------------------- figures (one function each)

def _save(figure, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path.name


def plot_examples(data: TestData, task: str, path: Path, n: int = 3) -> str:
    """Input, recurrent fixed point and FF output for the first test inputs."""
    n = min(n, len(data.inputs))
    figure, axes = plt.subplots(n, 2, figsize=(11, 2.3 * n), squeeze=False)
    for row in range(n):
        axes[row, 0].bar(range(data.inputs.shape[1]), data.inputs[row].numpy(), color="0.6")
        axes[row, 0].set_ylabel(f"test input {row}")
        axes[row, 1].plot(data.target[row].numpy(), "o-", ms=3, lw=1, label="recurrent fixed point")
        axes[row, 1].plot(data.predicted[row].numpy(), "x--", ms=3, lw=1, label="feed-forward output")
        error = per_input_rel_error(data)[row].item()
        axes[row, 1].set_title(f"relative error {error:.3f}", fontsize=9)
    axes[0, 0].set_title("input u")
    axes[0, 1].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("input dimension")
    axes[-1, 1].set_xlabel("unit")
    figure.suptitle(f"{task}: example responses ({data.checkpoint.parent.parent.name}, best checkpoint)")
    return _save(figure, path)


def plot_width(results: TaskResults, path: Path) -> str:
    """test/rel_error and the task metric against hidden width: mean over seeds, min-max shaded."""
    metric, reference, label = TASK_METRIC[results.task]
    widths = list(results.by_width)
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for axis, name, ylabel in ((axes[0], "test/rel_error", "test/rel_error"), (axes[1], metric, label)):
        mean, low, high = zip(*(results.stat(w, name) for w in widths))
        axis.plot(widths, mean, "o-", label="feed-forward (mean over seeds)")
        axis.fill_between(widths, low, high, alpha=0.25, label="min-max over seeds")
        axis.set_xscale("log", base=2)
        axis.set_xticks(widths, [str(w) for w in widths])
        axis.minorticks_off()
        axis.set_xlabel("hidden width")
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
    axes[0].axhline(REL_ERROR_DEFAULT_TARGET, color="C3", ls=":", label="target (default width) 0.10")
    axes[0].axhline(REL_ERROR_BEST_TARGET, color="C3", ls="--", label="target (best width) 0.03")
    axes[0].set_yscale("log")
    rec = [results.stat(w, reference)[0] for w in widths]
    axes[1].plot(widths, rec, "k--", label="recurrent network")
    target = _metric_target_line(results, widths)
    if target is not None:
        axes[1].plot(widths, target, color="C3", ls=":", label="target")
    for axis in axes:
        axis.legend(fontsize=7)
    figure.suptitle(f"{results.task}: {len(results.seeds())} seed(s) per width")
    return _save(figure, path)


def _metric_target_line(results: TaskResults, widths: list[int]) -> list[float] | None:
    if results.task == "wta":
        return [0.99] * len(widths)
    if results.task == "transformation":
        return [0.5] * len(widths)
    return None  # denoising: relative to the recurrent gain, stated in the table


def plot_overview(all_results: dict[str, TaskResults], path: Path) -> str:
    """The key figure: test/rel_error vs width for every task, with the two targets and, where run, the
    single-seed results of 4x the training inputs and of one more hidden layer at the default width."""
    figure, axis = plt.subplots(figsize=(7, 4.3))
    widths = sorted({w for r in all_results.values() for w in r.by_width})
    # marker, x offset (so the markers at one width stay apart), and the job to draw from the tried grid
    variants = {"4x training inputs": ("*", 0.9, lambda grid, n, e: grid.get((1, 4 * n, e))),
                "2 hidden layers": ("D", 1.1, lambda grid, n, e: grid.get((2, n, e)))}
    for index, (task, results) in enumerate(all_results.items()):
        color = f"C{index}"
        ws = list(results.by_width)
        mean, low, high = zip(*(results.stat(w, "test/rel_error") for w in ws))
        axis.plot(ws, mean, "o-", color=color, label=task)
        axis.fill_between(ws, low, high, color=color, alpha=0.2)
        grid = tried_grid(results)
        if grid:
            n_train, epochs = min((n, e) for layers, n, e in grid if layers == 1)
            for marker, offset, find in variants.values():
                row = find(grid, n_train, epochs)
                if row is not None and _finite(row.get("test/rel_error")):
                    axis.plot(offset * int(row["model.hidden"]), row["test/rel_error"], marker, color=color, ms=9,
                              mec="black", mew=0.6)
    if any(r.tried for r in all_results.values()):
        for name, (marker, _, _) in variants.items():
            axis.plot([], [], marker, color="white", mec="black", ms=8, label=f"{name} (seed 0)")
    axis.axhline(REL_ERROR_DEFAULT_TARGET, color="C3", ls=":", lw=1, label="target 0.10 (default width)")
    axis.axhline(REL_ERROR_BEST_TARGET, color="C3", ls="--", lw=1, label="target 0.03 (best width)")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xticks(widths, [str(w) for w in widths])
    axis.minorticks_off()
    low_y, high_y = axis.get_ylim()
    low_y = min(low_y, 0.01)
    ticks = [t for t in (0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5) if low_y <= t <= high_y]
    axis.set_yticks(ticks, [f"{t:g}" for t in ticks])
    axis.set_ylim(low_y, high_y)
    axis.set_xlabel("hidden width of the two-layer MLP")
    axis.set_ylabel("test relative error")
    axis.set_title("FF approximation error vs width (mean, min-max over seeds)", fontsize=10)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


@dataclass
class Cost:
    nfe: torch.Tensor
    settle_time: torch.Tensor
    ode_seconds: torch.Tensor  # per input, solved one at a time
    ff_seconds: float  # per input, one at a time
    ode_flops_per_nfe: float
    ff_flops: float


def measure_cost(data: TestData, n_timed: int) -> Cost:
    """Per-input solve wall time (one input at a time) and the FF's single-input time, same CPU."""
    network = data.task.network
    n_units = network.n_units
    seconds = []
    for u in data.inputs[:n_timed].split(1):
        start = time.perf_counter()
        solve(network, u, data.solver_options, device="cpu", dtype=data.dtype)
        seconds.append(time.perf_counter() - start)
    ff = []
    with torch.no_grad():
        batch = data.inputs[:n_timed].float()
        data.model(batch[:1])
        for u in batch.split(1):
            start = time.perf_counter()
            data.model(u)
            ff.append(time.perf_counter() - start)
    return Cost(data.nfe, data.settle_time, torch.tensor(seconds, dtype=torch.float64), statistics.median(ff),
                ode_flops_per_nfe=2.0 * n_units * n_units + 4 * n_units, ff_flops=float(data.model.flops()))


def plot_cost(cost: Cost, task: str, speedup: float, path: Path) -> str:
    """Distribution of the recurrent solve's cost per input against the FF's constant cost."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    flops = cost.nfe * cost.ode_flops_per_nfe
    axes[0].hist(flops.numpy(), bins=_log_bins(flops, cost.ff_flops), color="C0")
    axes[0].axvline(cost.ff_flops, color="C3", lw=2, label=f"FF: {cost.ff_flops:.3g} (constant)")
    axes[0].set_xscale("log")
    axes[0].xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
    axes[0].set_xlabel("FLOPs per input (recurrent: nfe x (2N^2 + 4N))")
    axes[0].set_ylabel("test inputs")
    axes[0].set_title(f"function evaluations: median {cost.nfe.median():.0f}, max {cost.nfe.max():.0f}", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[1].hist(cost.settle_time.numpy(), bins=40, color="C2")
    axes[1].set_xlabel("settle time (units of tau; classified at the end of a solver window)")
    axes[1].set_title("simulated time to classification", fontsize=9)
    axes[2].hist(1e3 * cost.ode_seconds.numpy(), bins=_log_bins(1e3 * cost.ode_seconds, 1e3 * cost.ff_seconds),
                 color="C1")
    axes[2].axvline(1e3 * cost.ff_seconds, color="C3", lw=2, label=f"FF: {1e3 * cost.ff_seconds:.3f} ms")
    axes[2].set_xscale("log")
    axes[2].xaxis.set_minor_formatter(NullFormatter())
    axes[2].set_xlabel("wall time per input, one at a time (ms, CPU)")
    axes[2].set_title(f"batched speedup (speed/speedup): {speedup:.0f}x", fontsize=9)
    axes[2].legend(fontsize=8)
    figure.suptitle(f"{task}: cost of the recurrent solve vs the feed-forward pass")
    return _save(figure, path)


def _log_bins(values: torch.Tensor, reference: float, n: int = 40) -> list[float]:
    """Log-spaced bin edges from the smaller of the reference and the values to the largest value."""
    low = max(min(values.min().item(), reference), 1e-12)
    return torch.logspace(math.log10(low * 0.9), math.log10(values.max().item() * 1.1), n).tolist()


WTA_MARGIN_EDGES = [0.0, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0]


def wta_margin_bins(data: TestData) -> tuple[list[dict], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per bin of the top-two input margin (fraction of the input range): error and winner agreement."""
    cfg = data.task.cfg
    n_e = cfg.n_excitatory
    top2 = data.inputs.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]) / (cfg.input_high - cfg.input_low)
    error = per_input_rel_error(data)
    agree = data.predicted[:, :n_e].argmax(1) == data.target[:, :n_e].argmax(1)
    bins = []
    for low, high in zip(WTA_MARGIN_EDGES[:-1], WTA_MARGIN_EDGES[1:]):
        inside = (margin >= low) & (margin < high)
        if inside.any():
            bins.append({"low": low, "high": high, "n": int(inside.sum()),
                         "median_rel_error": error[inside].median().item(),
                         "mean_rel_error": error[inside].mean().item(),
                         "winner_agreement": agree[inside].double().mean().item()})
    return bins, margin, error, agree


def plot_wta_margin(data: TestData, path: Path) -> tuple[str, list[dict]]:
    bins, margin, error, agree = wta_margin_bins(data)
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    m = margin.clamp_min(1e-4).numpy()
    axes[0].scatter(m[agree.numpy()], error[agree].numpy(), s=6, alpha=0.5, label="winner agrees")
    axes[0].scatter(m[~agree.numpy()], error[~agree].numpy(), s=10, color="C3", label="winner differs")
    centres = [math.sqrt(max(b["low"], 1e-4) * b["high"]) for b in bins]
    axes[0].plot(centres, [b["median_rel_error"] for b in bins], "k-o", ms=4, label="median per bin")
    axes[0].axvline(data.task.cfg.clear_margin, color="0.5", ls=":", label="clear margin (5%)")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("top-two input margin / input range")
    axes[0].set_ylabel("per-input relative error")
    axes[0].legend(fontsize=7)
    axes[1].plot(centres, [b["winner_agreement"] for b in bins], "o-")
    axes[1].axvline(data.task.cfg.clear_margin, color="0.5", ls=":")
    axes[1].axhline(0.99, color="C3", ls=":", label="target 0.99 (clear inputs)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("top-two input margin / input range (bin centre)")
    axes[1].set_ylabel("winner agreement FF vs recurrent")
    axes[1].legend(fontsize=7)
    figure.suptitle(f"wta (alpha = {data.task.cfg.self_excitation}): error against the input margin")
    return _save(figure, path), bins


def plot_wta_ties(path: Path, alphas=(0.5, 1.2), n_points: int = 40) -> str:
    """Rates of the two strongest units as their inputs cross a tie: continuous for alpha < 1, a jump above."""
    difference = torch.linspace(-0.1, 0.1, n_points, dtype=torch.float64)
    figure, axes = plt.subplots(1, len(alphas), figsize=(5 * len(alphas), 3.4), squeeze=False)
    for axis, alpha in zip(axes[0], alphas):
        cfg = WTAConfig(self_excitation=alpha)
        inputs = torch.full((n_points, cfg.n_excitatory), 0.3, dtype=torch.float64)
        inputs[:, 0], inputs[:, 1] = 0.8 + difference / 2, 0.8 - difference / 2
        result = solve(wta_network(cfg), inputs)
        ok = result.converged
        for unit in (0, 1):
            axis.plot(difference[ok].numpy(), result.rates[ok, unit].numpy(), "o-", ms=3, label=f"unit {unit}")
        axis.set_title(f"alpha = {alpha} ({'soft' if alpha < 1 else 'hard'} WTA); "
                       f"{int((~ok).sum())} non-converged", fontsize=9)
        axis.set_xlabel("u_0 - u_1 (other inputs 0.3)")
        axis.set_ylabel("fixed-point rate")
        axis.legend(fontsize=8)
        axis.grid(True, alpha=0.3)
    figure.suptitle("wta: response across an input tie")
    return _save(figure, path)


def noise_bins(data: TestData, n_bins: int = 6) -> list[dict]:
    level = data.labels["noise_level"]
    edges = torch.linspace(level.min().item(), level.max().item() + 1e-12, n_bins + 1)
    rows = []
    for low, high in zip(edges[:-1].tolist(), edges[1:].tolist()):
        inside = (level >= low) & (level < high)
        if inside.sum() < 2:
            continue
        labels = {k: v[inside] for k, v in data.labels.items()}
        ff = numbers(data.task.metrics(data.inputs[inside], labels, data.predicted[inside], data.target[inside]))
        rec = numbers(data.task.metrics(data.inputs[inside], labels, data.target[inside], data.target[inside]))
        rows.append({"low": low, "high": high, "n": int(inside.sum()), "input_snr_db": ff["input_snr_db"],
                     "ff_snr_db": ff["output_snr_db"], "recurrent_snr_db": rec["output_snr_db"]})
    return rows


def plot_denoising_snr(data: TestData, path: Path) -> tuple[str, list[dict]]:
    rows = noise_bins(data)
    centre = [(r["low"] + r["high"]) / 2 for r in rows]
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(centre, [r["input_snr_db"] for r in rows], "s:", color="0.5", label="noisy input")
    axes[0].plot(centre, [r["recurrent_snr_db"] for r in rows], "o-", label="recurrent fixed point")
    axes[0].plot(centre, [r["ff_snr_db"] for r in rows], "x--", label="feed-forward output")
    axes[0].set_ylabel("SNR (dB)")
    axes[1].plot(centre, [r["ff_snr_db"] - r["recurrent_snr_db"] for r in rows], "o-", color="C2")
    axes[1].axhspan(-1, 1, color="C2", alpha=0.1, label="target: within 1 dB")
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_ylabel("FF SNR - recurrent SNR (dB)")
    for axis in axes:
        axis.set_xlabel("input noise std (bin centre)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("denoising: output SNR against input noise level")
    return _save(figure, path), rows


def transformation_decoding(data: TestData) -> dict:
    n = data.task.cfg.n
    target = data.labels["target_position"]
    decoded = {name: decode_ring(rates[:, 2 * n:3 * n].clamp_min(0), n)
               for name, rates in (("recurrent", data.target), ("feed-forward", data.predicted))}
    return {"n": n, "target": target, "decoded": decoded,
            "error": {k: circular_distance(v, target, n) for k, v in decoded.items()}}


def plot_transformation(data: TestData, path: Path) -> tuple[str, dict]:
    d = transformation_decoding(data)
    n, target = d["n"], d["target"].numpy()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (name, decoded), marker in zip(d["decoded"].items(), ("o", "x")):
        axes[0].scatter(target, decoded.numpy(), s=8, marker=marker, alpha=0.6,
                        label=f"{name} (mean error {d['error'][name].nanmean():.3f})")
        signed = torch.remainder(decoded - d["target"] + n / 2, n) - n / 2
        axes[1].scatter(target, signed.numpy(), s=8, marker=marker, alpha=0.6, label=name)
    axes[0].plot([0, n], [0, n], "k:", lw=1)
    axes[0].set_xlabel("(a + b) mod n")
    axes[0].set_ylabel("decoded position of ring C")
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].axhspan(-0.5, 0.5, color="C2", alpha=0.08, label="target: |error| <= 0.5")
    axes[1].set_xlabel("(a + b) mod n")
    axes[1].set_ylabel("decoded - target (units, circular)")
    for axis in axes:
        axis.legend(fontsize=8)
        axis.grid(True, alpha=0.3)
    figure.suptitle(f"transformation: C decodes a + b (n = {n})")
    return _save(figure, path), d


# ---------------------------------------------------------------- targets and text

def fmt(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if _finite(value) else "n/a"


def spread(results: TaskResults, width: int | None, metric: str, digits: int = 3) -> str:
    if width is None or width not in results.by_width:
        return "not run"
    mean, low, high = results.stat(width, metric)
    if not _finite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})" if low != high else f"{mean:.{digits}f}"


def targets(results: TaskResults, width: int | None, best: bool) -> list[tuple[str, float, str, bool | None]]:
    """(name, measured mean, target text, met) for one width; met is None when not run."""
    def mean(metric):
        return results.stat(width, metric)[0] if width in results.by_width else math.nan

    rel_target = REL_ERROR_BEST_TARGET if best else REL_ERROR_DEFAULT_TARGET
    checks = [("test/rel_error", mean("test/rel_error"), f"<= {rel_target}", mean("test/rel_error") <= rel_target)]
    if results.task == "wta":
        value = mean("test/winner_agreement_clear")
        checks.append(("winner agreement, clear inputs", value, ">= 0.99", value >= 0.99))
    elif results.task == "transformation":
        value = mean("test/decode_error")
        checks.append(("decode error (units)", value, "<= 0.5", value <= 0.5))
    else:
        value = mean("test/snr_gain_db") - mean("test/recurrent_snr_gain_db")
        checks.append(("FF - recurrent SNR gain (dB)", value, "within +-1", abs(value) <= 1.0))
    return [(name, value, text, (bool(ok) if _finite(value) else None)) for name, value, text, ok in checks]


def mark(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not run"}[ok]


def summary_table(all_results: dict[str, TaskResults], default: int) -> str:
    lines = ["| task | width | test/rel_error (mean, min-max) | task metric (mean, min-max) | targets |",
             "|---|---|---|---|---|"]
    for task, results in all_results.items():
        metric, _, label = TASK_METRIC[task]
        for kind, width in (("default", default if default in results.by_width else None),
                            ("best", results.best_width())):
            checks = targets(results, width, best=kind == "best")
            verdict = "; ".join(f"{name} {fmt(v, 3)} {text}: {mark(ok)}" for name, v, text, ok in checks)
            lines.append(f"| {task} | {kind}: {width if width is not None else f'{default} (not swept)'} | "
                         f"{spread(results, width, 'test/rel_error')} | {label}: {spread(results, width, metric)} "
                         f"| {verdict} |")
    return "\n".join(lines) + "\n"


def width_table(results: TaskResults) -> str:
    metric, reference, label = TASK_METRIC[results.task]
    lines = [f"| width | test/rel_error | train/rel_error | {label} (FF) | {label} (recurrent) | speedup (batched) | "
             "epochs |", "|---|---|---|---|---|---|---|"]
    for width in results.by_width:
        lines.append(f"| {width} | {spread(results, width, 'test/rel_error')} | "
                     f"{spread(results, width, 'train/rel_error')} | {spread(results, width, metric)} | "
                     f"{spread(results, width, reference)} | {spread(results, width, 'speed/speedup', 0)} | "
                     f"{spread(results, width, 'train/epochs', 0)} |")
    return "\n".join(lines) + "\n"


def shortfall_text(results: TaskResults, default: int) -> str:
    """Generated: for every missed target, how far it got, what the numbers say about why, what was tried."""
    notes = []
    for kind, width in (("default", default if default in results.by_width else None),
                        ("best", results.best_width())):
        for name, value, text, ok in targets(results, width, best=kind == "best"):
            if ok is False:
                notes.append(f"- **Missed** at the {kind} width ({width}): {name} = {fmt(value, 4)}, target {text}.")
    if not notes:
        return "All targets met for this task in this run.\n"
    return "\n".join([*notes, "", *diagnosis(results)]) + "\n"


IGNORED_OVERRIDES = ("model.hidden=", "seed=", "hydra.", "paths.", "trainer.progress", "solver.progress")


def run_settings(results: TaskResults) -> str:
    """Training settings of the sweep's runs, read from the first job's config and Hydra overrides."""
    job = Path(results.rows[0]["run_dir"])
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    overrides = [o for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")
                 if not o.startswith(IGNORED_OVERRIDES)]
    return (f"max epochs {config.trainer.max_epochs} (patience {config.trainer.patience}), lr {config.trainer.lr}, "
            f"{config.data.n_train} training inputs; command-line overrides: {' '.join(overrides) or 'none'}")


def diagnosis(results: TaskResults) -> list[str]:
    """Facts from the runs that bear on a shortfall: the width trend and whether training had stopped improving."""
    widths = list(results.by_width)
    errors = [results.stat(w, "test/rel_error")[0] for w in widths]
    trend = ", ".join(f"{w}: {e:.4f}" for w, e in zip(widths, errors))
    lines = [f"- Mean test/rel_error by width: {trend}; the lowest is {min(errors):.4f} "
             f"({min(errors) / REL_ERROR_BEST_TARGET:.1f}x the 0.03 target)."]
    still_improving = [r for r in results.rows
                       if _finite(r.get("train/best_epoch")) and _finite(r.get("train/epochs"))
                       and r["train/best_epoch"] >= 0.9 * r["train/epochs"] - 1]
    if still_improving:
        lines.append(f"- {len(still_improving)} of {len(results.rows)} runs had their best validation error in the "
                     "last 10% of their epochs (stopped by the epoch limit while still improving): longer training "
                     "may lower the error (\"What was tried\" measures 3x the epochs).")
    else:
        lines.append("- Every run stopped improving well before its epoch limit (early stopping): more epochs "
                     "alone would not help; the limit is capacity or data.")
    best = results.best_width()
    train, test = results.stat(best, "train/rel_error")[0], results.stat(best, "test/rel_error")[0]
    if _finite(train) and _finite(test) and train < 0.7 * test:
        lines.append(f"- At the best width the training inputs are fitted {test / train:.1f}x better than new ones "
                     f"(train/rel_error {train:.4f}, test {test:.4f}): the MLP partly memorises its training set, so "
                     "more training inputs should lower the test error more than width does.")
    elif _finite(train) and _finite(test):
        lines.append(f"- At the best width the training inputs are fitted no better than new ones (train/rel_error "
                     f"{train:.4f}, test {test:.4f}): the MLP underfits, so more data alone will not help; the limit "
                     "is what this network can fit or find.")
    lines.append(f"- Tried: widths {widths} x seeds {results.seeds()}, {run_settings(results)}.")
    return lines


def depth(row: dict) -> int:
    return int(row.get("model.hidden_layers") or 1)


def tried_grid(results: TaskResults) -> dict[tuple[int, int, int], dict]:
    """The "what was tried" jobs keyed by (hidden layers, training inputs, max epochs)."""
    return {(depth(r), int(r["data.n_train"]), int(r["trainer.max_epochs"])): r for r in results.tried}


def tried_text(results: TaskResults) -> str:
    """The data x schedule grid and the deeper model at the default width: table, and what it says."""
    grid = tried_grid(results)
    if not grid:
        return "Not run in this mode (the full mode runs it; `--tried` adds it to any mode).\n"
    metric, _, label = TASK_METRIC[results.task]
    lines = [f"| hidden layers | training inputs | max epochs | epochs run (best) | test/rel_error | {label} | "
             "minutes |", "|---|---|---|---|---|---|---|"]
    for (layers, n_train, epochs), r in sorted(grid.items()):
        lines.append(f"| {layers} | {n_train} | {epochs} | {fmt(r.get('train/epochs'))} "
                     f"({fmt(r.get('train/best_epoch'))}) | {fmt(r.get('test/rel_error'))} | {fmt(r.get(metric))} | "
                     f"{r['seconds'] / 60:.1f} |")
    error = {key: float(r["test/rel_error"]) for key, r in grid.items() if _finite(r.get("test/rel_error"))}
    sizes = sorted({n for layers, n, _ in grid if layers == 1})
    schedules = sorted({e for layers, _, e in grid if layers == 1})
    first = results.tried[0]
    text = [f"Width {first['model.hidden']}, seed {first['seed']}, patience unchanged: every combination of "
            "training-set size and epoch limit, and the same network with one more hidden layer of the same width."]
    base = error.get((1, sizes[0], schedules[0])) if sizes and schedules else None
    if base:
        def ratio(key) -> str:
            return f"{error[key] / base:.2f}x" if key in error else "n/a"

        deeper = [key for key in error if key[0] > 1 and key[1:] == (sizes[0], schedules[0])]
        text.append(f"Relative to {sizes[0]} inputs and {schedules[0]} epochs ({base:.4f}): "
                    f"{sizes[-1] // sizes[0]}x the data alone gives {ratio((1, sizes[-1], schedules[0]))} the error, "
                    f"{schedules[-1] // schedules[0]}x the epochs alone {ratio((1, sizes[0], schedules[-1]))}, "
                    f"both {ratio((1, sizes[-1], schedules[-1]))}"
                    + "".join(f"; {k[0]} hidden layers {ratio(k)}" for k in sorted(deeper)) + ".")
        best_key = min(error, key=error.get)
        text.append(f"The lowest, {error[best_key]:.4f} ({best_key[0]} hidden layer(s), {best_key[1]} inputs, "
                    f"{best_key[2]} epochs), is {error[best_key] / REL_ERROR_BEST_TARGET:.2f}x the "
                    f"{REL_ERROR_BEST_TARGET} target.")
    return "\n".join(lines) + "\n\n" + " ".join(text) + "\n"


def tried_summary(all_results: dict[str, TaskResults]) -> str:
    """One line per task: the lowest error the data x schedule grid reached, against the best-width target."""
    lines = []
    for task, results in all_results.items():
        grid = {k: r for k, r in tried_grid(results).items() if _finite(r.get("test/rel_error"))}
        if grid:
            (layers, n_train, epochs), r = min(grid.items(), key=lambda item: item[1]["test/rel_error"])
            lines.append(f"- {task}: {r['test/rel_error']:.4f} at width {r['model.hidden']} with {layers} hidden "
                         f"layer(s), {n_train} training inputs and {epochs} max epochs "
                         f"({mark(r['test/rel_error'] <= REL_ERROR_BEST_TARGET)} against {REL_ERROR_BEST_TARGET}).")
    if not lines:
        return ""
    return ("\nBeyond width: the lowest test/rel_error each task reached with more data, a longer schedule or one "
            "more hidden layer (one seed; see \"What was tried beyond width\" per task):\n\n" + "\n".join(lines) + "\n")


# ---------------------------------------------------------------- per task section

def task_section(results: TaskResults, out: Path, default: int, mode: dict) -> tuple[str, dict]:
    """Figures and markdown for one task; also returns the numbers the summary needs."""
    task = results.task
    figures = out / "figures"
    best = results.best_run()
    data = load_test_data(Path(best["run_dir"]))
    cost = measure_cost(data, mode["n_timed"])
    speedup = results.stat(int(best["model.hidden"]), "speed/speedup")[0]
    names = {"examples": plot_examples(data, task, figures / f"{task}_examples.png"),
             "width": plot_width(results, figures / f"{task}_width.png"),
             "cost": plot_cost(cost, task, speedup, figures / f"{task}_cost.png")}
    status = ", ".join(f"{k} {v}" for k, v in data.counts.items() if v)
    text = [f"## {task}\n",
            f"Sweep folder: `{_rel(results.sweep_dir)}` ({len(results.rows)} runs"
            f"{f', {results.sweep_seconds / 60:.1f} min' if results.sweep_seconds else ''}). "
            f"Dataset statuses (all splits): {status}; only converged samples are used. "
            f"Best checkpoint (lowest val/rel_error): `{_rel(data.checkpoint)}` "
            f"(width {best['model.hidden']}, seed {best['seed']}).\n",
            f"### Example responses\n\n![{task} examples](figures/{names['examples']})\n",
            f"### Error and task metric against width\n\n![{task} vs width](figures/{names['width']})\n",
            width_table(results),
            "\n### Cost: recurrent solve vs feed-forward pass\n",
            f"![{task} cost](figures/{names['cost']})\n",
            cost_text(cost, data, speedup),
            ]
    extra_text, extra = task_specific(task, data, figures)
    text += extra_text
    text += ["\n### Targets\n", shortfall_text(results, default),
             "\n### What was tried beyond width\n", tried_text(results),
             "\n### Analysis\n", ANALYSIS[task] + "\n"]
    return "\n".join(text), {"speedup": speedup, "cost": cost, **extra}


def _weighted(bins: list[dict], key: str) -> str:
    n = sum(b["n"] for b in bins)
    return f"{sum(b[key] * b['n'] for b in bins) / n:.3f} ({n} inputs)" if n else "n/a (no inputs)"


def cost_text(cost: Cost, data: TestData, speedup: float) -> str:
    nfe = cost.nfe
    ratio = (nfe.median() * cost.ode_flops_per_nfe / cost.ff_flops).item()
    return (f"Over the {len(nfe)} converged test inputs the recurrent solve took a median of {nfe.median():.0f} "
            f"function evaluations (5-95%: {nfe.quantile(0.05):.0f}-{nfe.quantile(0.95):.0f}, max {nfe.max():.0f}); "
            f"settle time median {cost.settle_time.median():.1f} tau (max {cost.settle_time.max():.1f}). "
            f"In FLOPs that is {ratio:.0f}x the FF pass of width {data.model.hparams['hidden']} "
            f"({cost.ff_flops:.3g} FLOPs, the same for every input). Solving {len(cost.ode_seconds)} test "
            f"inputs one at a time on the CPU took {1e3 * cost.ode_seconds.median():.1f} ms per input (median; "
            f"max {1e3 * cost.ode_seconds.max():.1f} ms) against {1e3 * cost.ff_seconds:.3f} ms for one FF "
            f"pass ({cost.ode_seconds.median() / cost.ff_seconds:.0f}x; a one-input solve also pays the per-call "
            f"stability analysis of its linear region, which a batch shares). Batched over the whole test set "
            f"(speed/speedup, same inputs and device) the FF model is {speedup:.0f}x faster; on a shared CPU "
            "this ratio of two short timings varies by several times between runs (see the min-max in the "
            "width table), the FLOP counts do not.\n")


def task_specific(task: str, data: TestData, figures: Path) -> tuple[list[str], dict]:
    if task == "wta":
        name, bins = plot_wta_margin(data, figures / "wta_margin.png")
        ties = plot_wta_ties(figures / "wta_ties.png")
        rows = ["| margin / range | inputs | median rel. error | mean rel. error | winner agreement |",
                "|---|---|---|---|---|"]
        rows += [f"| [{b['low']:.4g}, {b['high']:.4g}) | {b['n']} | {b['median_rel_error']:.4f} | "
                 f"{b['mean_rel_error']:.4f} | {b['winner_agreement']:.3f} |" for b in bins]
        alpha = data.task.cfg.self_excitation
        clear = [b for b in bins if b["low"] >= data.task.cfg.clear_margin]
        close = [b for b in bins if b["high"] <= data.task.cfg.clear_margin]
        text = ["\n### Error against the input margin\n", f"![wta margin](figures/{name})\n", "\n".join(rows) + "\n",
                f"Inputs with a margin below {data.task.cfg.clear_margin:.0%} of the range: winner agreement "
                f"{_weighted(close, 'winner_agreement')}, mean relative error {_weighted(close, 'mean_rel_error')}; "
                f"at or above it: {_weighted(clear, 'winner_agreement')} and {_weighted(clear, 'mean_rel_error')}.\n",
                f"The defaults use alpha = {alpha}: a **soft** WTA. On its active set S every rate is "
                f"r_i = (u_i - gR)/(1 - alpha), so the map is continuous and piecewise linear, and near a tie the two "
                f"top rates differ by only {1 / (1 - alpha):.1f} x the input margin: a fitting error of that size "
                "flips the argmax although the response itself is almost right (the recurrent network gives both "
                "units nearly equal rates there). Winner disagreement therefore sits at small margins, while the "
                "relative error depends little on the margin. For self_excitation > 1 only single-winner fixed "
                "points are stable: the response **jumps** from one winner to the other at a tie (below, "
                "alpha = 1.2; at the exact tie the solver finds no stable fixed point in time), and a continuous "
                "MLP must be wrong in a band around every tie whose error does not shrink with width.\n",
                f"![wta ties](figures/{ties})\n"]
        return text, {"margin_bins": bins}
    if task == "denoising":
        name, rows = plot_denoising_snr(data, figures / "denoising_snr.png")
        table = ["| noise std | inputs | input SNR (dB) | recurrent SNR (dB) | FF SNR (dB) | FF - recurrent |",
                 "|---|---|---|---|---|---|"]
        table += [f"| {r['low']:.2f}-{r['high']:.2f} | {r['n']} | {r['input_snr_db']:.2f} | "
                  f"{r['recurrent_snr_db']:.2f} | {r['ff_snr_db']:.2f} | "
                  f"{r['ff_snr_db'] - r['recurrent_snr_db']:+.2f} |"
                  for r in rows]
        return ["\n### Output SNR against input noise\n", f"![denoising snr](figures/{name})\n",
                "\n".join(table) + "\n", within_pattern_noise_text(data)], {"noise_bins": rows}
    name, d = plot_transformation(data, figures / "transformation_decoding.png")
    err = d["error"]
    text = (population_error_text(data) + " Decoding ring C with a population vector: recurrent mean error "
            f"{err['recurrent'].nanmean():.3f} "
            f"units (max {err['recurrent'].max():.3f}), feed-forward {err['feed-forward'].nanmean():.3f} "
            f"(max {err['feed-forward'].max():.3f}); the target is <= 0.5 units (half the ring spacing).\n")
    return ["\n### Decoded C position against a + b\n", f"![transformation decoding](figures/{name})\n", text], {}


def population_error_text(data: TestData) -> str:
    """Where the transformation's relative error lives: share of squared error and relative error per population."""
    n = data.task.cfg.n
    parts = {"A": slice(0, n), "B": slice(n, 2 * n), "C": slice(2 * n, 3 * n), "H": slice(3 * n, 3 * n + n * n),
             "inhibitory": slice(3 * n + n * n, None)}
    total = (data.predicted - data.target).pow(2).sum()
    shares = []
    for name, part in parts.items():
        error = (data.predicted[:, part] - data.target[:, part]).pow(2).sum()
        shares.append(f"{name} {error / total:.0%} (relative error {(error.sqrt() / data.target[:, part].norm()):.3f})")
    return "Share of the FF's squared error by population: " + ", ".join(shares) + "."


def within_pattern_noise_text(data: TestData) -> str:
    """Denoising: residual noise power on the recalled pattern's units, recurrent vs FF."""
    n_e = data.task.n_excitatory
    pattern = data.task.patterns[data.labels["pattern_index"]]
    direction = pattern / pattern.norm(dim=1, keepdim=True)

    def noise_power(rates: torch.Tensor, mask: torch.Tensor) -> float:
        rates = rates[:, :n_e]
        orthogonal = rates - (rates * direction).sum(1, keepdim=True) * direction
        return (orthogonal * mask).pow(2).sum().item()

    return (f"Residual noise power on the recalled pattern's units: recurrent {noise_power(data.target, pattern):.1f}, "
            f"FF {noise_power(data.predicted, pattern):.1f}; on the other units: recurrent "
            f"{noise_power(data.target, 1 - pattern):.1f}, FF {noise_power(data.predicted, 1 - pattern):.1f} "
            "(summed over the test inputs).\n")


def _rel(path) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the document

def machine_text() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    return (f"{cpu}, {os.cpu_count()} logical cores visible (shared with other work), {device}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, {platform.system()}")


def run_time_text(mode: dict, seconds: dict, all_results: dict[str, TaskResults]) -> str:
    total = seconds["total"]
    if mode["name"] == "reuse":
        reused = sum(r.sweep_seconds or 0 for r in all_results.values())
        return (f"Run time: analysis and figures {total / 60:.1f} min; the reused sweeps took {reused / 60:.1f} min "
                "(from their files' times).\n")
    return (f"Run time: {total / 60:.1f} min in all (sweeps {seconds['sweeps'] / 60:.1f} min, {mode['jobs']} at a "
            f"time; analysis and figures {seconds['analysis'] / 60:.1f} min).\n")


def write_report(out: Path, all_results: dict[str, TaskResults], mode: dict, sections: list[str],
                 overview: str, seconds: dict) -> Path:
    default = default_width()
    header = [
        "# Results: feed-forward approximations of recurrent fixed points\n",
        f"Generated by `python scripts/report.py {mode['argv']}` on {datetime.date.today().isoformat()} "
        f"({mode['name']} mode). Machine: {machine_text()}. " + run_time_text(mode, seconds, all_results),
        f"Settings: {mode['description']}. Default width = {default} (model.hidden); \"best\" = the width "
        "with the lowest mean test/rel_error. Values are the mean over seeds, with min-max in brackets.\n",
        "## Summary\n",
        summary_table(all_results, default),
        tried_summary(all_results),
        "\nTargets: test/rel_error <= 0.10 at the default width and <= 0.03 at the best width; WTA winner "
        "agreement >= 0.99 on inputs whose top-two margin is >= 5% of the input range; transformation decode "
        "error <= 0.5 units; denoising FF SNR gain within 1 dB of the recurrent network's.\n",
        f"![error vs width](figures/{overview})\n",
        "Per-task figures and tables follow; each sweep folder also holds summary.csv / summary.md / "
        "rel_error_vs_hidden.png from scripts/summarize.py.\n",
    ]
    path = out / "results.md"
    path.write_text("\n".join(header + sections))
    return path


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths 64,512 x seeds 0,1, short training, small data")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs", help="folder for results.md and figures/")
    parser.add_argument("--reuse", type=Path, nargs="+", default=None, help="finished multirun folders (one per task)")
    parser.add_argument("--tasks", default=",".join(TASK_NAMES), help="comma-separated tasks to run")
    parser.add_argument("--widths", default=None, help="comma-separated hidden widths (replaces the mode's)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (replaces the mode's)")
    parser.add_argument("--override", nargs="+", default=[], help="extra Hydra overrides for train.py")
    parser.add_argument("--timed", type=int, default=None,
                        help="test inputs solved one at a time for the wall-time figure (default 32 quick, 128 full)")
    parser.add_argument("--tried", action=argparse.BooleanOptionalAction, default=None,
                        help="run the data x schedule grid at the default width (default: in full mode only)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="sweeps run at once (default: 2, or 1 on a one-core machine)")
    parser.add_argument("--runs-dir", type=Path, default=PROJECT_ROOT / "outputs" / "multiruns" / "report",
                        help="where the sweeps are written (one folder per report run)")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace, task: str) -> tuple[list[int], list[int], list[str]]:
    widths, seeds = experiment_grid(task)
    if default_width() not in widths:
        widths = sorted([*widths, default_width()])
    overrides = []
    if args.quick:
        widths, seeds, overrides = QUICK["widths"], QUICK["seeds"], list(QUICK["overrides"])
    if args.widths:
        widths = [int(w) for w in args.widths.split(",")]
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
    return widths, seeds, overrides + list(args.override)


def describe(args: argparse.Namespace, tasks: list[str]) -> dict:
    widths, seeds, overrides = plan(args, tasks[0])
    values = dict(o.split("=", 1) for o in overrides if "=" in o)
    epochs = values.get("trainer.max_epochs", "300 (configs/trainer)")
    n_train = values.get("data.n_train", "4096 (configs/data)")
    runs = "reused sweeps " + ", ".join(f"`{_rel(p)}`" for p in args.reuse) if args.reuse else \
        f"widths {widths} x seeds {seeds} per task, max epochs {epochs}, n_train {n_train}"
    return {"name": "reuse" if args.reuse else ("quick" if args.quick else "full"),
            "description": runs + (f"; overrides: {' '.join(overrides)}" if overrides else ""),
            "overrides": overrides, "jobs": max(1, args.jobs),
            "n_timed": args.timed or N_TIMED["quick" if args.quick else "full"], "argv": " ".join(sys.argv[1:])}


def main(argv: list[str]) -> Path:
    args = parse_args(argv)
    start = time.perf_counter()
    tasks = args.tasks.split(",")
    summarize = load_summarize()
    mode = describe(args, tasks)
    sweeps = {}
    if args.reuse:
        sweeps = {path: None for path in args.reuse}
    else:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
        root = args.runs_dir.resolve() / f"{mode['name']}-{stamp}"
        commands = {}
        for task in tasks:
            widths, seeds, overrides = plan(args, task)
            commands[root / task] = width_sweep_command(task, widths, seeds, overrides, root / task)
        if args.tried if args.tried is not None else mode["name"] == "full":
            for task in tasks:
                _, seeds, overrides = plan(args, task)
                for name, values in TRIED.items():
                    folder = root / (task + TRIED_SUFFIX) / name
                    commands[folder] = tried_sweep_command(task, seeds[0], overrides, values, folder)
        seconds = run_sweeps(commands, max(1, args.jobs))
        sweeps = {root / task: seconds[root / task] for task in tasks}
    sweep_seconds = time.perf_counter() - start
    all_results = {}
    for sweep_dir, seconds in sweeps.items():
        for folder in (sweep_dir, sweep_dir.with_name(sweep_dir.name + TRIED_SUFFIX)):
            if folder.is_dir():
                summarize.summarize(folder)  # summary.csv / .md / rel_error_vs_hidden.png beside the jobs
        results = collect_task(summarize, sweep_dir, seconds)
        all_results[results.task] = results
    all_results = {t: all_results[t] for t in TASK_NAMES if t in all_results}
    (args.out / "figures").mkdir(parents=True, exist_ok=True)
    overview = plot_overview(all_results, args.out / "figures" / "rel_error_vs_width.png")
    sections = [task_section(results, args.out, default_width(), mode)[0] for results in all_results.values()]
    total = time.perf_counter() - start
    path = write_report(args.out, all_results, mode, sections, overview,
                        {"total": total, "sweeps": sweep_seconds, "analysis": total - sweep_seconds})
    print(f"[report] wrote {path} and {len(list((args.out / 'figures').glob('*.png')))} figures "
          f"in {total / 60:.1f} min")
    return path


if __name__ == "__main__":
    main(sys.argv[1:])
