"""Relational network: three rings A, B, C and a hidden n x n population H; C settles on a + b.

PLACEHOLDER DOCSTRING
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.tasks.base import Labels, Task, require


@dataclass
class TransformationConfig:
    name: str = "transformation"
    n: int = 12  # units per ring; N = n^2 + 3n + 4 units in all (184 for n = 12)
    ring_to_hidden: float = 1.0  # A_i -> H(i,j) and B_j -> H(i,j): H needs both to fire
    output_to_hidden: float = 0.5  # C_(i+j) -> H(i,j): C's bump reinforces consistent H units
    hidden_to_ring: float = 0.1  # H(i,j) -> A_i and B_j: feedback that sharpens A and B
    hidden_to_output: float = 0.5  # H(i,j) -> C_(i+j): the only drive C gets, sums along i + j = k
    hidden_threshold: float = 0.5  # negative bias on H: only coincident A and B bumps activate it
    ring_excitatory_to_inhibitory: float = 1.0  # each A/B/C unit -> its ring's inhibitory unit
    ring_inhibitory_to_excitatory: float = 0.1  # ring inhibitory unit -| its ring; larger = sharper bumps
    hidden_excitatory_to_inhibitory: float = 1.0  # each H unit -> H's inhibitory unit
    hidden_inhibitory_to_excitatory: float = 0.02  # H's inhibitory unit -| every H unit
    tau_excitatory: float = 1.0  # time constant of A, B, C and H
    tau_inhibitory: float = 0.5  # inhibition is faster than excitation (keeps the loop stable)
    bump_amplitude: float = 1.0  # peak of the input bumps given to A and B
    bump_width: float = 1.5  # input bump width (std. dev. of the von Mises bump), in units


def transformation_network(cfg: TransformationConfig) -> RecurrentNetwork:
    n = cfg.n
    a0, b0, c0, h0 = 0, n, 2 * n, 3 * n
    inh = h0 + n * n  # I_A, I_B, I_C, I_H
    size = inh + 4
    w = torch.zeros(size, size, dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    i, j = i.reshape(-1), j.reshape(-1)
    h = h0 + i * n + j  # H(i,j)
    k = (i + j) % n
    w[h, a0 + i] += cfg.ring_to_hidden
    w[h, b0 + j] += cfg.ring_to_hidden
    w[h, c0 + k] += cfg.output_to_hidden
    w[a0 + i, h] += cfg.hidden_to_ring
    w[b0 + j, h] += cfg.hidden_to_ring
    w[c0 + k, h] += cfg.hidden_to_output
    for p, start in enumerate((a0, b0, c0)):
        ring = torch.arange(start, start + n)
        w[inh + p, ring] = cfg.ring_excitatory_to_inhibitory
        w[ring, inh + p] = -cfg.ring_inhibitory_to_excitatory
    hidden = torch.arange(h0, h0 + n * n)
    w[inh + 3, hidden] = cfg.hidden_excitatory_to_inhibitory
    w[hidden, inh + 3] = -cfg.hidden_inhibitory_to_excitatory
    tau = torch.full((size,), cfg.tau_excitatory, dtype=torch.float64)
    tau[inh:] = cfg.tau_inhibitory
    m = torch.zeros(size, 2 * n, dtype=torch.float64)
    m[a0 : a0 + n, :n] = torch.eye(n, dtype=torch.float64)
    m[b0 : b0 + n, n:] = torch.eye(n, dtype=torch.float64)
    bias = torch.zeros(size, dtype=torch.float64)
    bias[hidden] = -cfg.hidden_threshold
    return RecurrentNetwork(w, tau, m, bias)


def ring_bump(positions: torch.Tensor, n: int, amplitude: float, width: float) -> torch.Tensor:
    """Von Mises bumps (B, n) centred at continuous positions (B,) in [0, n): smooth in the position."""
    kappa = 1.0 / (2 * math.pi * width / n) ** 2
    angle = 2 * math.pi * (torch.arange(n, dtype=torch.float64)[None] - positions[:, None]) / n
    return amplitude * torch.exp(kappa * (torch.cos(angle) - 1.0))


def decode_ring(rates: torch.Tensor, n: int) -> torch.Tensor:
    """Population-vector position (B,) in [0, n) of ring rates (B, n); nan where the ring is silent."""
    angle = 2 * math.pi * torch.arange(n, dtype=rates.dtype) / n
    z = torch.complex(rates @ torch.cos(angle), rates @ torch.sin(angle))
    position = torch.remainder(torch.angle(z) * n / (2 * math.pi), n)
    return torch.where(z.abs() > 0, position, torch.full_like(position, math.nan))


def circular_distance(x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    d = torch.remainder(x - y, n)
    return torch.minimum(d, n - d)


class TransformationTask(Task):
    name = "transformation"

    def __init__(self, cfg: TransformationConfig, network: RecurrentNetwork | None = None) -> None:
        require(cfg.n >= 3, "n", cfg.n, "must be >= 3 (a ring needs at least 3 positions)")
        for key in (
            "ring_to_hidden", "output_to_hidden", "hidden_to_ring", "hidden_to_output", "hidden_threshold",
            "ring_excitatory_to_inhibitory", "ring_inhibitory_to_excitatory", "hidden_excitatory_to_inhibitory",
            "hidden_inhibitory_to_excitatory",
        ):
            value = getattr(cfg, key)
            require(math.isfinite(value) and value >= 0, key, value, "must be a finite number >= 0")
        require(cfg.ring_to_hidden > 0, "ring_to_hidden", cfg.ring_to_hidden, "must be > 0 (H needs A and B)")
        require(cfg.hidden_to_output > 0, "hidden_to_output", cfg.hidden_to_output, "must be > 0 (C's only drive)")
        require(cfg.tau_excitatory > 0, "tau_excitatory", cfg.tau_excitatory, "must be > 0")
        require(cfg.tau_inhibitory > 0, "tau_inhibitory", cfg.tau_inhibitory, "must be > 0")
        require(cfg.bump_amplitude > 0, "bump_amplitude", cfg.bump_amplitude, "must be > 0")
        require(0 < cfg.bump_width <= cfg.n / 2, "bump_width", cfg.bump_width, f"must be in (0, n/2 = {cfg.n / 2}]")
        self.cfg = cfg
        self.network = network or transformation_network(cfg)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, Labels]:
        size = self.cfg.n
        position_a = size * torch.rand(n, generator=generator, dtype=torch.float64)
        position_b = size * torch.rand(n, generator=generator, dtype=torch.float64)
        bumps = [ring_bump(p, size, self.cfg.bump_amplitude, self.cfg.bump_width) for p in (position_a, position_b)]
        labels = {
            "position_a": position_a,
            "position_b": position_b,
            "target_position": torch.remainder(position_a + position_b, size),
        }
        return torch.cat(bumps, dim=1), labels

    def metrics(self, inputs: torch.Tensor, labels: Labels, predicted: torch.Tensor, target: torch.Tensor) -> dict:
        n = self.cfg.n
        c = predicted[:, 2 * n : 3 * n].double().clamp_min(0.0)
        error = circular_distance(decode_ring(c, n), labels["target_position"].to(c), n)
        error = torch.where(torch.isnan(error), torch.full_like(error, n / 2), error)  # silent C: worst case
        active = (c > 1e-9 * c.amax(1, keepdim=True).clamp_min(1e-300)).sum(1).double()
        return {
            "decode_error": error.mean().item(),
            "decode_error_p90": error.quantile(0.9).item(),
            "decode_error_max": error.max().item(),
            "output_active_units": active.mean().item(),
        }
