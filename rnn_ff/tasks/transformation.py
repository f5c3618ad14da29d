"""Relational network: three rings A, B, C and a hidden n x n population H; C settles on a + b.

Units (N = n^2 + 3n + 4; 184 for n = 12): rings A, B, C (n each), hidden H (n x n, H(i,j)
at index 3n + i n + j) and one inhibitory unit per population (I_A, I_B, I_C, I_H, last).
With r = relu(x), k(i,j) = (i + j) mod n and the config weights:

    tau_E dA_i/dt  = -A_i + u^A_i + w_HR sum_j r_H(i,j) - g_R r_IA
    tau_E dB_j/dt  = -B_j + u^B_j + w_HR sum_i r_H(i,j) - g_R r_IB
    tau_E dC_k/dt  = -C_k + w_HC sum_{k(i,j)=k} r_H(i,j) - g_R r_IC
    tau_E dH_ij/dt = -H_ij + w_RH (r_A_i + r_B_j) + w_CH r_C_k(i,j) - theta_H - g_H r_IH
    tau_I dI_X/dt  = -I_X + e_X sum_{x in X} r_x        (X = A, B, C with e_R; H with e_H)

u^A, u^B are von Mises bumps of peak `bump_amplitude` and width `bump_width` units centred
at continuous positions a, b in [0, n); the task input is (u^A, u^B), D = 2n.

Why C computes a + b: H(i,j) needs A_i and B_j together to cross theta_H, so the active
hidden units form a small patch around (a, b). Each H(i,j) drives only C_(i+j), and the
patch's mass, summed along the anti-diagonals i + j = k, peaks at k = a + b (mod n): the
sum of two symmetric bumps is a bump centred on the sum of their centres. Shared
inhibition in each population subtracts a multiple of its total rate, which turns the
broad drives into sharp bumps (about 4 active units in A and B, 3 to 4 in C, about 10
active H units by default) without any self-excitation. The feedback H -> A, B and
C -> H closes the relational loop (each ring is consistent with the other two) but is
kept weak on purpose: with every loop gain well below 1 the fixed point is unique,
stable and reached in about 15 tau, and the input -> rates map is continuous and
piecewise linear (a 2-layer MLP fits it to a few percent). Decoding C with a
population vector gives a + b to about 0.05 units on average (0.14 at worst, n = 12).

Where it stops working (n = 12, other defaults held):
- Strong feedback: output_to_hidden = 0.5 (C -> H -> C gain ~ n w_CH w_HC > 1) diverges
  on every input. hidden_to_ring = 0.1 still settles but several times slower (slowest
  eigenvalue nearer 0); larger loop gains that stay bounded invite multistability, where
  the response depends on history, not only on the input.
- Narrow input bumps (bump_width = 0.5) light up under 2 units per ring; C's decode is
  pulled towards integer positions (mean error 0.16, max 0.34 units) and the map gets
  kinkier. Broad bumps (bump_width = 3 or 4) still decode, and every input settles (1,024
  of 1,024; earlier solvers called some of them "oscillating"); weak ring inhibition (0.05)
  gives 6-7 active units per ring.
- Large n costs n^2 hidden units: N grows quadratically, and so does the solve time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.tasks.base import Labels, QualityTarget, Task, require


@dataclass
class TransformationConfig:
    name: str = "transformation"  # task registry key
    n: int = 12  # units per ring; N = n^2 + 3n + 4 units in all (184 for n = 12), fast to solve
    ring_to_hidden: float = 1.0  # A_i -> H(i,j) and B_j -> H(i,j): H needs both to fire
    output_to_hidden: float = 0.05  # C_(i+j) -> H(i,j): closes the loop; weak, as n * this * hidden_to_output must stay < 1 (0.5 diverges)
    hidden_to_ring: float = 0.02  # H(i,j) -> A_i and B_j: relational feedback; weak keeps one fast, unique fixed point
    hidden_to_output: float = 1.0  # H(i,j) -> C_(i+j): the only drive C gets, sums along i + j = k
    hidden_threshold: float = 0.5  # negative bias on H: only coincident A and B bumps activate it
    ring_excitatory_to_inhibitory: float = 1.0  # each A/B/C unit -> its ring's inhibitory unit
    ring_inhibitory_to_excitatory: float = 0.3  # ring inhibitory unit -| its ring; sharpens bumps to ~4 active units (A, B), 3-4 (C)
    hidden_excitatory_to_inhibitory: float = 1.0  # each H unit -> H's inhibitory unit
    hidden_inhibitory_to_excitatory: float = 0.05  # H's inhibitory unit -| every H unit; limits the active hidden patch to ~10 units
    tau_excitatory: float = 1.0  # time constant of A, B, C and H (the unit of time)
    tau_inhibitory: float = 0.5  # inhibition is faster than excitation (keeps the loop stable)
    bump_amplitude: float = 1.0  # peak of the input bumps; must exceed hidden_threshold for H to fire
    bump_width: float = 1.5  # input bump width in units (von Mises, ~std. dev.); moderate = smooth map


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
    units = torch.arange(n, dtype=torch.float64, device=positions.device)
    angle = 2 * math.pi * (units[None] - positions[:, None]) / n
    return amplitude * torch.exp(kappa * (torch.cos(angle) - 1.0))


def decode_ring(rates: torch.Tensor, n: int) -> torch.Tensor:
    """Population-vector position (B,) in [0, n) of ring rates (B, n); nan where the ring is silent."""
    angle = 2 * math.pi * torch.arange(n, dtype=rates.dtype, device=rates.device) / n
    z = torch.complex(rates @ torch.cos(angle), rates @ torch.sin(angle))
    position = torch.remainder(torch.angle(z) * n / (2 * math.pi), n)
    return torch.where(z.abs() > 0, position, torch.full_like(position, math.nan))


def circular_distance(x: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
    d = torch.remainder(x - y, n)
    return torch.minimum(d, n - d)


class TransformationTask(Task):
    name = "transformation"
    headline_metrics = ("rel_error_hidden_h", "decode_error")
    quality_targets = (QualityTarget("rel_error", 0.03), QualityTarget("decode_error", 0.5))
    hardness = {"n": (6, 8, 12, 16)}
    lr, max_epochs = 8e-3, 140  # at 2e-3 it took 300 epochs to the same H-unit error (0.0083)

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

    def populations(self) -> dict[str, torch.Tensor]:
        n = self.cfg.n
        units = torch.arange(self.network.n_units)
        return {"ring A": units[:n], "ring B": units[n:2 * n], "ring C": units[2 * n:3 * n],
                "hidden H": units[3 * n:3 * n + n * n], "inhibitory": units[3 * n + n * n:]}

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

    def metrics(self, inputs: torch.Tensor, labels: Labels, predicted: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        n = self.cfg.n
        c = predicted[:, 2 * n : 3 * n].double().clamp_min(0.0)
        error = circular_distance(decode_ring(c, n), labels["target_position"].to(c), n)
        error = torch.where(torch.isnan(error), torch.full_like(error, n / 2), error)  # silent C: worst case
        active = (c > 0.01 * c.amax(1, keepdim=True).clamp_min(1e-300)).sum(1).double()  # >= 1% of the peak
        return {
            "decode_error": error.mean(),
            "decode_error_p90": error.quantile(0.9),
            "decode_error_max": error.max(),
            "output_active_units": active.mean(),
        }
