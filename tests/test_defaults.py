"""The default runs of the README: each task trains where the approximation is useful."""

import json

import pytest

from tests.conftest import run_script

TARGETS = {  # task -> (metric, bound): the task metric each default run must reach
    "wta": ("test/winner_agreement_clear", lambda v: v >= 0.99),
    "transformation": ("test/decode_error", lambda v: v <= 0.5),
    "denoising": ("test/snr_gain_db", lambda v: v > 10.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TARGETS))
def test_default_run_reaches_the_quality_targets(tmp_path, task):
    run_script(["train.py", f"task={task}", "trainer.progress=false", "solver.progress=false",
                f"paths.log_dir={tmp_path}"], timeout=600)
    metrics = json.loads(next(tmp_path.glob(f"runs/{task}/*/metrics.json")).read_text())
    assert metrics["test/rel_error"] <= 0.10
    assert metrics["data/converged"] >= 0.99 * 5120
    metric, meets = TARGETS[task]
    assert meets(metrics[metric]), (metric, metrics[metric])
    assert metrics["speed/speedup"] > 10
