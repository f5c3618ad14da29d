"""Property test of the fixed-point solver on random small networks, checked independently with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rnn_ff import STATUSES, solve_fixed_points

# Weights up to |4|: a mix of networks that settle, diverge (excitatory loops above 1) and
# oscillate (inhibitory cycles); a short max_time keeps the timeouts cheap.
MAX_TIME = 100.0  # two blocks of the oscillation test (8 windows of 5 tau each)
# The combinatorial threshold-linear 3-cycle (eps = 0.25, delta = 0.5): a limit cycle, no stable fixed point.
CYCLE = np.array([[0.0, -1.5, -0.75], [-0.75, 0.0, -1.5], [-1.5, -0.75, 0.0]])


@st.composite
def networks(draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 6))
    scale = draw(st.floats(0.2, 4.0))
    weights = scale * draw(arrays(np.float64, (n, n), elements=st.floats(-1.0, 1.0)))
    tau = draw(arrays(np.float64, n, elements=st.floats(0.3, 2.0)))
    # Inputs on a 1e-3 grid: a drive far below the residual tolerance (1e-12, say) makes any state
    # near 0 pass as a fixed point, where stability is decided by which side of 0 a unit is on.
    grid = st.integers(-1000, 2000).map(lambda k: k / 1000)
    inputs = draw(arrays(np.float64, (draw(st.integers(1, 4)), n), elements=grid))
    return weights, tau, inputs


def check_solution(weights: np.ndarray, tau: np.ndarray, inputs: np.ndarray) -> None:
    result = solve_fixed_points(weights, inputs, tau=tau, max_time=MAX_TIME)
    assert len(result.status) == len(inputs) and set(result.status) <= set(STATUSES)
    for state, drive, status in zip(result.states.numpy(), inputs, result.status):
        if status != "converged":
            continue
        residual = np.abs(-state + weights @ np.maximum(state, 0.0) + drive).max()
        assert residual <= 1e-9 * (1.0 + np.abs(state).max()), f"not a fixed point: residual {residual:g}"
        jacobian = (-np.eye(len(state)) + weights * (state > 0)[None, :]) / tau[:, None]
        assert np.linalg.eigvals(jacobian).real.max() < 0, "converged on an unstable fixed point"


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(networks())
@example((CYCLE, np.ones(3), np.array([[1.0, 1.1, 0.9]])))
@example((np.array([[1.5, 0.0], [0.3, 0.2]]), np.array([1.0, 0.5]), np.array([[1.0, 0.0], [-1.0, 1.0]])))
def test_every_sample_gets_one_status_and_converged_ones_are_stable_fixed_points(network):
    check_solution(*network)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, derandomize=True, database=None)  # deterministic in CI
@given(networks())
def test_solver_properties_at_length(network):
    check_solution(*network)
