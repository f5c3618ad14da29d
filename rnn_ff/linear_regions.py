"""Exact analysis of a ReLU network on one linear region (active set S = {i : x_i > 0}).

On S the dynamics are linear, tau de/dt = (-I + W D_S) e with e = x - x*, so everything
about the region is computed once per distinct S and cached:

- its fixed point:  (I - W_SS) x*_S = h_S,  x*_R = W_RS x*_S + h_R  (R = the inactive units);
- its stability: the Jacobian is block triangular, eigenvalues of A = T_S^-1 (-I + W_SS)
  plus -1/tau_i off S, so only the |S| x |S| block is decomposed (numpy as the fallback
  where torch's eigvals fails to converge on repeated eigenvalues);
- a certificate that a trajectory now in the region stays in it until it settles, so that
  x* is the attractor the trajectory is heading to (never a nearby saddle or another
  region's point). With A = V diag(lambda) V^-1 and c = V^-1 e_S(0):
      e_S(t) = V (exp(lambda t) c)
      e_R(t) = exp(-t/tau_R) e_R(0) + sum_k Q_k c_k (exp(lambda_k t) - exp(-t/tau_R)) / (1 + tau_R lambda_k)
  with Q = W_RS V. Signs are checked on a time grid up to the time at which a bound
  K exp(beta t) on |e| falls below the distance of x* to the region's walls.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from rnn_ff.network import RecurrentNetwork

_GRID = 48  # time points of the sign check
_CHECK_ELEMENTS = 2**21  # bounds the (samples, grid, units) tensors of the certificate


@dataclass
class LinearRegion:
    active: torch.Tensor  # indices of S
    inactive: torch.Tensor  # indices of R
    lu: tuple[torch.Tensor, torch.Tensor] | None  # LU factors of I - W_SS
    max_real: float  # largest real part of the eigenvalues of the S block
    eigenvalues: torch.Tensor | None  # (|S|,) complex
    vectors: torch.Tensor | None  # V, (|S|, |S|) complex
    inverse_vectors: torch.Tensor | None  # V^-1
    coupling: torch.Tensor | None  # Q / (1 + tau_R lambda), (|R|, |S|) complex; 0 where resonant
    resonant_coupling: torch.Tensor | None  # Q / tau_R where 1 + tau_i lambda_k = 0, else 0 (None: no resonance)
    certifiable: bool  # V well conditioned

    @property
    def stable(self) -> bool:
        return self.max_real < 0


def max_real_parts(network: RecurrentNetwork, masks: torch.Tensor) -> list[float]:
    """Largest real eigenvalue part of each region's S block, for many regions at once
    (batched by |S|); this is the cheap first test that rules out unstable regions."""
    weights = network.weights.detach().cpu().double()
    tau = network.tau.detach().cpu().double()
    masks = masks.cpu()
    result = [-math.inf] * len(masks)
    sizes = masks.sum(1)
    for size in sizes.unique().tolist():
        if size == 0:
            continue
        members = (sizes == size).nonzero().squeeze(1)
        index = masks[members].nonzero()[:, 1].view(len(members), size)  # active units per region
        blocks = weights[index[:, :, None], index[:, None, :]]
        blocks = (blocks - torch.eye(size, dtype=torch.float64)) / tau[index][:, :, None]
        try:
            values = torch.linalg.eigvals(blocks).real.amax(-1)
        except RuntimeError:  # e.g. "failed to converge ... too many repeated eigenvalues"
            values = torch.tensor([np.linalg.eigvals(b.numpy()).real.max() for b in blocks])
        for member, value in zip(members.tolist(), values.tolist()):
            result[member] = value
    return result


def analyse_region(network: RecurrentNetwork, mask: torch.Tensor) -> LinearRegion:
    """Factorise and decompose one region; `mask` is a boolean (N,) active set on the CPU."""
    device, dtype = network.weights.device, network.weights.dtype
    weights = network.weights.detach().cpu().double()
    tau = network.tau.detach().cpu().double()
    active, inactive = mask.nonzero().squeeze(1), (~mask).nonzero().squeeze(1)
    size = len(active)
    if size == 0:  # all units silent: x* = h, eigenvalues -1/tau
        return LinearRegion(active.to(device), inactive.to(device), None, -math.inf, None, None, None, None, None,
                            True)
    w_ss = weights[active][:, active]
    system = torch.eye(size, dtype=torch.float64) - w_ss
    lu = torch.linalg.lu_factor(system)
    block = -system / tau[active][:, None]
    try:
        values, vectors = torch.linalg.eig(block)
    except RuntimeError:  # e.g. "failed to converge ... too many repeated eigenvalues"
        values_np, vectors_np = np.linalg.eig(block.numpy())
        values, vectors = torch.from_numpy(values_np), torch.from_numpy(vectors_np)
    values, vectors = values.to(torch.complex128), vectors.to(torch.complex128)
    max_real = values.real.max().item()
    certifiable = bool(torch.linalg.cond(vectors).item() < 1e8)
    inverse = torch.linalg.inv(vectors) if certifiable else None
    tau_r = tau[inactive].to(torch.complex128)
    resonance = 1.0 + tau_r[:, None] * values[None, :]
    resonant = resonance.abs() <= 1e-8  # lambda_k = -1/tau_i: the driven term becomes t exp(lambda_k t) / tau_i
    coupling = resonant_coupling = None
    if certifiable:
        full = weights[inactive][:, active].to(torch.complex128) @ vectors
        coupling = torch.where(resonant, 0, full / torch.where(resonant, 1, resonance))
        if resonant.any():
            resonant_coupling = torch.where(resonant, full / tau_r[:, None], 0)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64

    def move(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device, complex_dtype)

    lu_on_device = (lu[0].to(device, dtype), lu[1].to(device))
    return LinearRegion(active.to(device), inactive.to(device), lu_on_device, max_real, move(values), move(vectors),
                        move(inverse), move(coupling), move(resonant_coupling), certifiable)


def region_fixed_points(network: RecurrentNetwork, region: LinearRegion, drive: torch.Tensor) -> torch.Tensor:
    """The fixed point of the region's linear system for each drive (B, N).

    Each sample is solved on its own (no shared right-hand-side block), so that its answer
    does not depend, even in the last bit, on which other samples share its batch."""
    fixed = drive.clone()
    if not len(region.active):
        return fixed
    w_rs = network.weights[region.inactive][:, region.active]
    rows = max(1, _CHECK_ELEMENTS // max(1, len(region.active) * max(1, len(region.inactive))))
    lu, pivots = region.lu
    for start in range(0, len(drive), rows):
        h = drive[start:start + rows]
        with single_threaded_lapack():
            x_s = torch.linalg.lu_solve(lu.expand(len(h), *lu.shape), pivots.expand(len(h), *pivots.shape),
                                        h[:, region.active, None])[:, :, 0]
        fixed[start:start + rows, region.active] = x_s
        fixed[start:start + rows, region.inactive] = (x_s[:, None, :] * w_rs).sum(-1) + h[:, region.inactive]
    return fixed


@contextmanager
def single_threaded_lapack() -> Iterator[None]:
    """torch 2.13's CPU batched LU (getrf/getrs) returns corrupt pivots or hangs when it runs
    on several threads for N >~ 150; batched factorisations and solves run on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def certify(network: RecurrentNetwork, region: LinearRegion, states: torch.Tensor, fixed: torch.Tensor,
            max_time: float) -> torch.Tensor:
    """For states (B, N) inside the region, whether the trajectory stays in it and settles on
    `fixed` (its stable fixed point), checked within `max_time`. Returns a (B,) mask."""
    if not region.stable or not region.certifiable:
        return torch.zeros(len(states), dtype=torch.bool, device=states.device)
    rows = max(1, _CHECK_ELEMENTS // (_GRID * network.n_units))
    parts = [_certify_rows(network, region, s, f, max_time) for s, f in zip(states.split(rows), fixed.split(rows))]
    return torch.cat(parts)


def _certify_rows(network: RecurrentNetwork, region: LinearRegion, states: torch.Tensor, fixed: torch.Tensor,
                  max_time: float) -> torch.Tensor:
    active, inactive = region.active, region.inactive
    x_s, x_r = fixed[:, active], fixed[:, inactive]
    inf = torch.full((len(states),), math.inf, dtype=states.dtype, device=states.device)
    # Distance of x* to the region's walls; x* on a wall (margin 0) is never certified.
    margin = torch.minimum(x_s.amin(-1) if len(active) else inf, (-x_r).amin(-1) if len(inactive) else inf)
    e0 = states - fixed
    tau_r = network.tau[inactive]
    decay = max(region.max_real, (-1.0 / tau_r).max().item() if len(inactive) else -math.inf)
    bound = e0[:, inactive].abs()  # |e(t)| <= bound exp(decay t), unit by unit
    if len(active):
        c = _modal_coordinates(region, e0)
        bound_s = c.abs() @ region.vectors.abs().T
        if len(inactive):
            bound = bound + 2.0 * (c.abs() @ region.coupling.abs().T)
            if region.resonant_coupling is not None:  # t exp(alpha t) <= 2 / (e |alpha|) exp(alpha t / 2)
                bound = bound + 2.0 / (math.e * -region.max_real) * (c.abs() @ region.resonant_coupling.abs().T)
                decay = max(decay, region.max_real / 2)
        bound = torch.cat([bound_s, bound], dim=-1)
    bound = bound.amax(-1)
    # Time after which |e| < margin for sure: the state cannot leave the region any more.
    horizon = torch.log((bound / margin.clamp_min(1e-300)).clamp_min(1.0)) / -decay
    ok = (margin > 0) & (horizon <= max_time)
    if not ok.any():
        return ok
    fractions = (torch.arange(1, _GRID + 1, dtype=states.dtype, device=states.device) / _GRID) ** 2
    times = horizon.clamp_max(max_time)[:, None] * fractions  # (B, G), denser early
    path = region_trajectory(network, region, states, fixed, times)
    inside = (path[..., active] > 0).all(-1).all(-1) & (path[..., inactive] <= 0).all(-1).all(-1)
    return ok & inside


def _modal_coordinates(region: LinearRegion, deviation: torch.Tensor) -> torch.Tensor:
    return deviation[:, region.active].to(region.vectors.dtype) @ region.inverse_vectors.T


def region_trajectory(network: RecurrentNetwork, region: LinearRegion, states: torch.Tensor, fixed: torch.Tensor,
                      times: torch.Tensor) -> torch.Tensor:
    """x(t) (B, T, N) from x(0) = states under the region's linear dynamics (exactly the
    network's trajectory while it stays in the region), at per-sample times (B, T)."""
    active, inactive = region.active, region.inactive
    e0 = states - fixed
    path = fixed[:, None, :].repeat(1, times.shape[1], 1)
    if len(active):
        c = _modal_coordinates(region, e0)
        modes = torch.exp(times[..., None] * region.eigenvalues) * c[:, None, :]  # (B, T, |S|)
        path[..., active] += (modes @ region.vectors.T).real
    if len(inactive):
        relax = torch.exp(-times[..., None] / network.tau[inactive])  # (B, T, |R|)
        e_r = relax * e0[:, None, inactive]
        if len(active):
            e_r = e_r + (modes @ region.coupling.T).real - relax * (c @ region.coupling.T).real[:, None, :]
            if region.resonant_coupling is not None:
                e_r = e_r + times[..., None] * (modes @ region.resonant_coupling.T).real
        path[..., inactive] += e_r
    return path
