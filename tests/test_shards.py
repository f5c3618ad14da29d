"""The shared dataset cache under concurrency, and sharded generation merged bit-for-bit."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from rnn_ff import data
from rnn_ff.storage import StorageError
from rnn_ff.tasks import build_task
from tests.conftest import TINY, TINY_RUN, compose_config, run_script

OVERRIDES = ["task=wta", *TINY["wta"], *TINY_RUN]
CPU = torch.device("cpu")


def _race(tmp: str, barrier, results) -> None:
    """One of two processes asking for the same dataset at the same moment."""
    torch.set_num_threads(1)
    cfg = compose_config(Path(tmp), OVERRIDES)
    task = build_task(cfg.task)
    real_generate, calls = data.generate, []

    def slow_generate(*args, **kwargs):  # widen the window in which the other process must wait
        calls.append(1)
        time.sleep(1.0)
        return real_generate(*args, **kwargs)

    data.generate = slow_generate
    barrier.wait()
    start = time.monotonic()  # CLOCK_MONOTONIC: comparable between processes on one machine
    dataset = data.load_or_generate(cfg, task, CPU)
    contents = {name: hashlib.sha256(tensor.numpy().tobytes()).hexdigest()  # plain data crosses the queue
                for name, tensor in (("inputs", dataset.train.inputs), ("rates", dataset.train.rates),
                                     ("test_rates", dataset.test.rates))}
    results.put({"generated": bool(calls), "start": start, "end": time.monotonic(), "path": str(dataset.path),
                 **contents})


def test_two_processes_racing_for_one_dataset_generate_it_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_race, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    generator, reuser = sorted(outcomes, key=lambda o: not o["generated"])
    assert generator["generated"] and not reuser["generated"], "exactly one process generates"
    assert reuser["start"] < generator["end"] - 0.5, "the processes did not race"
    assert reuser["end"] > generator["start"] + 1.0, "the reuser returned before the dataset was written"
    assert generator["path"] == reuser["path"]
    for name in ("inputs", "rates", "test_rates"):
        assert generator[name] == reuser[name]
    cache = Path(generator["path"]).parent
    assert [p.name for p in cache.glob("*.pt")] == [Path(generator["path"]).name]
    assert not list(cache.glob(".*.tmp")), "a temporary file was left behind"


def _compare(single: dict, merged: dict) -> None:
    assert merged["key"] == single["key"]
    assert torch.equal(merged["inputs"], single["inputs"])
    assert torch.equal(merged["status_codes"], single["status_codes"])
    for name, value in single["labels"].items():
        assert torch.equal(merged["labels"][name], value), name
    assert torch.equal(merged["rates"], single["rates"]), (
        "merged rates differ from the single-process ones: the solver's per-sample answer depends on which "
        f"other samples share its batch (max difference {(merged['rates'] - single['rates']).abs().max():.3g})")
    assert merged["info"]["counts"] == single["info"]["counts"] and merged["info"]["shards"] == 3


def test_shards_merge_into_the_single_process_dataset(tmp_path):
    single_cfg = compose_config(tmp_path / "single", OVERRIDES)
    single = data.load_or_generate(single_cfg, build_task(single_cfg.task), CPU)
    sharded_cfg = compose_config(tmp_path / "sharded", OVERRIDES)
    task = build_task(sharded_cfg.task)
    path = data.cache_path(sharded_cfg, data.dataset_key(sharded_cfg, task))
    assert path.name == single.path.name, "the shard count must not enter the dataset key"

    for shard in (2, 0):  # out of order, as parallel jobs finish
        assert data.generate_shard(sharded_cfg, task, CPU, shard, 3) == data.shard_path(path, shard, 3)
    assert not path.exists()
    with pytest.raises(StorageError, match="no complete set of shards"):
        data.merge_shards(sharded_cfg, task)
    assert data.generate_shard(sharded_cfg, task, CPU, 1, 3) == path  # the last shard merges
    assert not data.shard_dir(path).exists(), "shards are removed once merged"
    _compare(torch.load(single.path, weights_only=True), torch.load(path, weights_only=True))
    assert data.generate_shard(sharded_cfg, task, CPU, 0, 3) == path  # nothing left to do

    with pytest.raises(StorageError, match="data.shard=3 is invalid"):
        data.generate_shard(sharded_cfg, task, CPU, 3, 3)


def test_shard_jobs_from_the_command_line_feed_training(tmp_path):
    """A multirun over the shard index, then training finds the merged dataset under its usual key."""
    log_dir = f"paths.log_dir={tmp_path / 'outputs'}"
    run_script(["scripts/generate_data.py", "-m", *OVERRIDES, "data.n_shards=3", "data.shard=0,1,2", log_dir])
    logs = [p.read_text() for p in (tmp_path / "outputs" / "multiruns").glob("wta/*/*/generate_data.log")]
    assert len(logs) == 3 and sum("merged from 3 shards" in log for log in logs) == 1
    [merged] = (tmp_path / "outputs" / "cache").glob("wta-*.pt")

    cfg = compose_config(tmp_path / "single", OVERRIDES)
    single = data.load_or_generate(cfg, build_task(cfg.task), CPU)
    assert single.path.name == merged.name
    stored = torch.load(merged, weights_only=True)
    reference = torch.load(single.path, weights_only=True)
    assert torch.equal(stored["inputs"], reference["inputs"])
    assert torch.equal(stored["status_codes"], reference["status_codes"])
    assert torch.equal(stored["rates"], reference["rates"])

    run_script(["train.py", *OVERRIDES, log_dir, f"hydra.run.dir={tmp_path / 'run'}"])
    train_log = (tmp_path / "run" / "train.log").read_text()
    assert f"dataset: reusing {merged}" in train_log and "dataset: wrote" not in train_log


def test_merging_without_all_shards_names_what_is_missing(tmp_path):
    result = run_script(["scripts/generate_data.py", *OVERRIDES, "data.n_shards=4",
                         f"paths.log_dir={tmp_path / 'outputs'}"], check=False)
    assert result.returncode != 0
    assert "no complete set of shards" in result.stderr and "Traceback" not in result.stderr
