"""The whole pipeline on tiny data: configs, training, logging, checkpoints, reuse."""

from __future__ import annotations

import json
import logging
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from rnn_ff import load_approximator, load_network
from rnn_ff.checkpoint import load_checkpoint
from rnn_ff.config import PROJECT_ROOT, ConfigError
from rnn_ff import data as data_module
from rnn_ff.data import load_or_generate, split_slices
from rnn_ff.evaluation import numbers, regression_metrics
from rnn_ff.random_networks import random_ei_network
from rnn_ff.storage import StorageError
from rnn_ff.tasks import TASKS, build_task
from rnn_ff.training import train
from tests.conftest import TINY, TINY_RUN, compose_config, run_script

EXPECTED_SCALARS = {"train/loss", "val/loss", "val/rel_error", "val/rel_error_excitatory", "val/rel_error_inhibitory",
                    "test/rel_error_excitatory", "test/rel_error_inhibitory", "lr", "data/converged", "data/oscillating",
                    "data/generation_seconds", "test/rel_error", "test/r2", "test/winner_agreement",
                    "speed/speedup"}


def write_custom_network(folder: Path) -> Path:
    """A small stable network with mutual inhibition, saved as a user would."""
    rng = np.random.default_rng(0)
    weights = 0.3 * rng.standard_normal((5, 5)) / np.sqrt(5) - 0.1
    np.fill_diagonal(weights, 0.2)
    path = folder / "W.npy"
    np.save(path, weights)
    return path


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_config_composes_and_builds(tmp_path, task):
    extra = [f"task.weights={write_custom_network(tmp_path)}"] if task == "custom" else []
    cfg = compose_config(tmp_path, [f"task={task}", *extra])
    built = build_task(cfg.task)
    inputs, labels = built.sample(4, torch.Generator().manual_seed(0))
    assert inputs.shape == (4, built.network.n_inputs)
    assert all(len(value) == 4 for value in labels.values())


def test_training_reduces_error_and_logs_everything(tiny_wta, caplog):
    caplog.set_level(logging.INFO)
    tiny_wta.trainer.max_epochs = 12
    tiny_wta.trainer.batch_size = 8
    tiny_wta.model.hidden = 64
    tiny_wta.trainer.lr = 5e-3
    metrics = train(tiny_wta)
    run = Path(tiny_wta.paths.output_dir)

    stored = json.loads((run / "metrics.json").read_text())
    assert stored == pytest.approx(metrics)
    for key in ("test/rel_error", "test/r2", "test/winner_agreement", "data/converged", "data/unstable",
                "speed/ode_seconds_per_sample", "speed/ff_seconds_per_sample", "speed/speedup"):
        assert key in stored
    assert stored["data/converged"] == 96 + 32 + 32
    # The soft WTA has one global stability proof: its targets need no per-region certificate.
    assert stored["data/globally_stable"] == 1 and stored["data/global_margin"] > 0
    assert "certified globally stable: Lyapunov diagonal" in caplog.text
    assert "  targets  certified globally stable" in caplog.text

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = events.Tags()
    assert EXPECTED_SCALARS <= set(tags["scalars"])
    assert "data/nfe_per_sample" in tags["histograms"]
    assert "test/examples" in tags["images"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.summary_metadata["_hparams_/experiment"].plugin_data.content).experiment
    assert {"test/rel_error", "val/best_rel_error", "speed/speedup"} <= {m.name.tag for m in experiment.metric_infos}
    assert {"model.hidden", "trainer.lr", "task.n_excitatory"} <= {h.name for h in experiment.hparam_infos}
    assert "_hparams_/session_start_info" in events.summary_metadata
    val_error = [event.value for event in events.Scalars("val/rel_error")]
    assert len(val_error) == 12  # one per epoch; the best is val/best_rel_error, beside the hparams
    assert [event.value for event in events.Scalars("val/best_rel_error")] == [pytest.approx(min(val_error))]
    assert min(val_error[9:12]) < 0.9 * val_error[0]
    cache = torch.load(next(Path(tiny_wta.data.cache_dir).glob("wta-*.pt")), weights_only=True)
    where = split_slices(cache["key"]["sizes"])
    test, train_part = where["test"], where["train"]
    mean_rates = cache["rates"][train_part].mean(0).expand(32, -1)
    baseline = regression_metrics(mean_rates, cache["rates"][test])["rel_error"]
    assert metrics["test/rel_error"] < 0.6 * baseline
    # The fit to the training split, for the generalisation gap: the same model on its 96 samples.
    model = load_approximator(run / "checkpoints" / "best.pt")
    with torch.no_grad():
        train_fit = numbers(regression_metrics(model(cache["inputs"][train_part].float()).double(),
                                               cache["rates"][train_part]))
    assert metrics["train/rel_error"] == pytest.approx(train_fit["rel_error"], rel=1e-6)
    assert val_error[-1] == pytest.approx(min(val_error[:12]))
    # Each population's own error (E units 0..3, I unit 4), recomputed from the best checkpoint
    with torch.no_grad():
        predicted = model(cache["inputs"][test].float()).double()
    target = cache["rates"][test]
    for name, units in (("excitatory", slice(0, 4)), ("inhibitory", slice(4, 5))):
        expected = (predicted[:, units] - target[:, units]).norm() / target[:, units].norm()
        assert stored[f"test/rel_error_{name}"] == pytest.approx(expected.item(), rel=1e-5)
        assert events.Scalars(f"test/rel_error_{name}")[-1].value == pytest.approx(expected.item(), rel=1e-5)
    assert (run / "examples.png").stat().st_size > 0
    assert len(list((run / "tb").iterdir())) == 1  # hparams live in the same run, not a sub-run


@pytest.mark.parametrize("hidden_layers", [1, 2])
def test_checkpoint_round_trip(tiny_wta, hidden_layers):
    tiny_wta.model.hidden_layers = hidden_layers  # 2: one more hidden layer of the same width
    metrics = train(tiny_wta)
    best = Path(tiny_wta.paths.output_dir) / "checkpoints" / "best.pt"
    raw = torch.load(best, weights_only=True)
    assert raw["task"] == "wta" and raw["config"]["task"]["n_excitatory"] == 4

    model = load_approximator(best)
    assert model.hparams["hidden_layers"] == hidden_layers and len(model.deeper_layers) == hidden_layers - 1
    assert model.flops() == 2 * (4 * 16 + (hidden_layers - 1) * 16 * 16 + 16 * 5)  # 4 inputs, 16 wide, 5 units
    network = load_network(best)
    task = build_task(tiny_wta.task, network=network)
    cache = torch.load(next(Path(tiny_wta.data.cache_dir).glob("wta-*.pt")), weights_only=True)
    test = split_slices(cache["key"]["sizes"])["test"]
    with torch.no_grad():
        predicted = model(cache["inputs"][test].float()).double()
    assert numbers(regression_metrics(predicted, cache["rates"][test]))["rel_error"] == pytest.approx(
        metrics["test/rel_error"], rel=1e-6)
    assert torch.equal(network.weights, task.network.weights)


def wait_for_epoch(process: subprocess.Popen, last: Path, epoch: int, timeout: float = 120) -> None:
    """Until the running training's checkpoints/last.pt holds at least `epoch` (or it ends, or time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and load_checkpoint(last)["epoch"] >= epoch:
            return
        time.sleep(0.02)


def wait_for_events(process: subprocess.Popen, tb_dir: Path, epochs: int, timeout: float = 120) -> None:
    """Until the running training has logged `epochs` epochs' val/loss to TensorBoard (or it ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if tb_dir.is_dir():
            events = EventAccumulator(str(tb_dir)).Reload()
            if "val/loss" in events.Tags()["scalars"] and len(events.Scalars("val/loss")) >= epochs:
                return
        time.sleep(0.05)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    common = ["task=wta", *TINY["wta"], "data.n_train=512", "data.n_val=32", "data.n_test=32", "model.hidden=16",
              "trainer.batch_size=4", "trainer.max_epochs=30", "trainer.patience=100", "trainer.progress=false",
              "trainer.checkpoint_every=1",  # a kill keeps the epoch before it (the default cadence: any earlier one)
              "solver.progress=false", "trainer.n_figure_examples=0", f"paths.log_dir={tmp_path / 'outputs'}"]
    run_script(["train.py", *common, f"hydra.run.dir={tmp_path / 'full'}"])

    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "train.py", *common, f"hydra.run.dir={killed}"], cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.pt"
    wait_for_epoch(process, last, 3)
    process.kill()
    process.wait()
    interrupted_at = load_checkpoint(last)["epoch"]
    assert 3 <= interrupted_at < 30, "the run was not interrupted mid-training"

    run_script(["train.py", *common, f"hydra.run.dir={killed}", "resume=auto"])
    for name in ("last.pt", "best.pt"):
        full = load_checkpoint(tmp_path / "full" / "checkpoints" / name)
        resumed = load_checkpoint(killed / "checkpoints" / name)
        assert full["epoch"] == resumed["epoch"] == 30
        for key, value in full["model"].items():
            assert torch.equal(value, resumed["model"][key]), f"{name}: {key} differs after resume"
    full_metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    assert resumed_metrics["test/rel_error"] == full_metrics["test/rel_error"]


def test_multirun_over_hidden_sizes_generates_the_dataset_once(tmp_path):
    result = run_script(["train.py", "-m", "task=wta", *TINY["wta"], *TINY_RUN, "model.hidden=8,16",
                         f"paths.log_dir={tmp_path / 'outputs'}"])
    logs = [p.read_text() for p in (tmp_path / "outputs" / "multiruns").glob("wta/*/*/train.log")]
    assert len(logs) == 2, result.stdout
    assert sum("dataset: wrote" in log for log in logs) == 1
    assert sum("dataset: reusing" in log for log in logs) == 1
    assert len(list((tmp_path / "outputs" / "cache").glob("wta-*.pt"))) == 1
    metrics = [json.loads(p.read_text()) for p in sorted((tmp_path / "outputs" / "multiruns").glob("wta/*/*/metrics.json"))]
    assert len(metrics) == 2 and metrics[0]["test/rel_error"] != metrics[1]["test/rel_error"]  # two models, one dataset
    # Each job says what getting the data cost it, beside what generating it once cost.
    made, reused = sorted(metrics, key=lambda m: m["data/reused"])
    assert (made["data/reused"], reused["data/reused"]) == (0, 1)
    assert made["data/generation_seconds"] == reused["data/generation_seconds"] <= made["data/seconds"]
    assert reused["data/seconds"] < made["data/seconds"]
    # Each job's log ends with its summary; the sweep ends with where it is and how to summarize it.
    [sweep] = (tmp_path / "outputs" / "multiruns" / "wta").iterdir()
    for job in ("0", "1"):
        summary = (sweep / job / "train.log").read_text().split("run finished in ")[1]
        assert f"s: {sweep / job}" in summary and "test     rel_error " in summary and "rel_error_excitatory" in summary
        assert f"evaluate python scripts/evaluate.py checkpoint={sweep / job / 'checkpoints' / 'best.pt'}" in summary
        assert f"tensorboard --logdir {sweep / job / 'tb'}" in summary
    assert f"sweep finished: {sweep} (2 job(s) with metrics.json)" in result.stdout + result.stderr
    assert f"summarize python scripts/summarize.py sweep={sweep}" in result.stdout + result.stderr


def test_misspelt_config_key_fails_at_start_with_its_name(tmp_path):
    result = run_script(["train.py", "task.n_excitatry=3", f"paths.log_dir={tmp_path}"], check=False)
    assert result.returncode != 0
    assert "n_excitatry" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_wrong_value_type_fails_at_start(tmp_path):
    result = run_script(["train.py", "model.hidden=wide", f"paths.log_dir={tmp_path}"], check=False)
    assert result.returncode != 0 and "model.hidden" in result.stderr


def test_missing_custom_weight_file_fails_with_a_clear_message(tmp_path):
    missing = tmp_path / "nowhere" / "W.npy"
    result = run_script(["train.py", "task=custom", f"task.weights={missing}", f"paths.log_dir={tmp_path}"],
                        check=False)
    assert result.returncode != 0
    assert f"task.weights: file not found: {missing}" in result.stderr
    assert "Traceback" not in result.stderr


def test_custom_network_trains_and_evaluates_from_its_checkpoint(tmp_path):
    weights = write_custom_network(tmp_path)
    cfg = compose_config(tmp_path, ["task=custom", f"task.weights={weights}", "task.tau=0.5", *TINY_RUN,
                                    "trainer.max_epochs=30"])
    metrics = train(cfg)
    assert metrics["data/converged"] == 160
    assert metrics["test/r2"] > 0.2  # better than each unit's mean rate (0; an all-zero output is far below)
    weights.unlink()  # the checkpoint must carry the network itself
    best = Path(cfg.paths.output_dir) / "checkpoints" / "best.pt"
    result = run_script(["scripts/evaluate.py", f"checkpoint={best}", "n_samples=40", "seed=7", "device=cpu"])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["task"] == "custom" and report["data/converged"] == 40
    # Fresh inputs of the same distribution: about the test error, and the FF pass is the faster one.
    assert 0.5 * metrics["test/rel_error"] < report["eval/rel_error"] < 2 * metrics["test/rel_error"]
    assert report["speed/speedup"] > 1


def test_hostile_networks_give_no_targets_and_a_clear_error(tmp_path):
    """A 3-cycle CTLN only oscillates; runaway excitation only diverges: nothing to train on."""
    cycle = np.full((3, 3), -1.5)
    cycle[1, 0] = cycle[2, 1] = cycle[0, 2] = -0.75
    np.fill_diagonal(cycle, 0.0)
    np.save(tmp_path / "cycle.npy", cycle)
    np.save(tmp_path / "runaway.npy", 1.5 * np.eye(3))
    for name, status in (("cycle", "oscillating"), ("runaway", "diverged")):
        cfg = compose_config(tmp_path / name, ["task=custom", f"task.weights={tmp_path / f'{name}.npy'}",
                                               "task.inputs.low=0.95", "task.inputs.high=1.05", "solver.max_time=200",
                                               *TINY_RUN])
        with pytest.raises(StorageError, match="no converged samples") as error:
            train(cfg)
        assert f"'{status}': 160" in str(error.value)
        assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_multistability_probe_is_reported_with_the_dataset(tmp_path):
    """A hard WTA (alpha 1.2) has one stable fixed point per strong unit: the probe finds them."""
    cfg = compose_config(tmp_path, ["task=wta", *TINY["wta"], "task.self_excitation=1.2",
                                    "data.multistability_inputs=40", *TINY_RUN])
    metrics = train(cfg)
    assert metrics["data/multistability_checked"] == 40
    assert 0 < metrics["data/multistability_start_dependent"] <= 40


@pytest.mark.parametrize("task", ["wta", "transformation", "denoising", "wilson_cowan"])
def test_more_training_data_keeps_the_validation_and_test_inputs(tmp_path, task, monkeypatch):
    """Splits are fixed by index in one seeded draw that every size starts alike: a run with 4x the
    training inputs is compared on the same test set, and a smaller size is cut from the larger
    cached dataset without a solve (identical to solving it)."""
    def config(n_train: int, cache: str):
        return compose_config(tmp_path, [f"task={task}", *TINY[task], *TINY_RUN, f"data.n_train={n_train}",
                                         f"data.cache_dir={tmp_path / cache}"])

    large = load_or_generate(config(384, "shared"), build_task(config(384, "shared").task), torch.device("cpu"))
    solved = load_or_generate(config(96, "alone"), build_task(config(96, "alone").task), torch.device("cpu"))
    monkeypatch.setattr(data_module, "solve", lambda *args, **kwargs: pytest.fail("solved again"))
    cut = load_or_generate(config(96, "shared"), build_task(config(96, "shared").task), torch.device("cpu"))
    assert cut.info["derived_from"] == large.path.name and cut.path != large.path
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(cut, split).inputs, getattr(solved, split).inputs)
        # the same fixed points: to the bit for ReLU networks, to rounding for smooth ones (Newton runs batched)
        assert torch.allclose(getattr(cut, split).rates, getattr(solved, split).rates, rtol=0, atol=1e-12)
    assert cut.info["counts"] == solved.info["counts"]
    assert torch.equal(large.test.inputs, solved.test.inputs)
    assert torch.allclose(large.val.rates, solved.val.rates, rtol=0, atol=1e-12)
    assert len(large.train) >= 3 * len(solved.train)


@pytest.mark.parametrize("task, metric", [("ssn", "test/isn_agreement"), ("wilson_cowan", "test/rel_error_inhibitory")])
def test_the_literature_tasks_train_with_their_metrics_and_figure(tmp_path, task, metric, caplog):
    """The SSN and Wilson-Cowan tasks run end to end; Wilson-Cowan's limit-cycle drives are counted
    (oscillating) and never trained on."""
    caplog.set_level(logging.INFO)
    cfg = compose_config(tmp_path, [f"task={task}", *TINY_RUN])
    metrics = train(cfg)
    assert 0 <= metrics[metric] <= 1 and math.isfinite(metrics["test/rel_error_excitatory"])
    assert (Path(cfg.paths.output_dir) / "examples.png").is_file()
    assert (Path(cfg.paths.output_dir) / "response_curves.png").is_file()  # one or two inputs: the curves
    # model.output_activation=auto: a ReLU output only where the rates cannot be negative
    hparams = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "best.pt")["model_hparams"]
    assert hparams["output_activation"] == {"ssn": "relu", "wilson_cowan": "none"}[task]
    total = sum(metrics[f"data/{status}"] for status in ("converged", "oscillating", "timeout", "unstable",
                                                        "diverged", "nonfinite"))
    assert total == 160
    if task == "wilson_cowan":
        assert 10 <= metrics["data/oscillating"] <= 60 and metrics["data/converged"] + metrics["data/oscillating"] == 160
    else:
        assert metrics["data/converged"] == 160 and 0 < metrics["test/recurrent_isn_fraction"] < 1
    assert metrics["data/globally_stable"] == 0  # the SSN's power law and Wilson-Cowan's self-excitation
    assert "certified per sample: no global proof" in caplog.text  # smooth rates: a certificate per sample


def test_ctrl_c_during_training_prints_one_line_with_the_command_that_resumes_this_run(tmp_path):
    """SIGINT mid-training: last.pt is written then, whatever the checkpoint cadence (here: never
    before epoch 1000), with the last finished epoch; exit status 130, one stderr line naming that
    epoch and the resume command (this run's overrides, resume=auto, its own folder); that command
    finishes the run in the same folder, and train.log says what happened."""
    run = tmp_path / "run"
    common = ["task=wta", *TINY["wta"], "data.n_train=512", "data.n_val=32", "data.n_test=32", "model.hidden=16",
              "trainer.batch_size=4", "trainer.max_epochs=400", "trainer.patience=1000", "trainer.progress=false",
              "trainer.checkpoint_every=1000", "solver.progress=false", "trainer.n_figure_examples=0",
              f"paths.log_dir={tmp_path / 'outputs'}"]
    process = subprocess.Popen([sys.executable, "train.py", *common, f"hydra.run.dir={run}"], cwd=PROJECT_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = run / "checkpoints" / "last.pt"
    wait_for_events(process, run / "tb", epochs=2)
    assert not last.exists()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert process.returncode == 130 and len(lines) == 1, stderr
    epoch = load_checkpoint(last)["epoch"]
    assert 2 <= epoch < 400
    assert lines[0].startswith(f"interrupted (Ctrl-C); {last} holds epoch {epoch}; resume with: python train.py ")
    assert "resume=auto" in lines[0] and f"hydra.run.dir={run}" in lines[0] and "Traceback" not in stderr
    assert lines[0] in (run / "train.log").read_text()
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command[:2] == ["python", "train.py"]
    command = [arg.replace("trainer.max_epochs=400", f"trainer.max_epochs={epoch + 2}") for arg in command[2:]]
    run_script(["train.py", *command])
    assert load_checkpoint(last)["epoch"] == epoch + 2
    assert f"resumed from {last} after epoch {epoch}" in (run / "train.log").read_text()
    assert json.loads((run / "metrics.json").read_text())["train/epochs"] == epoch + 2


def test_ctrl_c_during_dataset_generation_is_one_line_and_leaves_no_empty_run_folder(tmp_path):
    outputs = tmp_path / "outputs"
    overrides = ["task=wta", *TINY_RUN, "data.n_train=40000", "trainer.max_epochs=1", f"paths.log_dir={outputs}"]
    process = subprocess.Popen([sys.executable, "train.py", *overrides], cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list(outputs.glob("cache/*.lock")):
        time.sleep(0.02)
    time.sleep(0.5)  # into the solve
    assert process.poll() is None, "generation finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines() == [
        "interrupted (Ctrl-C) before the first checkpoint: nothing to resume; the same command starts over "
        "(a dataset is cached only once complete)"], stderr
    assert not list(outputs.glob("runs/*/*")), "an empty run folder was left behind"
    assert not list(outputs.glob("cache/*.pt"))


def test_progress_bars_are_drawn_on_a_terminal_only(tmp_path):
    """A redirected stderr (a log file, a batch job) gets no bars, whatever trainer.progress says."""
    overrides = [arg for arg in TINY_RUN if "progress" not in arg]
    result = run_script(["train.py", "task=ssn", *overrides, "trainer.progress=true", "solver.progress=true",
                         f"paths.log_dir={tmp_path / 'outputs'}"])
    assert "training:" not in result.stderr and "fixed points:" not in result.stderr, result.stderr[:500]
    assert "\r" not in result.stderr


def test_train_from_python_logs_like_train_py_and_refuses_a_folder_with_a_finished_run(tmp_path, capsys):
    """The Python API: train.log and the end-of-run summary as train.py gives them; a second call
    into the same folder is refused (it would overwrite the checkpoints and add a second
    TensorBoard curve), and resume=auto continues the run instead."""
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    root.handlers.clear()  # Python without any logging configured, as a notebook user has it
    try:
        cfg = compose_config(tmp_path, ["task=wta", *TINY["wta"], *TINY_RUN])
        train(cfg)
        log_text = (tmp_path / "run" / "train.log").read_text()
        assert "training done after 4 epochs" in log_text and "run finished in" in log_text
        assert "run finished in" in capsys.readouterr().err
        with pytest.raises(ConfigError, match="holds a finished run .metrics.json.: give another folder, or "
                                              "resume=auto"):
            train(cfg)
        with open_dict(cfg):
            cfg.resume = "auto"
            cfg.trainer.max_epochs = 5
        assert train(cfg)["train/epochs"] == 5
    finally:
        root.handlers[:] = saved_handlers
    assert len(list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))) >= 1


def test_a_network_prints_as_a_summary():
    network = random_ei_network(300, excitatory_radius=0.5)
    text = repr(network)
    assert text.startswith("RecurrentNetwork(300 units, 300 inputs, relu, tau 0.5..1,") and len(text) < 200


def test_the_printed_evaluate_command_runs_from_the_folder_the_user_is_in(tmp_path):
    """Started from outside the project, the summary's evaluate command names the script by a path
    that works there (and the run folder relative to it)."""
    result = run_script([str(PROJECT_ROOT / "train.py"), "task=ssn", *TINY_RUN, "paths.log_dir=outputs",
                         f"data.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path)
    line = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert line.startswith(f"  evaluate python {PROJECT_ROOT / 'scripts' / 'evaluate.py'} checkpoint=outputs/runs/ssn/")
    args = shlex.split(line.removeprefix("  evaluate "))[1:]
    report = json.loads(run_script([*args, "n_samples=8"], cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert report["data/converged"] == 8


def test_a_wait_for_another_jobs_lock_is_reported_as_a_wait_not_as_reading(tmp_path):
    import threading

    cfg = compose_config(tmp_path, ["task=wta", *TINY["wta"], *TINY_RUN])
    task = build_task(cfg.task)
    key = data_module.dataset_key(cfg, task)
    path = data_module.cache_path(cfg, key)
    locked = threading.Event()

    def other_job() -> None:  # holds the lock for 1.5 s, then writes the dataset
        with data_module.file_lock(path.with_suffix(".lock")):
            locked.set()
            time.sleep(1.5)
            data_module._write(data_module.generate(cfg, task, key, torch.device("cpu")), path)

    thread = threading.Thread(target=other_job)
    thread.start()
    locked.wait()
    dataset = load_or_generate(cfg, task, torch.device("cpu"))
    thread.join()
    assert dataset.reused and 1.0 <= dataset.waited <= dataset.seconds
    assert dataset.seconds - dataset.waited < 1.0  # reading and rechecking a tiny file
