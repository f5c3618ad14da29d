"""Denoising task: the recurrent fixed point restores the stored pattern (real solver paths)."""

import pytest
import torch

from rnn_ff.solver import SolverOptions, solve
from rnn_ff.tasks.base import TaskConfigError
from rnn_ff.tasks.denoising import DenoisingConfig, DenoisingTask, denoising_network


def test_defaults_denoise_with_stable_fixed_points():
    task = DenoisingTask(DenoisingConfig())
    inputs, labels = task.sample(64, torch.Generator().manual_seed(0))
    assert inputs.shape == (64, 64) and inputs.dtype == torch.float64
    assert labels["pattern_index"].dtype == torch.long
    assert ((labels["noise_level"] >= 0.1) & (labels["noise_level"] <= 0.5)).all()
    result = solve(task.network, inputs, SolverOptions())
    assert result.counts()["converged"] == 64, result.counts()
    metrics = task.metrics(inputs, labels, result.rates, result.rates)
    assert metrics["correlation"] > metrics["input_correlation"] + 0.1
    assert metrics["pattern_accuracy"] >= 0.98
    assert metrics["snr_gain_db"] > 6.0


def test_network_is_deterministic_given_config():
    for kind in ("disjoint", "random"):
        cfg = DenoisingConfig(patterns=kind, n_excitatory=80)
        assert torch.equal(denoising_network(cfg).weights, denoising_network(cfg).weights)
    other = denoising_network(DenoisingConfig(patterns="random", pattern_seed=1)).weights
    assert not torch.equal(denoising_network(DenoisingConfig(patterns="random")).weights, other)


@pytest.mark.parametrize(
    "key, value",
    [("noise_max", 0.01), ("patterns", "overlapping"), ("coupling", -1.0), ("n_excitatory", 10)],
)
def test_invalid_config_names_the_key(key, value):
    with pytest.raises(TaskConfigError, match=f"task.{key}="):
        DenoisingTask(DenoisingConfig(**{key: value}))


def test_errors_of_the_active_pattern_and_of_the_rest():
    """rel_error_pattern covers the recalled pattern's units only; an error on the other E units
    shows in rest_error_vs_pattern (measured against the pattern's rates) and nowhere else."""
    task = DenoisingTask(DenoisingConfig())
    inputs, labels = task.sample(64, torch.Generator().manual_seed(0))
    target = solve(task.network, inputs, SolverOptions()).rates
    in_pattern = task.patterns[labels["pattern_index"]] > 0
    outside = torch.zeros_like(target)
    outside[:, :task.n_excitatory][~in_pattern] = 0.01
    metrics = task.metrics(inputs, labels, target + outside, target)
    assert metrics["rel_error_pattern"] == 0
    expected = outside.norm() / target[:, :task.n_excitatory][in_pattern].norm()
    assert metrics["rest_error_vs_pattern"].item() == pytest.approx(expected.item())
    inside = torch.zeros_like(target)
    inside[:, :task.n_excitatory][in_pattern] = 0.01
    metrics = task.metrics(inputs, labels, target + inside, target)
    assert metrics["rest_error_vs_pattern"] == 0 and metrics["rel_error_pattern"] > 0
