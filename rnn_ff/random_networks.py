"""Random excitatory-inhibitory ReLU networks that obey Dale's law, at any size.

The networks users bring (balanced E/I networks, trained RNNs) have hundreds to thousands of units;
these stand in for them in the scaling benchmark (scripts/benchmark_solver.py --scaling) and the
tests of the solver at size. Each connection exists with probability p; excitatory columns are
positive, inhibitory ones negative, their magnitudes uniform on [0.5, 1.5] times a population
mean chosen so that the mean input to a unit is balanced (E and I cancel on average). The matrix
is then scaled so that either

- its spectral radius is `spectral_radius` (0.9 in the issue that asked for them: with rho(W_EE)
  well above 1 it is inhibition-stabilized, so no global proof exists), or
- its excitatory block's spectral radius is `excitatory_radius` (< 1: stable without inhibition,
  the regime in which the global stability proof holds).
"""

from __future__ import annotations

import torch

from rnn_ff.network import RecurrentNetwork


def random_ei_network(n_units: int, *, spectral_radius: float | None = None, excitatory_radius: float | None = None,
                      excitatory_fraction: float = 0.8, connection_probability: float = 0.2,
                      tau_inhibitory: float = 0.5, seed: int = 0) -> RecurrentNetwork:
    """N units, the first round(N x excitatory_fraction) excitatory (tau 1) and the rest inhibitory
    (tau `tau_inhibitory`); identity input matrix, no bias. Give exactly one of the two radii."""
    if (spectral_radius is None) == (excitatory_radius is None):
        raise ValueError("give exactly one of spectral_radius and excitatory_radius")
    generator = torch.Generator().manual_seed(seed)
    n_excitatory = round(n_units * excitatory_fraction)
    n_inhibitory = n_units - n_excitatory
    connected = torch.rand(n_units, n_units, generator=generator, dtype=torch.float64) < connection_probability
    connected.fill_diagonal_(False)
    magnitude = 0.5 + torch.rand(n_units, n_units, generator=generator, dtype=torch.float64)
    sign = torch.ones(n_units, dtype=torch.float64)
    sign[n_excitatory:] = -max(n_excitatory, 1) / max(n_inhibitory, 1)  # balanced mean input
    weights = connected * magnitude * sign
    if spectral_radius is not None:
        weights *= spectral_radius / torch.linalg.eigvals(weights).abs().max().item()
    else:
        block = weights[:n_excitatory, :n_excitatory]
        weights *= excitatory_radius / torch.linalg.eigvals(block).abs().max().item()
    tau = torch.ones(n_units, dtype=torch.float64)
    tau[n_excitatory:] = tau_inhibitory
    return RecurrentNetwork(weights, tau, torch.eye(n_units, dtype=torch.float64),
                            torch.zeros(n_units, dtype=torch.float64))
