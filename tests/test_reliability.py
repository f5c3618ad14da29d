"""Bad input, injected faults and untrusted files: each gives one clear error and loses nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import rnn_ff.storage
from rnn_ff import STATUSES, load_approximator
from rnn_ff.checkpoint import load_checkpoint
from rnn_ff.config import PROJECT_ROOT
from rnn_ff.data import cache_path, dataset_key, load_or_generate
from rnn_ff.model import FeedForwardApproximator
from rnn_ff.storage import StorageError, atomic_save, atomic_write_text
from rnn_ff.tasks import build_task
from rnn_ff.tasks.wta import WTATask
from rnn_ff.training import USER_ERRORS, TrainingError, train
from tests.conftest import TINY, TINY_RUN, compose_config, run_script

WTA_RUN = ["task=wta", *TINY["wta"], *TINY_RUN]


def write_array(folder: Path, name: str, array: np.ndarray) -> Path:
    path = folder / name
    np.save(path, array)
    return path


def assert_no_work_done(tmp_path: Path) -> None:
    assert not (tmp_path / "outputs" / "cache").exists(), "a dataset was generated"
    assert not (tmp_path / "run" / "checkpoints").exists(), "training started"


INVALID = [
    # (overrides, what the message must say)
    (["data.n_train=0"], r"data\.n_train=0 is invalid: must be >= 1"),
    (["data.n_val=-1"], r"data\.n_val=-1 is invalid: must be >= 1"),
    (["data.n_test=0"], r"data\.n_test=0 is invalid: must be >= 1"),
    (["model.hidden=0"], r"model\.hidden=0 is invalid: must be >= 1"),
    (["model.hidden=-4"], r"model\.hidden=-4 is invalid: must be >= 1"),
    (["trainer.batch_size=0"], r"trainer\.batch_size=0 is invalid: must be >= 1"),
    (["trainer.lr=inf"], r"trainer\.lr=inf is invalid: must be a finite number > 0"),
    (["trainer.min_lr_ratio=2"], r"trainer\.min_lr_ratio=2\.0 is invalid: must be in \[0, 1\]"),
    (["task.n_excitatory=0"], r"task\.n_excitatory=0 is invalid: must be >= 2"),
    (["task.tau_excitatory=0"], r"task\.tau_excitatory=0\.0 is invalid: must be > 0"),
    (["task.tau_inhibitory=-1"], r"task\.tau_inhibitory=-1\.0 is invalid: must be > 0"),
    (["task.input_low=1", "task.input_high=0"], r"task\.input_low=1\.0 is invalid: must be < input_high=0\.0"),
    (["task.input_high=inf"], r"task\.input_high=inf is invalid: must be a finite number"),
    (["task.name=hopfield"], r"task\.name='hopfield' is invalid: allowed: \['balanced', 'custom', 'denoising'"),
    (["solver.method=rk45"], r"solver\.method='rk45' is invalid: allowed: \[.*'dopri5'"),
    (["device=gpu"], r"device='gpu' is invalid: allowed: auto, cpu, cuda, cuda:N"),
    (["device=cuda:x"], r"device='cuda:x' is invalid: allowed: auto, cpu, cuda, cuda:N"),
    (["solver.dtype=float16"], r"solver\.dtype='float16' is invalid: allowed: \['float64', 'float32'\]"),
    (["model.hidden_layers=0"], r"model\.hidden_layers=0 is invalid: must be >= 1"),
    (["solver.rtol=nan"], r"solver\.rtol=nan is invalid: must be a finite number > 0"),
    (["solver.max_time=inf"], r"solver\.max_time=inf is invalid: must be a finite number > 0"),
    (["solver.max_steps_per_window=0"], r"solver\.max_steps_per_window=0 is invalid: must be >= 1"),
    (["solver.stability_margin=-1e-6"], r"solver\.stability_margin=-1e-06 is invalid: must be a finite number >= 0"),
    (["solver.unstable_distance=0"], r"solver\.unstable_distance=0\.0 is invalid: must be a finite number > 0"),
    (["solver.newton_steps=0"], r"solver\.newton_steps=0 is invalid: must be >= 1"),
    (["solver.certify_horizon=0"], r"solver\.certify_horizon=0\.0 is invalid: must be a finite number > 0"),
    # 0 must not silently mean "the default tolerance".
    (["solver.residual_tol=0"], r"solver\.residual_tol=0\.0 is invalid: must be null \(the dtype's default\) or"),
    (["task=transformation", "task.n=0"], r"task\.n=0 is invalid: must be >= 3"),
    (["task=denoising", "task.n_patterns=-2"], r"task\.n_patterns=-2 is invalid: must be >= 2"),
    (["task=denoising", "task.pattern_size=0"], r"task\.pattern_size=0 is invalid: must be >= 1"),
    (["task=denoising", "task.tau_inhibitory=0"], r"task\.tau_inhibitory=0\.0 is invalid: must be > 0"),
    (["task=denoising", "task.noise_max=inf"], r"task\.noise_max=inf is invalid: must be a finite number"),
    (["task=custom", "task.weights={dir}/W_3x2.npy"], r"task\.weights=.*W_3x2\.npy.* must hold a square N x N "
                                                      r"matrix, got shape \(3, 2\)"),
    (["task=custom", "task.weights={dir}/W_nan.npy"], r"task\.weights: .*W_nan\.npy has non-finite entries"),
    (["task=custom", "task.weights={dir}/W.npy", "task.tau={dir}/tau_2.npy"], r"task\.tau=.* must be a number or "
                                                                             r"hold 3 values"),
    (["task=custom", "task.weights={dir}/W.npy", "task.tau=-1"], r"task\.tau=-1 is invalid: must be > 0"),
    (["task=custom", "task.weights={dir}/W.npy", "task.inputs.low=2"], r"task\.inputs\.low=2 is invalid: "
                                                                       r"must be < inputs\.high=1\.0"),
    (["task=custom", "task.weights={dir}/W.npy", "task.inputs.distribution=normal", "task.inputs.std=0"],
     r"task\.inputs\.std=0 is invalid: must be > 0"),
]


@pytest.mark.parametrize("overrides, message", INVALID, ids=[" ".join(o) for o, _ in INVALID])
def test_invalid_value_fails_before_any_work_naming_the_key(tmp_path, overrides, message):
    write_array(tmp_path, "W.npy", 0.1 * np.eye(3))
    write_array(tmp_path, "W_3x2.npy", np.zeros((3, 2)))
    write_array(tmp_path, "W_nan.npy", np.array([[0.1, np.nan], [0.0, 0.1]]))
    write_array(tmp_path, "tau_2.npy", np.ones(2))
    overrides = [o.format(dir=tmp_path) for o in overrides]
    base = TINY_RUN if overrides[0].startswith("task=") else WTA_RUN
    cfg = compose_config(tmp_path, [*base, *overrides])
    with pytest.raises(USER_ERRORS, match=message):
        train(cfg)
    assert_no_work_done(tmp_path)


@pytest.mark.parametrize("override, message", [
    ("model.hidden=0", "error: model.hidden=0 is invalid: must be >= 1"),
    ("solver.residual_tol=-1", "error: solver.residual_tol=-1.0 is invalid"),
])
def test_invalid_value_through_train_py_is_one_line_without_traceback(tmp_path, override, message):
    result = run_script(["train.py", *WTA_RUN, override, f"paths.log_dir={tmp_path}"], check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(message) and "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "cache").exists()
    assert not list(tmp_path.glob("runs/*/*/checkpoints/*"))


def test_kill_during_dataset_generation_leaves_nothing_read_as_complete(tmp_path):
    # Big enough that generation takes seconds, so the kill lands in the middle of it.
    overrides = ["task=wta", *TINY_RUN, "data.n_train=40000", "trainer.max_epochs=1", "trainer.n_figure_examples=0"]
    cache = tmp_path / "outputs" / "cache"
    process = subprocess.Popen([sys.executable, "train.py", *overrides, f"paths.log_dir={tmp_path / 'outputs'}"],
                               cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not list(cache.glob("*.lock")):
        time.sleep(0.02)
    time.sleep(0.5)  # the lock is taken just before the solve starts
    assert process.poll() is None, "generation finished before it could be killed"
    process.kill()
    process.wait()
    lock = next(cache.glob("wta-*.lock"))
    assert not list(cache.glob("*.pt")), "a killed generation left a dataset file"
    # As if it had been killed while saving: a partial temporary file beside the dataset's name.
    stale = cache / f".{lock.stem}.pt.x1y2z3.tmp"
    stale.write_bytes(b"PK\x03\x04 partial")

    cfg = compose_config(tmp_path, overrides)
    metrics = train(cfg)
    assert metrics["data/train_size"] > 0
    assert [p.name for p in cache.glob("*.pt")] == [f"{lock.stem}.pt"]
    assert not stale.exists()


@pytest.mark.parametrize("where", ["cache dir", "run dir", "checkpoints", "tb", "metrics.json"])
def test_unwritable_output_gives_a_clear_error(tmp_path, where):
    blocker = tmp_path / "afile"
    blocker.write_text("a regular file where a folder should be")  # tests run as root: chmod does not block
    cfg = compose_config(tmp_path, WTA_RUN)
    run = Path(cfg.paths.output_dir)
    if where == "cache dir":
        cfg.data.cache_dir = str(blocker / "cache")
        message = f"cannot write to {blocker / 'cache'}: Not a directory"
    elif where == "run dir":
        cfg.paths.output_dir = str(blocker / "run")
        message = f"cannot write to {blocker / 'run'}"
    elif where == "metrics.json":
        (run / "metrics.json").mkdir(parents=True)
        message = f"cannot write {run / 'metrics.json'}: Is a directory"
    else:
        run.mkdir()
        (run / where).write_text("")
        message = f"cannot write to {run / where}: File exists"
    with pytest.raises(StorageError, match=message):
        train(cfg)
    if where != "metrics.json":
        assert not (run / "checkpoints" / "last.pt").exists()


def test_permission_denied_names_the_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rnn_ff.storage.tempfile, "TemporaryFile", denied)
    cfg = compose_config(tmp_path, WTA_RUN)
    with pytest.raises(StorageError, match=f"cannot write to {tmp_path / 'run'}: Permission denied"):
        train(cfg)
    assert not (tmp_path / "outputs" / "cache").exists(), "a dataset was generated"


def test_full_disk_during_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def full(obj, file):
        file.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rnn_ff.storage.torch, "save", full)
    with pytest.raises(StorageError, match=f"cannot write {path}: No space left on device"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_metrics_json_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from rnn_ff.training import write_json

    path = tmp_path / "metrics.json"
    write_json(path, {"test/rel_error": 0.5})
    real_fsync = os.fsync

    def full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rnn_ff.storage.os, "fsync", full)
    with pytest.raises(StorageError, match=f"cannot write {path}: No space left on device"):
        write_json(path, {"test/rel_error": 0.1})
    monkeypatch.setattr(rnn_ff.storage.os, "fsync", real_fsync)
    assert json.loads(path.read_text()) == {"test/rel_error": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_file_system_without_locks_gets_a_soft_lock_that_is_released(tmp_path, monkeypatch, caplog):
    """Some NFS and Lustre mounts have no flock: the dataset lock falls back to a lock file."""
    import errno

    import filelock

    def no_locks(self, *args, **kwargs):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(filelock.FileLock, "acquire", no_locks)
    lock = tmp_path / "data.lock"
    with rnn_ff.storage.file_lock(lock):
        assert lock.with_suffix(".softlock").exists()
    assert not lock.with_suffix(".softlock").exists()
    assert "no file locks" in caplog.text


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny finished wta run; returns its best.pt."""
    folder = tmp_path_factory.mktemp("trained")
    train(compose_config(folder, WTA_RUN))
    return folder / "run" / "checkpoints" / "best.pt"


class CreatesFile:
    """Unpickling this runs open(path, "w"): what a malicious checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.fixture
def malicious_checkpoint(tmp_path, trained) -> tuple[Path, Path]:
    checkpoint = torch.load(trained, weights_only=True)
    marker = tmp_path / "code-ran"
    path = tmp_path / "malicious.pt"
    torch.save({**checkpoint, "payload": CreatesFile(marker)}, path)
    return path, marker


REFUSED = r"cannot be read \(truncated, corrupt, or it holds objects other than tensors .*\): .*Unsupported global"


def test_malicious_checkpoint_is_refused_by_load_approximator(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(StorageError, match=REFUSED):
        load_approximator(path)
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_on_resume(tmp_path, malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(StorageError, match=REFUSED):
        train(compose_config(tmp_path, [*WTA_RUN, f"resume={path}"]))
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_malicious_checkpoint_is_refused_by_evaluate(malicious_checkpoint):
    path, marker = malicious_checkpoint
    result = run_script(["scripts/evaluate.py", f"checkpoint={path}", "device=cpu"], check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: checkpoint {path} cannot be read") and "Unsupported global" in result.stderr
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path, trained):
    data = trained.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(StorageError, match=f"checkpoint {truncated} cannot be read \\(truncated"):
        load_approximator(truncated)
    with pytest.raises(StorageError, match=f"checkpoint {truncated} cannot be read \\(truncated"):
        train(compose_config(tmp_path, [*WTA_RUN, f"resume={truncated}"]))


@pytest.mark.parametrize("overrides, message", [
    (["model.hidden=8"], r"holds a model \{.*'hidden': 16.*\}, but this run builds \{.*'hidden': 8"),
    (["model.hidden_layers=3"], r"holds a model \{.*'hidden_layers': 2\}, but this run builds \{.*'hidden_layers': 3"),
    (["task.n_excitatory=5"], r"holds a model \{'n_inputs': 4.*but this run builds \{'n_inputs': 5"),
    (["task.self_excitation=0.3"], r"was trained on another wta network than this config builds"),
    (["task=transformation", "task.n=3"], r"was trained on task 'wta', not 'transformation'"),
    (["data.seed=1"], r"trained on the dataset wta-\w+\.pt, this config builds wta-\w+\.pt \(a data\.\* or solver"),
])
def test_resume_into_another_model_or_task_is_refused(tmp_path, trained, overrides, message):
    base = TINY_RUN if overrides[0].startswith("task=") else WTA_RUN
    cfg = compose_config(tmp_path, [*base, *overrides, f"resume={trained}"])
    with pytest.raises(USER_ERRORS, match=message):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_a_finished_run_resumed_with_more_epochs_trains_on_with_the_changed_settings(tmp_path, trained, caplog):
    """resume=<path> follows this config: a higher epoch limit trains on, a new lr is applied and logged."""
    last = trained.parent / "last.pt"
    assert torch.load(last, weights_only=True)["finished"]
    cfg = compose_config(tmp_path, [*WTA_RUN, "trainer.max_epochs=6", "trainer.lr=1e-3", f"resume={last}"])
    with caplog.at_level("INFO", logger="rnn_ff.training"):
        metrics = train(cfg)
    assert metrics["train/epochs"] == 6
    assert f"resume: trainer.lr {WTATask.lr} -> 0.001 (applied)" in caplog.text
    assert "resume: trainer.max_epochs 4 -> 6 (applied)" in caplog.text
    resumed = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["optimizer"]["param_groups"][0]["initial_lr"] == 1e-3


def test_cache_file_for_another_key_is_refused(tmp_path, trained):
    cfg = compose_config(tmp_path, [*WTA_RUN, "data.seed=1"])
    task = build_task(cfg.task)
    path = cache_path(cfg, dataset_key(cfg, task))
    path.parent.mkdir(parents=True)
    path.write_bytes(next((trained.parents[2] / "outputs" / "cache").glob("wta-*.pt")).read_bytes())
    with pytest.raises(StorageError, match=f"dataset cache file {path} holds data for another config"):
        load_or_generate(cfg, task, torch.device("cpu"))


def test_a_cache_file_whose_targets_are_not_fixed_points_is_refused(tmp_path, trained):
    """Reading a cache checks some converged targets again: an altered file is not trained on."""
    cfg = compose_config(tmp_path, WTA_RUN)
    task = build_task(cfg.task)
    path = cache_path(cfg, dataset_key(cfg, task))
    stored = torch.load(next((trained.parents[2] / "outputs" / "cache").glob("wta-*.pt")), weights_only=True)
    assert stored["key"] == dataset_key(cfg, task)
    stored["states"][:, 0] += 1e-3  # every target moved off its fixed point
    stored["rates"] = torch.relu(stored["states"])
    atomic_save(stored, path)
    with pytest.raises(StorageError, match=f"dataset cache file {path} holds targets that are not fixed points"):
        load_or_generate(cfg, task, torch.device("cpu"))


@pytest.mark.parametrize("same, other", [
    (["solver.residual_tol=null"], ["solver.residual_tol=1e-9"]),  # null is the float64 default
    (["task.clear_margin=0.05"], ["task.clear_margin=0.2"]),  # evaluation only
    (["data.multistability_inputs=0"], ["data.multistability_inputs=8"]),  # evaluation only
    (["solver.integration_dtype=null"], ["solver.integration_dtype=float64"]),  # null is solver.dtype
])
def test_one_dataset_has_one_key(tmp_path, same, other):
    keys = []
    for overrides in (same, other):
        cfg = compose_config(tmp_path, [*WTA_RUN, *overrides])
        keys.append(dataset_key(cfg, build_task(cfg.task)))
    assert keys[0] == keys[1]


def test_the_unused_input_distribution_does_not_enter_the_key(tmp_path):
    weights = write_array(tmp_path, "W.npy", 0.1 * np.eye(3))
    keys = []
    for std in (1.0, 2.0):  # std is a parameter of the normal distribution; the inputs are uniform
        cfg = compose_config(tmp_path, ["task=custom", f"task.weights={weights}", f"task.inputs.std={std}",
                                        *TINY_RUN])
        keys.append(dataset_key(cfg, build_task(cfg.task)))
    assert keys[0] == keys[1]


def test_non_finite_loss_stops_and_keeps_the_last_finite_checkpoint(tmp_path, monkeypatch):
    loss = FeedForwardApproximator.loss
    training_batches = 0

    def poisoned(self, inputs, targets, kind="rectified"):
        nonlocal training_batches
        training_batches += self.training
        value = loss(self, inputs, targets, kind)
        return value * torch.nan if training_batches > 2 * 3 else value  # from epoch 2 (3 batches per epoch)

    monkeypatch.setattr(FeedForwardApproximator, "loss", poisoned)
    cfg = compose_config(tmp_path, WTA_RUN)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.pt"
    with pytest.raises(TrainingError, match=f"non-finite training loss at epoch 2; stopped. The last good "
                                            f"checkpoint is {last} \\(epoch 2\\)"):
        train(cfg)
    assert_last_good_checkpoint(last, epoch=2)
    assert torch.isfinite(load_approximator(last)(torch.rand(3, 4))).all()


def test_absurd_learning_rate_stops_without_writing_a_checkpoint(tmp_path):
    cfg = compose_config(tmp_path, [*WTA_RUN, "trainer.lr=1e30", "trainer.grad_clip=1e30", "trainer.warmup_epochs=0"])
    with pytest.raises(TrainingError, match="non-finite training loss at epoch 0; stopped. No checkpoint was written"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_weights_broken_by_the_last_step_of_an_epoch_are_never_saved(tmp_path, monkeypatch):
    step = torch.optim.AdamW.step
    steps = 0

    def breaking(self, *args, **kwargs):
        nonlocal steps
        result = step(self, *args, **kwargs)
        steps += 1
        if steps == 2 * 3:  # the last of epoch 1's 3 batches: no training loss of epoch 1 sees it
            with torch.no_grad():
                for group in self.param_groups:
                    for parameter in group["params"]:
                        parameter.fill_(torch.nan)
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", breaking)
    cfg = compose_config(tmp_path, WTA_RUN)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.pt"
    with pytest.raises(TrainingError, match=f"non-finite validation loss at epoch 1; stopped. The last good "
                                            f"checkpoint is {last} \\(epoch 1\\)"):
        train(cfg)
    assert_last_good_checkpoint(last, epoch=1)


def test_samples_that_blow_up_are_counted_and_never_trained_on(tmp_path):
    # Unit 0 excites itself with gain 3: any input that switches it on diverges; the rest converge.
    weights = write_array(tmp_path, "W.npy", np.diag([3.0, 0.5, 0.2]))
    cfg = compose_config(tmp_path, [*TINY_RUN, "task=custom", f"task.weights={weights}",
                                    "task.inputs.distribution=normal"])
    metrics = train(cfg)
    stored = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    counts = {key: stored[key] for key in stored if key.startswith("data/") and key[5:] in STATUSES}
    assert sum(counts.values()) == 96 + 32 + 32
    assert counts["data/diverged"] > 20 and counts["data/converged"] > 20
    assert stored["data/train_size"] + stored["data/val_size"] + stored["data/test_size"] == counts["data/converged"]
    assert np.isfinite(metrics["test/rel_error"])

    data = load_or_generate(cfg, build_task(cfg.task), torch.device("cpu"))
    for split in (data.train, data.val, data.test):
        assert torch.isfinite(split.rates).all() and (split.inputs[:, 0] < 0).all()  # unit 0 stayed off
    assert len(data.train) == stored["data/train_size"]


def test_resume_auto_skips_a_damaged_checkpoint_of_another_run(tmp_path):
    damaged = tmp_path / "outputs" / "runs" / "wta" / "old" / "checkpoints" / "last.pt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"PK\x03\x04 truncated")
    metrics = train(compose_config(tmp_path, [*WTA_RUN, "resume=auto"]))
    assert metrics["train/epochs"] == 4


def assert_last_good_checkpoint(path: Path, epoch: int) -> None:
    """The checkpoint kept after a numerical fault is the named epoch's, with finite weights."""
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == epoch
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomically_written_files_get_the_mode_the_umask_gives_any_new_file(tmp_path, umask, mode):
    """Caches and checkpoints are shared: mkstemp's 0600 must not survive the rename."""
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        atomic_save({"x": torch.zeros(1)}, tmp_path / "best.pt")
        (tmp_path / "plain.txt").write_text("a file made the ordinary way")
    finally:
        os.umask(previous)
    for name in ("metrics.json", "best.pt", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
