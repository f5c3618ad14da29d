"""One integration window for a batch, through torchdiffeq's public `odeint`.

torchdiffeq shares one step size across the batch and raises on non-finite values, step
underflow or too many steps; a failing batch is bisected so that only the samples
responsible are marked failed and the rest of the batch goes on.
"""

from __future__ import annotations

import math

import torch
from torchdiffeq import odeint

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.options import ADAPTIVE_METHODS, SolverOptions


def capped_velocity(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor,
                    guard: float) -> torch.Tensor:
    """The network's velocity, with rates capped beyond `guard`: a sample that explodes then
    grows only linearly and is classified `diverged` at the end of the window, instead of
    driving the shared step size to underflow. Samples below the guard are unaffected."""
    return (-states + network.rate(states.clamp(-guard, guard)) @ network.weights.T + drive) / network.tau


def integrate_window(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, times: torch.Tensor,
                     options: SolverOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate a batch over `times`. Returns the trajectory (T, B, N), the function
    evaluations per sample (B,) and a success mask (B,)."""
    calls = 0
    guard = 10.0 * options.diverge_threshold

    def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return capped_velocity(network, x, drive, guard)

    batch, device = len(states), states.device
    try:
        trajectory = odeint(
            rhs, states, times, method=options.method, rtol=options.rtol, atol=options.atol,
            options={"max_num_steps": options.max_steps_per_window} if options.method in ADAPTIVE_METHODS else None,
        )
        return trajectory, torch.full((batch,), calls, device=device), torch.ones(batch, dtype=torch.bool,
                                                                                  device=device)
    except (AssertionError, RuntimeError, ValueError, OverflowError):
        pass
    if batch == 1:
        trajectory = torch.full((len(times), 1, states.shape[1]), math.nan, dtype=states.dtype, device=device)
        return trajectory, torch.full((1,), calls, device=device), torch.zeros(1, dtype=torch.bool, device=device)
    half = batch // 2
    first = integrate_window(network, states[:half], drive[:half], times, options)
    second = integrate_window(network, states[half:], drive[half:], times, options)
    trajectory = torch.cat([first[0], second[0]], dim=1)
    return trajectory, torch.cat([first[1] + calls, second[1] + calls]), torch.cat([first[2], second[2]])
