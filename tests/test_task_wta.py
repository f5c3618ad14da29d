"""The WTA network computes what it claims: the strongest input wins."""

import pytest
import torch

from rnn_ff.solver import solve
from rnn_ff.tasks import TaskConfigError
from rnn_ff.tasks.wta import WTAConfig, WTATask


def clear_margin_inputs(n: int, n_e: int, margin: float) -> torch.Tensor:
    inputs = 0.8 * torch.rand(n, n_e, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    inputs[torch.arange(n), torch.randint(n_e, (n,))] = inputs.max(1).values + margin
    return inputs


@pytest.mark.parametrize("self_excitation", [0.5, 1.2])
def test_wta_selects_and_amplifies_the_strongest_input(self_excitation):
    task = WTATask(WTAConfig(n_excitatory=8, self_excitation=self_excitation))
    inputs = clear_margin_inputs(64, 8, margin=0.1)
    result = solve(task.network, inputs)
    assert result.converged.all()
    rates = result.rates[:, :8]
    assert torch.equal(rates.argmax(1), inputs.argmax(1))
    winner = inputs.argmax(1)
    losers_mean = (rates.sum(1) - rates[torch.arange(64), winner]) / 7
    assert (rates[torch.arange(64), winner] > 2 * losers_mean).all()
    assert task.metrics(inputs, {}, result.rates, result.rates)["winner_accuracy"] == 1.0


def test_invalid_wta_config_names_the_key():
    with pytest.raises(TaskConfigError, match="task.n_excitatory"):
        WTATask(WTAConfig(n_excitatory=1))
    with pytest.raises(TaskConfigError, match="task.tau_inhibitory"):
        WTATask(WTAConfig(tau_inhibitory=0.0))
