"""Run the study: datasets first (largest first, so that smaller sizes are cut from them), then the
training runs, a few at a time in worker processes. A run whose run.json exists (written last) is
kept, so an interrupted report resumes where it stopped."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from rnn_ff.config import load_config, resolve_device
from rnn_ff.data import cache_path, dataset_key, load_or_generate
from rnn_ff.report.plan import Run
from rnn_ff.storage import atomic_write_text
from rnn_ff.tasks import build_task

log = logging.getLogger(__name__)


def prepare_datasets(runs: list[Run], runs_dir: Path, jobs: int) -> float:
    """Generate every dataset the runs need, `jobs` families at a time (a family: the configs that
    differ only in size), each family's largest first so that the smaller ones are cut from it;
    returns seconds."""
    start = time.perf_counter()
    families = defaultdict(dict)
    for run in runs:
        cfg = load_config(run.overrides, runs_dir / run.folder)
        key = dataset_key(cfg, build_task(cfg.task))
        family = json.dumps({name: value for name, value in key.items() if name != "sizes"}, sort_keys=True)
        families[family].setdefault(str(cache_path(cfg, key)), (sum(key["sizes"].values()), run.overrides))
    work = [[overrides for _, overrides in sorted(members.values(), key=lambda member: -member[0])]
            for members in families.values() if not all(Path(path).exists() for path in members)]
    log.info("report: %d dataset families to generate, %d at a time", len(work), jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(_generate_family, family, max(1, torch.get_num_threads() // jobs))
                                    for family in work]):
            future.result()
    return time.perf_counter() - start


def _generate_family(family: list[tuple[str, ...]], threads: int) -> None:
    """The datasets of one family, largest first (in a worker process)."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    for overrides in family:
        cfg = load_config(overrides)
        load_or_generate(cfg, build_task(cfg.task), resolve_device(cfg.device))


def execute(run: Run, runs_dir: Path, threads: int) -> dict:
    """One training run, in this process: metrics.json and train.log in its folder, plus run.json
    (what the run varies and how long it took)."""
    from rnn_ff.training import train  # imported here: worker processes start from a clean interpreter

    folder = runs_dir / run.folder
    if (folder / "run.json").exists():
        return json.loads((folder / "metrics.json").read_text())
    torch.set_num_threads(threads)
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / "train.log", mode="w")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        start = time.perf_counter()
        metrics = train(load_config(run.overrides, folder))
        seconds = time.perf_counter() - start
    finally:
        root.removeHandler(handler)
        handler.close()
    atomic_write_text(folder / "run.json", json.dumps({"group": run.group, "task": run.task, "name": run.name,
                                                       "overrides": list(run.overrides), "axes": run.axes,
                                                       "seconds": seconds, "threads": threads}, indent=2))
    return metrics


def run_all(runs: list[Run], runs_dir: Path, jobs: int) -> float:
    """Every run, `jobs` at a time (one thread each when several share the machine); returns seconds."""
    start = time.perf_counter()
    threads = max(1, torch.get_num_threads() // jobs)
    pending = [run for run in runs if not (runs_dir / run.folder / "run.json").exists()]
    log.info("report: %d runs, %d already done; %d at a time", len(runs), len(runs) - len(pending), jobs)
    if jobs == 1:
        for k, run in enumerate(pending, 1):
            _log_done(k, len(pending), run, execute(run, runs_dir, threads))
        return time.perf_counter() - start
    # The costliest first, so that the last runs to finish are short ones.
    pending.sort(key=lambda run: -_expected_cost(run))
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute, run, runs_dir, threads): run for run in pending}
        for k, future in enumerate(as_completed(futures), 1):
            _log_done(k, len(pending), futures[future], future.result())
    return time.perf_counter() - start


def _expected_cost(run: Run) -> float:
    """A rough order of run cost: samples seen x FLOPs-ish width term (only used to schedule)."""
    values = dict(override.split("=", 1) for override in run.overrides if "=" in override)
    width = int(values.get("model.hidden", 512)) * int(values.get("model.hidden_layers", 1)) ** 2
    return float(values.get("data.n_train", 65536)) * float(values.get("trainer.max_epochs", 300)) * (width + 64)


def _log_done(k: int, total: int, run: Run, metrics: dict) -> None:
    log.info("report: [%d/%d] %s: test/rel_error %.4g", k, total, run.folder, metrics["test/rel_error"])
