"""Fixtures that compose the real configs (as lightning-hydra-template does) on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from rnn_ff.config import PROJECT_ROOT, register_configs

CONFIG_DIR = str(PROJECT_ROOT / "configs")
# Tests use tiny tensors: one thread avoids OpenMP spin-waits on a shared 2-core machine.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
TINY = {
    "wta": ["task.n_excitatory=4"],
    "transformation": [],
    "denoising": [],
    "custom": [],
    "ssn": [],
    "wilson_cowan": [],
    "ring_ssn": [],
    "balanced": ["task.n_excitatory=160", "task.n_inhibitory=40"],  # 200 units, still inhibition-stabilized
}
TINY_RUN = [
    "data.n_train=96", "data.n_val=32", "data.n_test=32", "model.hidden=16", "trainer.max_epochs=4",
    "trainer.batch_size=32", "trainer.warmup_epochs=1", "trainer.progress=false", "solver.progress=false",
    "trainer.n_figure_examples=2",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` stay in every run, so that a CPU run shows them as skipped (with the
    reason) instead of silently leaving them out; they run where a GPU is."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is false on this machine")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


def compose_config(tmp_path: Path, overrides: list[str]) -> DictConfig:
    """The train config as Hydra would build it, with every path under tmp_path."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.log_dir = str(tmp_path / "outputs")
        cfg.paths.output_dir = str(tmp_path / "run")
        del cfg.hydra
    return cfg


@pytest.fixture
def tiny_wta(tmp_path: Path) -> DictConfig:
    return compose_config(tmp_path, ["task=wta", *TINY["wta"], *TINY_RUN])


def run_script(args: list[str], cwd: Path = PROJECT_ROOT, timeout: float = 300, check: bool = True,
               extra_env: dict[str, str] | None = None, **popen) -> subprocess.CompletedProcess:
    """Run a project script in a fresh interpreter, as a user would (`extra_env` added to this one's)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(extra_env or {})}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def three_cycle(eps: float = 0.25, delta: float = 0.5) -> torch.Tensor:
    """DESIGN.md's combinatorial threshold-linear network on the directed cycle 0 -> 1 -> 2 -> 0:
    driven by (1, 1.1, 0.9) it settles on a limit cycle; it has no stable fixed point."""
    weights = torch.full((3, 3), -1 - delta, dtype=torch.float64)
    for source, target in [(0, 1), (1, 2), (2, 0)]:
        weights[target, source] = -1 + eps
    weights.fill_diagonal_(0.0)
    return weights
