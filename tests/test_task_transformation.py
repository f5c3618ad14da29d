"""The transformation task: its network settles and C decodes (a + b) mod n."""

from __future__ import annotations

import pytest
import torch

from rnn_ff.solver import SolverOptions, solve
from rnn_ff.tasks.base import TaskConfigError
from rnn_ff.tasks.transformation import TransformationConfig, TransformationTask, circular_distance, decode_ring


@pytest.fixture
def one_thread():
    # torch 2.13 (CPU) batched torch.linalg.solve_ex on 184 x 184 systems fails ("Pivots given to
    # lu_solve must all be >= 1") or hangs with 2 intra-op threads; the solver's polish uses it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_defaults_settle_and_decode_sum(one_thread):
    task = TransformationTask(TransformationConfig())
    n = task.cfg.n
    inputs, labels = task.sample(64, torch.Generator().manual_seed(0))
    assert inputs.shape == (64, 2 * n) and inputs.dtype == torch.float64
    assert task.network.n_units == n * n + 3 * n + 4
    result = solve(task.network, inputs, SolverOptions())
    # Every input converges, including input 48, a stable fixed point with a unit within ~1e-4 of
    # its threshold, which the solver once labelled "oscillating".
    assert result.status == ["converged"] * 64
    target = torch.remainder(labels["position_a"] + labels["position_b"], n)
    assert torch.allclose(labels["target_position"], target)
    ok = result.converged
    error = circular_distance(decode_ring(result.rates[ok, 2 * n : 3 * n], n), target[ok], n)
    assert error.mean() <= 0.5
    metrics = task.metrics(inputs[ok], {k: v[ok] for k, v in labels.items()}, result.rates[ok], result.rates[ok])
    assert metrics["decode_error"] == pytest.approx(error.mean().item())
    assert metrics["decode_error_max"] <= 1.0
    assert 1 <= metrics["output_active_units"] < n / 2  # a bump, not a flat ring


@pytest.mark.parametrize("key, value", [("n", 1), ("tau_inhibitory", 0.0), ("bump_width", -1.0)])
def test_invalid_config_names_key(key, value):
    with pytest.raises(TaskConfigError, match=f"task.{key}="):
        TransformationTask(TransformationConfig(**{key: value}))
