"""Property test of the fixed-point solver on random small networks, checked independently with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.integrate import solve_ivp

from rnn_ff import solve_fixed_points

# Weights up to |4|: a mix of networks that settle, diverge (excitatory loops above 1) and
# oscillate (inhibitory cycles); a short max_time keeps the timeouts cheap.
MAX_TIME = 100.0  # two blocks of the oscillation test (8 windows of 5 tau each)
# The combinatorial threshold-linear 3-cycle (eps = 0.25, delta = 0.5): a limit cycle, no stable fixed point.
CYCLE = np.array([[0.0, -1.5, -0.75], [-0.75, 0.0, -1.5], [-1.5, -0.75, 0.0]])


@st.composite
def networks(draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 6))
    scale = draw(st.floats(0.2, 4.0))
    # Weights below 1e-9 are 0: LSODA, the independent reference, returns NaN on a network of 1e-300
    # weights (its step control fails on states near 1e-303), a failure of the reference, not of rnn_ff.
    weight = st.floats(-1.0, 1.0).map(lambda w: w if abs(w) > 1e-9 else 0.0)
    weights = scale * draw(arrays(np.float64, (n, n), elements=weight))
    tau = draw(arrays(np.float64, n, elements=st.floats(0.3, 2.0)))
    # Inputs on a 1e-3 grid: a drive far below the residual tolerance (1e-12, say) makes any state
    # near 0 pass as a fixed point, where stability is decided by which side of 0 a unit is on.
    grid = st.integers(-1000, 2000).map(lambda k: k / 1000)
    inputs = draw(arrays(np.float64, (draw(st.integers(1, 4)), n), elements=grid))
    return weights, tau, inputs


def check_solution(weights: np.ndarray, tau: np.ndarray, inputs: np.ndarray) -> None:
    """Two-sided: a sample that a tight independent integration sees settle on a stable fixed point
    within half of max_time is `converged` there, and a `converged` sample is a stable fixed point
    that the same integration reaches in the end."""
    result = solve_fixed_points(weights, inputs, tau=tau, max_time=MAX_TIME)
    assert len(result.status) == len(inputs)
    for state, drive, status in zip(result.states.numpy(), inputs, result.status):
        settled = reference_fixed_point(weights, tau, drive, 0.5 * MAX_TIME * tau.max())
        if settled is not None:
            assert status == "converged", f"the reference settles on a stable fixed point; rnn_ff says {status}"
            np.testing.assert_allclose(state, settled, atol=1e-8 * (1 + np.abs(settled).max()))
        if status == "converged":
            residual = np.abs(-state + weights @ np.maximum(state, 0.0) + drive).max()
            assert residual <= 1e-9 * (1.0 + np.abs(state).max()), f"not a fixed point: residual {residual:g}"
            slowest = max_real_eigenvalue(weights, tau, state)
            assert slowest < 0, "converged on an unstable fixed point"
            # Long enough for 40 e-folds of the slowest mode at x* (a unit with self-excitation 0.99999
            # settles over millions of tau, as the certificate proves it will; LSODA takes milliseconds).
            end = integrate(weights, tau, drive, max(40 * MAX_TIME * tau.max(), 40 / -slowest))
            np.testing.assert_allclose(end, state, atol=1e-6 * (1 + np.abs(state).max()),
                                       err_msg="converged on a fixed point the trajectory does not reach")


def integrate(weights: np.ndarray, tau: np.ndarray, drive: np.ndarray, until: float) -> np.ndarray:
    """x(until) from x(0) = 0, by scipy's LSODA at tight tolerances (independent of rnn_ff); a diverging
    trajectory ends in inf or nan, which nothing below takes for a fixed point."""
    rhs = lambda t, x: (-x + weights @ np.maximum(x, 0.0) + drive) / tau  # noqa: E731
    with np.errstate(all="ignore"):
        return solve_ivp(rhs, (0.0, until), np.zeros(len(drive)), method="LSODA", rtol=1e-11, atol=1e-13).y[:, -1]


def max_real_eigenvalue(weights: np.ndarray, tau: np.ndarray, state: np.ndarray) -> float:
    return np.linalg.eigvals((-np.eye(len(state)) + weights * (state > 0)[None, :]) / tau[:, None]).real.max()


def reference_fixed_point(weights: np.ndarray, tau: np.ndarray, drive: np.ndarray, until: float) -> np.ndarray | None:
    """The stable fixed point the trajectory from rest has clearly settled on by `until`, else None:
    the exact fixed point of the linear region it is in, with every unit well off its threshold,
    stable with a margin, and the state already within 1e-7 of it."""
    end = integrate(weights, tau, drive, until)
    active = end > 0
    system = np.eye(len(end)) - weights * active[None, :]
    try:
        fixed = np.linalg.solve(system, drive)
    except np.linalg.LinAlgError:
        return None
    scale = 1 + np.abs(fixed).max()
    clear = np.all((fixed > 0) == active) and np.abs(fixed).min() > 1e-6 * scale
    if clear and max_real_eigenvalue(weights, tau, fixed) < -1e-3 and np.abs(end - fixed).max() < 1e-7 * scale:
        return fixed
    return None


def _wall_network(entries: dict[tuple[int, int], float]) -> np.ndarray:
    weights = np.zeros((6, 6))
    for (row, column), value in entries.items():
        weights[row, column] = value
    return weights


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(networks())
@example((CYCLE, np.ones(3), np.array([[1.0, 1.1, 0.9]])))
@example((np.array([[1.5, 0.0], [0.3, 0.2]]), np.array([1.0, 0.5]), np.array([[1.0, 0.0], [-1.0, 1.0]])))
@example((np.array([[0.99999, 0.0], [0.0, 0.0]]), np.ones(2), np.array([[0.001, 0.0]])))  # settles over ~4e6 tau
@example((np.array([[0.0, 1.0], [0.0, 0.0]]), np.ones(2), np.array([[0.0, 0.001]])))  # a Jordan block: no eigenbasis
# A self-exciting unit (gain 1.5) whose region's fixed point sits on its wall, and a transient that
# turns it on by 5e-5, within the integrator's jitter: the trajectory departs; it is not at x*.
@example((_wall_network({(1, 1): 1.5, (1, 2): 2.0, (2, 3): 0.75, (2, 5): -1.0, (3, 3): -2.0}), np.ones(6),
          np.array([[0.0, 0.0, 0.0, 0.002, 0.0, 0.001]])))
# The same wall, with an undamped rotation (a centre) on the other side: it oscillates.
@example((_wall_network({(1, 1): 2.0, (1, 3): 2.0, (1, 4): -2.0, (2, 3): 0.5, (2, 5): 2.0, (3, 5): -2.0,
                         (4, 1): 2.0, (4, 5): -2.0}), np.ones(6), np.array([[0.0, 0.0, 0.0, 0.002, 0.0, 0.001]])))
# A self-exciting unit (gain 1.09) pushed below its wall by a transient decays back onto it: x* has
# x1 = 0 exactly, stable from below, but the least push across the wall grows (LSODA's rounding gives it).
@example((_wall_network({(1, 1): 1.09375, (1, 4): -1.75, (4, 5): -1.75, (5, 5): 0.875}), np.ones(6),
          np.array([[0.0, 0.0, 0.0, 0.0, 0.001, 0.001]])))
# Drives of 1e-5: units 0 and 2 within the integrator's tolerance of their walls, in a stable region;
# switching them off there would skip the unstable region the trajectory goes through (it diverges).
@example((np.array([[0.9, 0, 0, 1, 0], [0, -0.5, 0.75, 0, 0], [1.5, 2, 0.9, -50, 0], [0, 0, 0, 0, -3], [0, 0, 0, 0, 0]]),
          np.array([1.0, 0.3, 0.3, 0.3, 1.0]), np.array([[0.0, -1e-4, 0.0, 3e-5, 1.02e-5]])))
def test_converged_exactly_when_an_independent_integration_settles_on_a_stable_fixed_point(network):
    check_solution(*network)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, derandomize=True, database=None)  # deterministic in CI
@given(networks())
def test_solver_properties_at_length(network):
    check_solution(*network)
