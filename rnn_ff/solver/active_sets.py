"""Exact fixed points of ReLU regions, one sample at a time where networks are large.

On the region of active set S the fixed point solves x = W P_S x + h (P_S = diag(S)), that is

    (I - W_SS) x_S = h_S ,   x_R = W_RS x_S + h_R    (R: the inactive units).

The answer must depend on the sample alone, to the last bit, whatever else shares its batch (a
dataset cut from a larger one, or merged from shards, holds the same targets). Small networks are
solved in batches of equal |S| (regions.exact_fixed_points). For large ones a batch would gather
an N x |S| block per sample, which costs more than the solve, so each sample is solved on its own:

- directly, by an LU factorisation of I - W_SS: (2/3) |S|^3 flops;
- or, where few units are inactive, by a low-rank update of one factorisation of the whole network,
  K = (I - W)^-1 and C = K W, made once: since I - W P_S = (I - W)(I + C P_R),
      v_R = (I + C_RR)^-1 (K h)_R ,   x = K h - C_:R v_R   (x_R = v_R),
  about N^2 + (2/3) |R|^3 flops. Which of the two a sample gets depends on its |S| alone.
"""

from __future__ import annotations

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.regions import exact_fixed_points, single_threaded_lapack

PER_SAMPLE_UNITS = 128  # from this many units on, samples are solved one at a time (CPU)
_MAX_CONDITION = 1e10  # K is used only where I - W is this well conditioned (1-norm estimate)


class ExactSolver:
    """The fixed point of each sample's region, given its active units, for one network."""

    def __init__(self, network: RecurrentNetwork) -> None:
        self.network = network
        self.per_sample = network.weights.device.type == "cpu" and network.n_units >= PER_SAMPLE_UNITS
        self._update = None  # (K, C) once made; False where I - W is too ill-conditioned

    def __call__(self, active_units: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """(B, N) fixed points for boolean active sets (B, N) and drives (B, N); nan where singular."""
        if not self.per_sample:
            return exact_fixed_points(self.network, active_units, drive)
        fixed = torch.empty_like(drive)
        with single_threaded_lapack():
            for i, (active, h) in enumerate(zip(active_units, drive)):
                fixed[i] = self._one(active, h)
        return fixed

    def _one(self, active: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        weights = self.network.weights
        n, size = len(h), int(active.sum())
        inactive = n - size
        if 2 * inactive**3 / 3 + n * n < 2 * size**3 / 3 and self._low_rank_update() is not None:
            k, c = self._update
            z = k @ h
            rest = (~active).nonzero().squeeze(1)
            small = torch.eye(inactive, dtype=h.dtype) + c[rest][:, rest]
            v, info = torch.linalg.solve_ex(small, z[rest])
            x = z - c[:, rest] @ v
            x[rest] = v
            return x if info.item() == 0 else torch.full_like(h, float("nan"))
        units = active.nonzero().squeeze(1)
        system = torch.eye(size, dtype=h.dtype) - weights[units][:, units]
        x_s, info = torch.linalg.solve_ex(system, h[units])
        x = torch.zeros_like(h)
        x[units] = x_s
        x = weights @ x + h
        x[units] = x_s
        return x if info.item() == 0 else torch.full_like(h, float("nan"))

    def _low_rank_update(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """K = (I - W)^-1 and C = K W, made on first use; None where I - W is singular or ill-conditioned."""
        if self._update is None:
            weights = self.network.weights
            system = torch.eye(len(weights), dtype=weights.dtype) - weights
            k, info = torch.linalg.inv_ex(system)
            condition = torch.linalg.matrix_norm(system, 1) * torch.linalg.matrix_norm(k, 1)
            good = info.item() == 0 and bool(torch.isfinite(k).all()) and condition.item() < _MAX_CONDITION
            self._update = (k, k @ weights) if good else False
        return self._update or None
