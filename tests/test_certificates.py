"""Adversarial cases for `converged`: each answer is checked against an independent reference
computed here (scipy's LSODA at tight tolerances, or scipy's matrix exponential of the region's
linear flow), never against the solver's own numbers.

A ReLU network is linear on each region (active set S); while a trajectory stays in one region
it is exactly that region's linear flow, so a reference that follows the linear flow and checks
every unit's side of its threshold tells whether the trajectory leaves the region.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import SolverOptions, solve


def network_of(weights, tau, bias) -> RecurrentNetwork:
    weights = torch.tensor(weights, dtype=torch.float64)
    n = len(weights)
    return RecurrentNetwork(weights, torch.as_tensor(tau, dtype=torch.float64).expand(n).clone(),
                            torch.eye(n, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64))


def with_fixed_point(weights, star, tau=1.0) -> RecurrentNetwork:
    """The network whose bias makes `star` a fixed point (star = W relu(star) + b)."""
    weights, star = np.asarray(weights, dtype=float), np.asarray(star, dtype=float)
    return network_of(weights.tolist(), tau, (star - weights @ np.maximum(star, 0)).tolist())


def lsoda(network: RecurrentNetwork, start: np.ndarray, t_end: float, points: int = 0):
    """The network's trajectory from `start` (scipy LSODA, rtol 1e-11): (times, states (N, T))."""
    w, tau, bias = network.weights.numpy(), network.tau.numpy(), network.bias.numpy()
    times = np.linspace(0.0, t_end, points) if points else None
    solution = solve_ivp(lambda t, x: (-x + w @ np.maximum(x, 0) + bias) / tau, (0.0, t_end), start,
                         method="LSODA", rtol=1e-11, atol=1e-13, t_eval=times)
    assert solution.success, solution.message
    return solution.t, solution.y


def solve_from(network: RecurrentNetwork, starts: np.ndarray, **options):
    starts = torch.tensor(np.atleast_2d(starts), dtype=torch.float64)
    inputs = torch.zeros(len(starts), network.n_inputs, dtype=torch.float64)  # the drive is the bias
    return solve(network, inputs, SolverOptions(**options), initial_states=starts)


def judged_at_once(network: RecurrentNetwork, starts: np.ndarray):
    """The verdict on `starts` themselves: one window so short that the state does not move."""
    return solve_from(network, starts, window=1e-9, max_time=2e-9)


# -- a strongly non-normal stable region ------------------------------------------------------
# Unit 1 (self-inhibited) drives unit 0 through a weight of 2000; units 0 and 2 inhibit each
# other, so the network has two stable states, A = (0.5, 1, -0.5) and B = (-0.5, 1, 0.5). Region
# {0, 1} is stable (eigenvalues -1 and -1.5) but non-normal: a deviation of unit 1 by -1.9e-3
# (well within accept_distance of A, 260 x that distance from A's walls) swings unit 0 by 1.2
# before it decays, across its threshold, and hands the network to unit 2: the trajectory ends
# at B. The old acceptance rule ("close" to a stable x*, far from its walls) accepted A.
FLIP_FLOP = ([[0.0, 2000.0, -2.0], [0.0, -0.5, 0.0], [-2.0, 0.0, 0.0]], [0.5, 1.0, -0.5])
STATE_A, STATE_B = np.array([0.5, 1.0, -0.5]), np.array([-0.5, 1.0, 0.5])


def test_a_state_close_to_a_non_normal_attractor_but_bound_elsewhere_is_not_accepted_there():
    network = with_fixed_point(*FLIP_FLOP)
    start = STATE_A + np.array([0.0, -1.9e-3, 0.0])
    _, path = lsoda(network, start, 200.0)
    np.testing.assert_allclose(path[:, -1], STATE_B, atol=1e-9)  # the reference goes to B
    assert path[0].min() < -0.5  # after unit 0 swung across its threshold
    assert judged_at_once(network, start).status == ["timeout"]  # not converged at A
    result = solve_from(network, start)
    assert result.status == ["converged"]
    np.testing.assert_allclose(result.states[0].numpy(), STATE_B, atol=1e-12)


# -- a fast-rotating complex pair near a region wall -----------------------------------------
# E (0) and I (1) rotate at 50 rad/tau (eigenvalues -0.95 +- 50i) around x*_E = 0.01; unit 2
# (fast, tau 0.01) sits 1e-3 below threshold, held off by E. If E dips, unit 2 switches on,
# inhibits E (weight 200) for good, and the network settles at another fixed point.
def fast_spiral() -> tuple[RecurrentNetwork, np.ndarray]:
    star = np.array([0.01, 0.5, -1e-3])
    return with_fixed_point([[1.0, -50.0, -200.0], [50.0, -0.9, 0.0], [-200.0, 0.0, 0.0]], star,
                            tau=[1.0, 1.0, 0.01]), star


def stays_in_region(network: RecurrentNetwork, star: np.ndarray, starts: np.ndarray, t_end: float,
                    dt: float) -> np.ndarray:
    """Whether the linear flow of the region of `star` from each start (rows) keeps every unit on
    x*'s side of its threshold at every step of dt up to t_end (scipy's matrix exponential)."""
    active = star > 0
    tau = network.tau.numpy()
    flow = (-np.eye(len(star)) + network.weights.numpy() * active[None, :]) / tau[:, None]
    step = expm(flow * dt)
    deviation, inside = (starts - star).T, np.ones(len(starts), dtype=bool)
    for _ in range(int(t_end / dt)):
        deviation = step @ deviation
        state = star[:, None] + deviation
        inside &= np.where(active[:, None], state > 0, state <= 0).all(0)
    return inside


def test_fast_rotation_near_a_wall_is_certified_only_where_the_path_stays_in_the_region():
    network, star = fast_spiral()
    rng = np.random.default_rng(0)
    starts = star + 8e-6 * rng.uniform(-1, 1, (200, 3)) * np.array([1.0, 1.0, 0.0])
    accepted = judged_at_once(network, starts).converged.numpy()
    inside = stays_in_region(network, star, starts, t_end=6.0, dt=2e-4)  # |e| has decayed 300x by then
    assert not (accepted & ~inside).any(), f"accepted although the path leaves: {np.flatnonzero(accepted & ~inside)}"
    assert accepted.sum() >= 10 and (~inside).sum() >= 10, (accepted.sum(), (~inside).sum())  # neither side empty
    # Integrated on from there, every start gets the fixed point the reference trajectory ends at.
    chosen = np.concatenate([np.flatnonzero(~inside)[:4], np.flatnonzero(inside)[:2]])
    result = solve_from(network, starts[chosen])
    assert result.status == ["converged"] * len(chosen)
    for i, start in enumerate(starts[chosen]):
        _, path = lsoda(network, start, 60.0)
        np.testing.assert_allclose(result.states[i].numpy(), path[:, -1], atol=1e-8)


# -- lightly damped stable spirals -----------------------------------------------------------
# A winner E (0) with self-excitation and its inhibitor I (1): region {E, I} has eigenvalues
# -0.0005 +- 1.12i, so the oscillation decays over thousands of tau; I swings nine times as far
# as E. The old code called every one of these `oscillating` at 40 tau.
def lopsided_spiral(star=(1.0, 5.0)) -> tuple[RecurrentNetwork, np.ndarray]:
    return with_fixed_point([[2.0 - 1e-3, -0.5], [4.5, 0.0]], star), np.array(star)


def test_a_lightly_damped_spiral_that_stays_in_its_region_converges():
    network, star = lopsided_spiral()
    eigenvalues = np.linalg.eigvals(-np.eye(2) + network.weights.numpy())
    assert -1e-3 < eigenvalues.real.max() < 0  # stable, barely
    starts = star + np.array([[0.3, 0.0], [0.5, 0.0], [0.7, 0.0]])
    for start in starts:  # the reference stays in the region {E, I} for 3000 tau: a decaying linear spiral
        assert lsoda(network, start, 3000.0)[1].min() > 0
    result = solve_from(network, starts)
    assert result.status == ["converged"] * 3
    np.testing.assert_allclose(result.states.numpy(), np.tile(star, (3, 1)), atol=1e-12)


def test_a_lightly_damped_spiral_that_crosses_a_threshold_is_never_called_oscillating():
    """Early turns take E below threshold (the reference shows it, and its amplitude decaying):
    the solver may integrate on until the state is certified, or stop with `timeout`, but a
    decaying oscillation is not a limit cycle."""
    network, star = lopsided_spiral(star=(1.0, 1.0))
    start = star + np.array([0.3, 0.0])
    times, path = lsoda(network, start, 1200.0, points=120001)
    assert path[1].min() < 0  # I crosses its threshold early on
    early, late = path[:, times < 100], path[:, times > 1100]
    assert np.ptp(late, 1).max() < 0.9 * np.ptp(early, 1).max()  # and the swing decays
    result = solve_from(network, start)
    assert result.status[0] in ("converged", "timeout")
    if result.status[0] == "converged":
        np.testing.assert_allclose(result.states[0].numpy(), star, atol=1e-12)


# -- a defective region ------------------------------------------------------------------------
def test_a_feed_forward_chain_whose_region_has_no_eigenbasis_converges():
    """Units in a chain, each driving the next with weight 2: the region's block -I + W is one
    Jordan block (eigenvalue -1, a single eigenvector), so no eigendecomposition certifies it; the
    region's quadratic Lyapunov function does (hypothesis found W = [[0, 1], [0, 0]] timing out)."""
    weights = np.diag([2.0, 2.0, 2.0], k=1)
    network = network_of(weights.tolist(), 1.0, [0.0, 0.0, 0.0, 0.0])
    inputs = torch.tensor([[0.1, 0.2, -0.3, 0.4], [1e-3, 0.0, 0.0, 1e-3]], dtype=torch.float64)
    result = solve(network, inputs, SolverOptions(max_time=200))
    assert result.status == ["converged", "converged"]
    for state, drive in zip(result.states.numpy(), inputs.numpy()):
        network.bias = torch.tensor(drive)
        _, path = lsoda(network, np.zeros(4), 100.0)
        np.testing.assert_allclose(state, path[:, -1], atol=1e-9)


def test_a_fixed_point_on_a_wall_within_the_integrators_jitter_converges_to_lsodas():
    """The 200-unit inhibition-stabilized network of issue 21 (80% E, spectral radius 0.9), input 4,915 of
    a 5,120-input draw: unit 168 settles 5.7e-7 below threshold while dopri5 at the default rtol 1e-4
    jitters by 4e-5 about the fixed point, so the state keeps crossing that wall and its own region's
    fixed point lies on the other side. It timed out (1,000 tau) until such a state was moved off the
    wall (within the integrator's tolerance) and integrated on at a finer tolerance."""
    from rnn_ff.random_networks import random_ei_network

    network = random_ei_network(200, spectral_radius=0.9)
    inputs = torch.rand(4916, 200, generator=torch.Generator().manual_seed(0), dtype=torch.float64)[4915:]
    result = solve(network, inputs, SolverOptions())
    assert result.status == ["converged"] and result.settle_time.item() <= 100
    x_star = result.states[0].numpy()
    assert -1e-6 < x_star[168] < 0
    driven = RecurrentNetwork(network.weights, network.tau, network.input_matrix, network.drive(inputs)[0])
    _, path = lsoda(driven, np.zeros(200), 2000.0)
    np.testing.assert_allclose(path[:, -1], x_star, atol=1e-8)
