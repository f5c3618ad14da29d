"""Networks people bring: supralinear (SSN) and sigmoid (Wilson-Cowan) activations, the
certificate for smooth activations, and the published qualitative results of these models,
each checked against scipy (LSODA at rtol 1e-11), not against rnn_ff's own numbers.

Parameters: the two-population SSN of Hennequin, Ahmadian, Rubin, Lengyel & Miller (2018, Neuron
98:846, Fig. 2; their code github.com/ghennequin/neuron2018): k = 0.3, n = 2, W_EE 1.25, W_EI 0.65,
W_IE 1.2, W_II 0.5, tau_E 20 ms, tau_I 10 ms, the same drive h to E and I. The Wilson-Cowan E/I
pair of Neuromatch Academy's W2D4 tutorial, its limit-cycle parameter set (tau_E 1, a_E 1.2,
theta_E 2.8, tau_I 2, a_I 1, theta_I 4, w_EE 6.4, w_EI 4.8, w_IE 6, w_II 1.2).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from rnn_ff.network import NetworkError, RecurrentNetwork
from rnn_ff.solver import SolverOptions, solve, solve_fixed_points
from rnn_ff.tasks import TaskConfigError
from rnn_ff.tasks.custom import ActivationParamsConfig, CustomConfig, custom_network

SSN_TAU = torch.tensor([0.02, 0.01], dtype=torch.float64)
SSN_POWER = {"k": 0.3, "n": 2.0}


def ssn_weights(w_ee: float = 1.25, w_ei: float = 0.65) -> torch.Tensor:
    return torch.tensor([[w_ee, -w_ei], [1.2, -0.5]], dtype=torch.float64)


def ssn_rates(weights: torch.Tensor, drives) -> tuple[list[str], np.ndarray]:
    result = solve_fixed_points(weights, torch.tensor(drives, dtype=torch.float64), tau=SSN_TAU,
                                activation="power", activation_params=SSN_POWER)
    return result.status, result.rates.numpy()


def ssn_reference(weights: torch.Tensor, drive, t_end: float = 5.0) -> np.ndarray:
    """Rates at t_end from rest, by LSODA on tau x' = -x + W k [x]_+^2 + h (r = k [x]_+^2); a
    trajectory that runs away is stopped once |x| passes 1e6."""
    w, tau, h = weights.numpy(), SSN_TAU.numpy(), np.asarray(drive, dtype=float)
    rate = lambda x: SSN_POWER["k"] * np.maximum(x, 0) ** 2  # noqa: E731
    runaway = lambda t, x: np.abs(x).max() - 1e6  # noqa: E731
    runaway.terminal = True
    path = solve_ivp(lambda t, x: (-x + w @ rate(x) + h) / tau, (0, t_end), np.zeros(2), method="LSODA",
                     rtol=1e-11, atol=1e-13, events=runaway)
    return rate(path.y[:, -1])


# -- activations --------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, params, message", [
    ("power", {"k": 0.0}, "activation_params.k=0.0 is invalid: must be a finite number > 0"),
    ("power", {"n": 0.5}, "activation_params.n=0.5 is invalid: must be a finite number >= 1"),
    ("power", {"k": math.nan}, "activation_params.k=nan is invalid"),
    ("sigmoid", {"gain": -1.0}, "activation_params.gain=-1.0 is invalid: must be a finite number > 0"),
    ("sigmoid", {"k": 1.0}, "activation_params.k is not a parameter of 'sigmoid'; its parameters: ['gain', 'threshold']"),
    ("softplus", {}, "activation='softplus' is unknown; allowed: ['power', 'relu', 'sigmoid', 'tanh']"),
])
def test_meaningless_activations_fail_naming_the_key(activation, params, message):
    with pytest.raises(NetworkError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        RecurrentNetwork(torch.eye(2, dtype=torch.float64), torch.ones(2), torch.eye(2, dtype=torch.float64),
                         torch.zeros(2), activation, params)
    cfg = CustomConfig(weights="never-read.npy", activation=activation,
                       activation_params=ActivationParamsConfig(**params))
    with pytest.raises(TaskConfigError, match="task." + message.split(" ")[0].split("=")[0]):
        custom_network(cfg)  # before the weight file is looked for


def test_the_slopes_are_the_derivatives_of_the_rates():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for activation, params in (("tanh", {}), ("power", {"k": 0.04, "n": 2.0}), ("power", {"k": 2.0, "n": 3.5}),
                               ("sigmoid", {"gain": 1.3, "threshold": 4.0})):
        network = RecurrentNetwork(torch.zeros(1, 1, dtype=torch.float64), torch.ones(1), torch.eye(1, dtype=torch.float64),
                                   torch.zeros(1), activation, params)
        numeric = torch.func.vmap(torch.func.grad(lambda v: network.rate(v[None])[0]))(x)
        torch.testing.assert_close(network.rate_slope(x[:, None])[:, 0], numeric)
    sigmoid = RecurrentNetwork(torch.zeros(1, 1, dtype=torch.float64), torch.ones(1), torch.eye(1, dtype=torch.float64),
                               torch.zeros(1), "sigmoid", {"gain": 1.3, "threshold": 4.0})
    assert sigmoid.rate(torch.zeros(1, 1, dtype=torch.float64)).item() == 0.0  # Wilson-Cowan's shift: f(0) = 0


# -- the certificate for smooth activations ----------------------------------------------------
# x' = -x + 2 tanh(x) + h just past its fold: a stable point x_s and a saddle x_u 1e-3 below it
# (a third, stable point far below). A state 2e-4 below the saddle is within accept_distance of
# x_s, yet it leaves, slowly, for the far point. (Newton's polish from there finds the saddle, so
# the old rule did not accept x_s either; the random multistable networks below tell the two apart.)
def fold() -> tuple[RecurrentNetwork, float, float]:
    x_fold = math.acosh(math.sqrt(2))  # where 2 sech^2 x = 1
    h = x_fold - 2 * math.tanh(x_fold) + math.tanh(x_fold) * 5e-4**2  # g(x) = x - 2 tanh x: g'' = 2 tanh at the fold
    g = lambda x: x - 2 * math.tanh(x) - h  # noqa: E731
    network = RecurrentNetwork(torch.tensor([[2.0]], dtype=torch.float64), torch.ones(1),
                               torch.eye(1, dtype=torch.float64), torch.tensor([h], dtype=torch.float64), "tanh")
    return network, brentq(g, x_fold, x_fold + 0.1), brentq(g, x_fold - 0.1, x_fold)


def from_states(network: RecurrentNetwork, starts, **options):
    starts = torch.tensor(starts, dtype=torch.float64).reshape(-1, network.n_units)
    return solve(network, torch.zeros(len(starts), network.n_inputs, dtype=torch.float64), SolverOptions(**options),
                 initial_states=starts)


def test_a_state_close_to_a_stable_point_but_beyond_a_saddle_is_not_accepted():
    network, stable, saddle = fold()
    assert 0.9e-3 < stable - saddle < 1.1e-3
    beyond, before = saddle - 2e-4, stable - 2e-4
    h = network.bias.item()
    escape = solve_ivp(lambda t, x: -x + 2 * np.tanh(x) + h, (0, 30000), [beyond], method="LSODA", rtol=1e-11,
                       atol=1e-13).y[0, -1]
    assert escape < -1  # the reference leaves for the far stable point
    assert stable - beyond <= 1e-3 * (1 + stable)  # the old acceptance distance
    probe = from_states(network, [beyond, before], window=1e-9, max_time=2e-9)
    assert probe.status == ["timeout", "converged"]
    assert probe.states[1].item() == pytest.approx(stable, abs=1e-12)
    assert from_states(network, [beyond]).status[0] in ("timeout", "converged")
    result = from_states(network, [beyond], max_time=30000)
    assert result.status == ["converged"] and result.states[0].item() == pytest.approx(escape, abs=1e-8)


def test_random_multistable_tanh_networks_accept_only_states_that_converge_to_the_answer():
    """Strong random weights give several attractors. Every state, far or near, gets Newton's polish
    (accept_distance 1) and is judged at once; each accepted one must reach its answer in the
    reference. (The old rule, "close to a stable x*", accepted 102 of these states, 3 wrongly.)"""
    generator = torch.Generator().manual_seed(0)
    accepted_states = 0
    for _ in range(8):
        weights = 3.0 * torch.randn(3, 3, generator=generator, dtype=torch.float64) / math.sqrt(3)
        drive = 0.3 * torch.randn(3, generator=generator, dtype=torch.float64)
        network = RecurrentNetwork(weights, torch.ones(3), torch.eye(3, dtype=torch.float64), drive, "tanh")
        far = 1.5 * torch.randn(16, 3, generator=generator, dtype=torch.float64)
        answers = from_states(network, far.numpy())
        near = answers.states[answers.converged]
        near = near + 0.2 * torch.randn(len(near), 3, generator=generator, dtype=torch.float64)
        starts = torch.cat([far, near]).numpy()
        result = from_states(network, starts, window=1e-9, max_time=2e-9, accept_distance=1.0)
        w, h = weights.numpy(), drive.numpy()
        for start, answer in zip(starts[result.converged.numpy()], result.states[result.converged].numpy()):
            end = solve_ivp(lambda t, x: -x + w @ np.tanh(x) + h, (0, 300), start, method="LSODA", rtol=1e-11,
                            atol=1e-13).y[:, -1]
            np.testing.assert_allclose(end, answer, atol=1e-6)
            accepted_states += 1
    assert accepted_states >= 5


# -- the SSN: published qualitative results ---------------------------------------------------

def test_the_ssn_input_output_curve_is_supralinear_then_sublinear():
    drives = np.linspace(0, 20, 41)
    status, rates = ssn_rates(ssn_weights(), np.repeat(drives[:, None], 2, 1))
    assert status == ["converged"] * len(drives)
    np.testing.assert_allclose(rates[[4, 20, 40]], [ssn_reference(ssn_weights(), [h, h]) for h in (2, 10, 20)],
                               rtol=1e-7)
    curvature = np.diff(rates[:, 0], 2)
    assert (curvature[:3] > 0).all() and (curvature[4:] < 0).all()  # convex to h = 1.5, concave from h = 2.5


@pytest.mark.parametrize("w_ee, paradoxical", [(1.25, True), (0.5, False)])
def test_an_inhibition_stabilized_ssn_responds_paradoxically(w_ee, paradoxical):
    """More drive to I lowers I's steady rate exactly when the E subnetwork alone is unstable at the
    fixed point (ISN: W_EE n k^(1/n) r_E^((n-1)/n) > 1); lowering W_EE below that boundary ends it."""
    weights = ssn_weights(w_ee)
    status, rates = ssn_rates(weights, [[10.0, 10.0], [10.0, 10.5]])
    assert status == ["converged", "converged"]
    np.testing.assert_allclose(rates, [ssn_reference(weights, d) for d in ([10.0, 10.0], [10.0, 10.5])], rtol=1e-7)
    isn_index = w_ee * 2 * math.sqrt(SSN_POWER["k"] * rates[0, 0])
    assert (isn_index > 1) == paradoxical
    assert (rates[1, 1] < rates[0, 1]) == paradoxical


def test_runaway_supralinear_excitation_diverges_alone_in_its_batch():
    """With W_EI W_IE < W_EE W_II inhibition cannot hold strong drive: runaway (LSODA blows up too)."""
    weights = ssn_weights(w_ei=0.5)
    status, rates = ssn_rates(weights, [[0.5, 0.5], [1.0, 1.0], [5.0, 5.0]])
    assert status == ["converged", "converged", "diverged"]
    np.testing.assert_allclose(rates[:2], [ssn_reference(weights, [h, h]) for h in (0.5, 1.0)], rtol=1e-7)
    assert ssn_reference(weights, [5.0, 5.0]).max() > 1e11  # k (1e6)^2: stopped at |x| = 1e6


# -- Wilson-Cowan: a stable fixed point, then a limit cycle, then a fixed point again ----------
# The rate form tau r' = -r + F(W r + I), F_i(u) = S(a_i (u - theta_i)) - S(-a_i theta_i), has the
# fixed points (and, for two populations, the local stability) of the voltage form with x = W r + I.
# With y_i = a_i (x_i - theta_i) every unit shares one rate function, S(y) - 1/2 (our sigmoid with
# gain 1, threshold 0), the per-unit offsets going into the bias.
WC_TAU, WC_GAIN, WC_THRESHOLD = np.array([1.0, 2.0]), np.array([1.2, 1.0]), np.array([2.8, 4.0])
WC_W = np.array([[6.4, -4.8], [6.0, -1.2]])


def logistic(x):
    return 1 / (1 + np.exp(-x))


def wilson_cowan(drive_e: float) -> tuple[RecurrentNetwork, np.ndarray]:
    offset = logistic(-WC_GAIN * WC_THRESHOLD)
    drive = np.array([drive_e, 0.0])
    bias = WC_GAIN * (drive - WC_THRESHOLD) + WC_GAIN * (WC_W @ (0.5 - offset))
    network = RecurrentNetwork(torch.tensor(WC_GAIN[:, None] * WC_W), torch.tensor(WC_TAU),
                               torch.eye(2, dtype=torch.float64), torch.tensor(bias), "sigmoid",
                               {"gain": 1.0, "threshold": 0.0})
    return network, 0.5 - offset  # rates = network rates + this


@pytest.mark.parametrize("drive_e, expected", [(0.5, "converged"), (0.8, "oscillating"), (0.9, "oscillating"),
                                               (1.2, "converged")])
def test_wilson_cowan_oscillates_only_in_its_limit_cycle_range(drive_e, expected):
    network, shift = wilson_cowan(drive_e)
    result = solve(network, torch.zeros(1, 2, dtype=torch.float64))
    assert result.status == [expected]
    offset = logistic(-WC_GAIN * WC_THRESHOLD)
    rate = lambda r: logistic(WC_GAIN * (WC_W @ r + np.array([drive_e, 0.0]) - WC_THRESHOLD)) - offset  # noqa: E731
    path = solve_ivp(lambda t, r: (-r + rate(r)) / WC_TAU, (0, 400), np.zeros(2), method="LSODA", rtol=1e-11,
                     atol=1e-13, t_eval=np.linspace(300, 400, 2001)).y
    swing = np.ptp(path, axis=1).max()
    if expected == "converged":
        assert swing < 1e-8
        np.testing.assert_allclose(result.rates[0].numpy() + shift, path[:, -1], atol=1e-8)
    else:
        assert swing > 0.1  # the reference keeps cycling
