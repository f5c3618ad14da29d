"""The whole pipeline on a real CUDA GPU: training, resume, evaluate and export, solver statuses
and agreement with the CPU.

Every test is marked `cuda`: collected everywhere, skipped (with the reason) where
torch.cuda.is_available() is false. On a GPU machine: python -m pytest -m cuda tests/test_cuda.py
(scripts/gpu_check.sh runs it). Sizes are tiny; the file takes well under 3 minutes on one GPU.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Callable

import pytest
import torch

from rnn_ff import load_approximator
from rnn_ff.checkpoint import load_checkpoint
from rnn_ff.config import PROJECT_ROOT
from rnn_ff.solver import SolverOptions, solve, solve_fixed_points
from rnn_ff.storage import StorageError
from rnn_ff.tasks import build_task
from tests.conftest import TINY, TINY_RUN, compose_config, run_script, three_cycle

pytestmark = pytest.mark.cuda

GPU = "cuda"
TASK_NAMES = ("wta", "transformation", "denoising")
N_TINY = 96 + 32 + 32  # TINY_RUN's train + val + test inputs
HIDE_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # a process that sees no GPU, as on a CPU-only machine


def numeric(metrics: dict) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if isinstance(value, (int, float))}


def assert_finite(metrics: dict) -> None:
    bad = {key: value for key, value in numeric(metrics).items() if not math.isfinite(value)}
    assert not bad, f"non-finite metrics: {bad}"


def last_json_line(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory) -> Callable[[str], Path]:
    """The run folder of a tiny `train.py task=<task> device=cuda` run, trained once per module
    (the evaluate and export tests reuse the wta run's checkpoints)."""
    root = tmp_path_factory.mktemp("gpu_runs")
    runs: dict[str, Path] = {}

    def run(task: str) -> Path:
        if task not in runs:
            run_dir = root / task
            run_script(["train.py", f"task={task}", *TINY[task], *TINY_RUN, f"device={GPU}",
                        f"paths.log_dir={root / 'outputs'}", f"hydra.run.dir={run_dir}"], timeout=240)
            runs[task] = run_dir
        return runs[task]

    return run


@pytest.mark.parametrize("task", TASK_NAMES)
def test_training_on_the_gpu_writes_finite_metrics(gpu_run, task):
    run_dir = gpu_run(task)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert_finite(metrics)
    assert {"test/rel_error", "train/rel_error", "test/r2", "speed/speedup"} <= set(metrics)
    assert metrics["data/converged"] == N_TINY  # every default network settles on these inputs
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["config"]["device"] == GPU
    assert f"on {GPU}" in (run_dir / "train.log").read_text()  # the dataset was solved on the GPU


def test_resume_auto_continues_a_killed_gpu_run(tmp_path):
    """Killed mid-training, the run continues in place from its last checkpoint to the end."""
    run_dir, epochs = tmp_path / "run", 30
    args = ["train.py", "task=wta", *TINY["wta"], "data.n_train=1024", "data.n_val=32", "data.n_test=32",
            "model.hidden=16", "trainer.batch_size=4", f"trainer.max_epochs={epochs}", "trainer.patience=100",
            "trainer.progress=false", "solver.progress=false", "trainer.n_figure_examples=0", f"device={GPU}",
            "trainer.checkpoint_every=1", f"paths.log_dir={tmp_path / 'outputs'}", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen([sys.executable, *args], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if last.exists() and load_checkpoint(last)["epoch"] >= 2:
                    break
            except StorageError:  # caught between writes: look again
                pass
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    interrupted_at = load_checkpoint(last)["epoch"]
    assert 2 <= interrupted_at < epochs, f"the run was not interrupted mid-training (epoch {interrupted_at})"

    run_script([*args, "resume=auto"], timeout=240)
    assert load_checkpoint(last)["epoch"] == epochs
    resumed = re.findall(r"resumed from (\S+) after epoch (\d+)", (run_dir / "train.log").read_text())
    assert resumed and Path(resumed[-1][0]).resolve() == last.resolve() and int(resumed[-1][1]) == interrupted_at
    assert_finite(json.loads((run_dir / "metrics.json").read_text()))


@pytest.mark.parametrize("n_rows, device", [(64, GPU), (70, GPU), (64, "cuda:1")],
                         ids=["full-batches", "a-smaller-last-batch", "on-a-second-gpu"])
def test_steps_replayed_from_cuda_graphs_give_the_eager_steps_numbers(n_rows, device):
    """EpochSteps with CUDA graphs (3 eager warm-up steps, then each batch size captured once and
    replayed) against the same steps run eagerly on the GPU with AdamW prepared alike: the same
    weights and losses over epochs whose lr the scheduler halves (a lr frozen into the graph
    would miss), to the rounding of the GPU's kernels, and one graph per batch size."""
    from rnn_ff.model import FeedForwardApproximator
    from rnn_ff.training_steps import EpochSteps, epoch_order, prepare_for_capture

    if torch.device(device).index is not None and torch.device(device).index >= torch.cuda.device_count():
        pytest.skip(f"needs {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(n_rows, 5, generator=generator).to(device)
    targets = torch.relu(inputs @ torch.randn(5, 7, generator=generator).to(device) - 0.5)
    results = {}
    for cuda_graphs in (False, True):
        torch.manual_seed(0)
        model = FeedForwardApproximator(5, 7, hidden=32, hidden_layers=2).to(device)
        model.fit_normalisation(inputs, targets)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
        prepare_for_capture(optimizer)
        steps = EpochSteps(model, optimizer, inputs, targets, batch_size=16, grad_clip=0.5, cuda_graphs=cuda_graphs)
        shuffle, losses = torch.Generator().manual_seed(1), []
        for _ in range(4):
            losses.append(steps.run(epoch_order(n_rows, shuffle, torch.device(device))))
            scheduler.step()
        results[cuda_graphs] = model.state_dict(), torch.stack(losses).cpu(), len(steps.graphs)
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-5, atol=0)
    assert results[True][2] == (1 if n_rows % 16 == 0 else 2) and results[False][2] == 0


def test_gpu_checkpoint_evaluates_on_the_gpu_and_on_a_machine_without_one(gpu_run):
    best = gpu_run("wta") / "checkpoints" / "best.pt"
    common = ["scripts/evaluate.py", f"checkpoint={best}", "n_samples=64", "seed=1"]
    on_gpu = last_json_line(run_script([*common, f"device={GPU}"], timeout=120))
    on_cpu = last_json_line(run_script([*common, "device=cpu"], timeout=120, extra_env=HIDE_GPU))
    for metrics in (on_gpu, on_cpu):
        assert_finite(metrics)
        assert metrics["data/converged"] == 64
    # Same inputs, float64 targets equal to 1e-10, float32 MLP on either device.
    assert on_gpu["eval/rel_error"] == pytest.approx(on_cpu["eval/rel_error"], rel=1e-4)


def test_gpu_checkpoint_exports_with_and_without_a_gpu(gpu_run, tmp_path):
    best = gpu_run("wta") / "checkpoints" / "best.pt"
    for name, env in (("gpu_visible", {}), ("cpu_only", HIDE_GPU)):
        out_dir = tmp_path / name
        report = last_json_line(run_script(["scripts/export.py", f"checkpoint={best}", f"out_dir={out_dir}",
                                            "format=torchscript", "n_check=64"], timeout=120, extra_env=env))
        assert report["torchscript_max_abs_diff"] <= 1e-5
        traced = torch.jit.load(str(out_dir / "best.torchscript.pt"), map_location="cpu")
        inputs = torch.rand(8, report["n_inputs"])
        with torch.no_grad():
            torch.testing.assert_close(traced(inputs), load_approximator(best)(inputs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("weights, inputs, expected", [
    (three_cycle(), [[1.0, 1.1, 0.9], [1.0, 1.0, 1.0]], ["oscillating", "unstable"]),
    (torch.tensor([[1.5]], dtype=torch.float64), [[-1.0], [1.0], [-0.5]], ["converged", "diverged", "converged"]),
], ids=["three_cycle", "runaway_loop_gain"])
def test_hostile_networks_get_the_same_statuses_on_the_gpu_as_on_the_cpu(weights, inputs, expected):
    inputs = torch.tensor(inputs, dtype=torch.float64)
    on_gpu = solve_fixed_points(weights, inputs, device=GPU)
    assert on_gpu.status == expected
    assert solve_fixed_points(weights, inputs, device="cpu").status == expected


@pytest.mark.parametrize("integration_dtype", [None, "float32"], ids=["float64", "float32_integration"])
@pytest.mark.parametrize("task", TASK_NAMES)
def test_gpu_and_cpu_targets_agree(tmp_path, task, integration_dtype):
    """float64 targets from the GPU equal the CPU's to 1e-10, with the same statuses; so do those
    integrated in float32 on the GPU (polished and certified in float64) where the solver has that option."""
    gpu_options = SolverOptions()
    if integration_dtype is not None:
        if "integration_dtype" not in {f.name for f in fields(SolverOptions)}:
            pytest.skip("this solver has no integration_dtype option")
        gpu_options = SolverOptions(integration_dtype=integration_dtype)
    network_task = build_task(compose_config(tmp_path, [f"task={task}"]).task)
    inputs, _ = network_task.sample(256, torch.Generator().manual_seed(7))
    on_cpu = solve(network_task.network, inputs, device="cpu")
    on_gpu = solve(network_task.network, inputs, gpu_options, device=GPU)
    assert on_gpu.status == on_cpu.status
    assert on_cpu.converged.sum() >= 0.99 * len(inputs)
    converged = on_cpu.converged
    assert (on_gpu.rates[converged] - on_cpu.rates[converged]).abs().max().item() <= 1e-10
