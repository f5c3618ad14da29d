"""Does a network's response depend on where it starts? (the targets are always the responses from rest)"""

from __future__ import annotations

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.core import solve
from rnn_ff.solver.options import SolverOptions


def start_dependent(
    network: RecurrentNetwork,
    inputs: torch.Tensor,
    fixed_points: torch.Tensor,
    generator: torch.Generator,
    n_starts: int = 2,
    options: SolverOptions | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Which inputs have a response that depends on the start (multistability)?

    `fixed_points` (B, N) are the converged states reached from rest. Each input is solved
    again from `n_starts` random initial states x0 ~ U(-s, s), with s the size of its fixed
    point; an input counts if a restart settles on another stable fixed point. Restarts
    that do not converge prove nothing and are ignored."""
    differs = torch.zeros(len(inputs), dtype=torch.bool)
    rates = network.rate(fixed_points)
    scale = 1.0 + fixed_points.abs().amax(-1, keepdim=True)
    for _ in range(n_starts):
        starts = scale * (2 * torch.rand(fixed_points.shape, generator=generator, dtype=torch.float64) - 1)
        again = solve(network, inputs, options, device=device, dtype=dtype, initial_states=starts)
        gap = (again.rates - rates).abs().amax(-1)
        differs |= again.converged & (gap > 1e-6 * (1.0 + rates.abs().amax(-1)))
    return differs
