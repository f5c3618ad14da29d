"""The real TensorBoard server over a real tiny sweep: every run's scalars and hparams through its HTTP API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from omegaconf import OmegaConf

from tests.test_reuse import SEEDS, WIDTHS, tiny_multirun

# Loopback only, and never through a proxy that the environment may name.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str, body: dict | None = None, timeout: float = 10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(condition, what: str, process: subprocess.Popen, log: Path, timeout: float = 60):
    """Poll condition() (None or a falsy value: not yet) until it holds; bounded, fails with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tensorboard exited ({process.returncode}) while waiting for {what}:\n{log.read_text()}")
        try:
            result = condition()
            if result:
                return result
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        time.sleep(0.25)
    pytest.fail(f"tensorboard did not serve {what} within {timeout} s:\n{log.read_text()}")


@contextmanager
def tensorboard(logdir: Path, log: Path):
    """A real `tensorboard` on a free loopback port; yields (base url, process); always stopped."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
             "--host", "127.0.0.1", "--load_fast=false", "--reload_interval", "1"],
            stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            yield f"http://127.0.0.1:{port}", process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return tiny_multirun(tmp_path_factory.mktemp("tb_sweep"))


def test_tensorboard_serves_every_run_with_scalars_and_hparams(sweep, tmp_path):
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == len(WIDTHS) * len(SEEDS)
    expected = {f"{job.name}/tb": (OmegaConf.load(job / ".hydra" / "config.yaml"),
                                   json.loads((job / "metrics.json").read_text())) for job in jobs}
    log = tmp_path / "tensorboard.log"

    with tensorboard(sweep, log) as (base, process):
        def all_loaded():  # the final scalars are written last: once they are there, a run is complete
            tags = get_json(f"{base}/data/plugin/scalars/tags")
            done = all("test/rel_error" in tags.get(run, {}) for run in expected)
            return tags if done else None

        tags = wait_for(all_loaded, "every run's test/rel_error", process, log)
        assert set(get_json(f"{base}/data/runs")) == set(expected)
        for run, (config, metrics) in expected.items():
            assert {"val/rel_error", "test/rel_error", "train/loss", "lr"} <= set(tags[run])
            query = urlencode({"run": run, "tag": "val/rel_error"})
            val = get_json(f"{base}/data/plugin/scalars/scalars?{query}")  # [[wall_time, step, value], ...]
            assert [step for _, step, _ in val] == list(range(metrics["train/epochs"]))  # per epoch, no extra point
            assert min(value for _, _, value in val) == pytest.approx(metrics["val/rel_error"], rel=1e-6)
            query = urlencode({"run": run, "tag": "test/rel_error"})
            (test,) = get_json(f"{base}/data/plugin/scalars/scalars?{query}")
            assert test[2] == pytest.approx(metrics["test/rel_error"], rel=1e-6)

        experiment = wait_for(lambda: get_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""}),
                              "the hparams experiment", process, log)
        assert {"model.hidden", "seed", "trainer.lr", "task.name"} <= {h["name"] for h in experiment["hparamInfos"]}
        assert {"val/best_rel_error", "test/rel_error"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}

        request = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": [], "startIndex": 0,
                   "sliceSize": 100}
        groups = get_json(f"{base}/data/plugin/hparams/session_groups", request)["sessionGroups"]
        assert {group["name"] for group in groups} == set(expected)
        for group in groups:
            config, metrics = expected[group["name"]]
            assert group["hparams"]["model.hidden"] == config.model.hidden
            assert group["hparams"]["seed"] == config.seed
            assert group["hparams"]["task.name"] == "wta"
            values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
            assert values["test/rel_error"] == pytest.approx(metrics["test/rel_error"], rel=1e-6)
            assert values["val/best_rel_error"] == pytest.approx(metrics["val/rel_error"], rel=1e-6)
        assert {group["hparams"]["model.hidden"] for group in groups} == set(WIDTHS)
    assert process.poll() is not None, "the tensorboard server is still running"
