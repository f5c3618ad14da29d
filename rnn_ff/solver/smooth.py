"""The certificate for smooth activations: a ball about x* that the trajectory cannot leave and in
which it settles on x*.

With e = x - x*, the dynamics are e' = J e + R(e), J = T^-1 (-I + W D), D = diag f'(x*), and the
remainder R(e) = T^-1 W (f(x* + e) - f(x*) - D e) obeys |R_i| <= sum_j |W_ij| / tau_i * Lip_j / 2 * e_j^2,
where Lip_j is a Lipschitz constant of f' on unit j's range. With a verified quadratic Lyapunov
function V = e^T L e of J (J^T L + L J <= -q I, q > 0), on the level set V = r^2 (where
|e_j| <= r s_j, s_j = sqrt((L^-1)_jj), |e|^2 >= r^2 / l_max and |L e| <= sqrt(l_max) r):

    dV/dt <= -q |e|^2 + 2 |L e| |R|  <=  r^2 (-q / l_max + 2 sqrt(l_max) c(r) r),
    c(r) = | (|W| / tau) (Lip(r) s^2 / 2) |_2 ,  Lip(r) taken on [x* - r s, x* + r s].

If that is negative at the state's own level r, it is negative at every smaller level (the ranges,
and so Lip, only shrink): the sublevel set is invariant and V decreases to 0, so the trajectory
from the state converges to x*.
"""

from __future__ import annotations

import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.regions import lyapunov_functions

_ELEMENTS = 2**22  # elements of one block of (B, N, N) work


def certified_by_lyapunov_ball(network: RecurrentNetwork, states: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """Per sample (B,), whether the state lies in a ball about its stable fixed point `fixed` that
    is proved to contract onto it (computed in float64 on the CPU; the answer on the states' device)."""
    device = states.device
    cpu = network.to("cpu", torch.float64)
    states, fixed = states.detach().cpu().double(), fixed.detach().cpu().double()
    n = cpu.n_units
    rows = max(1, _ELEMENTS // (4 * n * n))
    return torch.cat([_certified(cpu, states[i:i + rows], fixed[i:i + rows])
                      for i in range(0, len(states), rows)]).to(device)


def _certified(network: RecurrentNetwork, states: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(network.n_units, dtype=torch.float64)
    jacobian = (-eye + network.weights * network.rate_slope(fixed)[:, None, :]) / network.tau[:, None]
    lyapunov = lyapunov_functions(jacobian)
    e = states - fixed
    radius = (e[:, None, :] @ lyapunov.matrix @ e[:, :, None])[:, 0, 0].clamp_min(0).sqrt() * (1 + 1e-6)
    spread = lyapunov.inverse.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()  # s_j
    reach = radius[:, None] * spread
    lipschitz = network.slope_lipschitz(fixed - reach, fixed + reach)
    coupling = network.weights.abs() / network.tau[:, None]
    c = torch.linalg.vector_norm((lipschitz * spread**2 / 2) @ coupling.T, dim=-1)
    growth = 2 * lyapunov.largest.sqrt() ** 3 * c * radius
    return lyapunov.verified & torch.isfinite(growth) & (growth < lyapunov.decay)
