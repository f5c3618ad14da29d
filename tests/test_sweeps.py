"""Sweeps through Hydra's launchers and the Optuna sweeper, on tiny data, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnn_ff.config import PROJECT_ROOT
from tests.conftest import TINY, TINY_RUN, run_script

OVERRIDES = ["task=wta", *TINY["wta"], *TINY_RUN, "trainer.n_figure_examples=0"]


def sweep_jobs(log_dir: Path) -> list[Path]:
    [sweep] = (log_dir / "multiruns" / "wta").iterdir()
    return sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))


def assert_dataset_made_once(log_dir: Path, job_dirs: list[Path]) -> None:
    logs = [(job / "train.log").read_text() for job in job_dirs]
    assert sum("dataset: wrote" in log for log in logs) == 1
    assert sum("dataset: reusing" in log for log in logs) == len(logs) - 1
    assert len(list((log_dir / "cache").glob("wta-*.pt"))) == 1


@pytest.mark.parametrize("launcher, plugin", [("joblib", "hydra_plugins.hydra_joblib_launcher"),
                                              ("submitit_local", "hydra_plugins.hydra_submitit_launcher")])
def test_two_job_sweep_through_a_launcher(tmp_path, launcher, plugin):
    pytest.importorskip(plugin)
    log_dir = tmp_path / "outputs"
    run_script(["train.py", "-m", f"launcher={launcher}", *OVERRIDES, "model.hidden=8,16", f"paths.log_dir={log_dir}"],
               timeout=180)
    jobs = sweep_jobs(log_dir)
    assert [job.name for job in jobs] == ["0", "1"]
    hidden = [json.loads((job / "metrics.json").read_text()) for job in jobs]
    assert hidden[0]["test/rel_error"] != hidden[1]["test/rel_error"]  # two models, not one trained twice
    assert [yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["hidden"] for job in jobs] == [8, 16]
    assert_dataset_made_once(log_dir, jobs)  # the two parallel jobs shared one dataset


def test_two_runs_started_at_once_get_their_own_folders(tmp_path):
    log_dir = tmp_path / "outputs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "train.py", *OVERRIDES, f"paths.log_dir={log_dir}"]
    processes = [subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    runs = sorted((log_dir / "runs" / "wta").iterdir())
    assert len(runs) == 2, "two runs started in the same second must not share a folder"
    assert all((run / "metrics.json").exists() for run in runs)
    assert_dataset_made_once(log_dir, runs)


def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    log_dir = tmp_path / "outputs"
    searched = [o for o in OVERRIDES if not o.startswith("model.hidden=")]  # a fixed value would not be searched
    run_script(["train.py", "hparams_search=wta_optuna", *searched, "trainer.max_epochs=2",
                "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2", f"paths.log_dir={log_dir}"],
               timeout=180)
    jobs = sweep_jobs(log_dir)
    assert len(jobs) == 2
    errors = [json.loads((job / "metrics.json").read_text())["val/rel_error"] for job in jobs]
    results = yaml.safe_load(next((log_dir / "multiruns" / "wta").glob("*/optimization_results.yaml")).read_text())
    assert results["best_value"] == pytest.approx(min(errors))
    params = results["best_params"]
    assert params["model.hidden"] in (64, 128, 256, 512, 1024)
    assert 1e-4 <= params["trainer.lr"] <= 1e-2 and 1e-7 <= params["trainer.weight_decay"] <= 1e-2
    assert_dataset_made_once(log_dir, jobs)
