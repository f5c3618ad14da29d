"""Ring SSN task (Hennequin et al. 2018, Neuron 98:846, Fig. 4; github.com/ghennequin/neuron2018,
ring/prms.ml, ring/figure4.ml, generic_prms.ml): the network is the authors', its input is their
tuning curve, and its fixed points, from rnn_ff's solver and checked against scipy's LSODA, show the
published behaviour: contrast normalisation, an inhibition-stabilized regime, surround suppression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import SolverOptions, solve
from rnn_ff.tasks import TASKS, build_task
from rnn_ff.tasks.base import TaskConfigError
from rnn_ff.tasks.ring_ssn import (RingSSNConfig, RingSSNTask, decode_orientation, input_features, paper_drive,
                                   ring_ssn_network)

M = 50  # units per population (ring/prms.ml: m = 50)


def stimuli(orientations, contrasts, harmonics: int = 8) -> torch.Tensor:
    return input_features(torch.tensor(orientations, dtype=torch.float64),
                          torch.tensor(contrasts, dtype=torch.float64), harmonics)


def lsoda(network: RecurrentNetwork, inputs: torch.Tensor, t_end: float = 2.0) -> np.ndarray:
    """Rates at t_end (100 tau_E) from rest, by LSODA on tau x' = -x + W k [x]_+^n + h, per input."""
    w, tau = network.weights.numpy(), network.tau.numpy()
    k, n = network.activation_params["k"], network.activation_params["n"]
    rate = lambda x: k * np.maximum(x, 0) ** n  # noqa: E731
    ends = []
    for h in network.drive(inputs).numpy():
        path = solve_ivp(lambda t, x: (-x + w @ rate(x) + h) / tau, (0, t_end), np.zeros(len(h)), method="LSODA",
                         rtol=1e-11, atol=1e-13)
        ends.append(rate(path.y[:, -1]))
    return np.array(ends)


def with_extra_inhibitory_drive(network: RecurrentNetwork, extra: float) -> RecurrentNetwork:
    bias = network.bias.clone()
    bias[M:] += extra
    return RecurrentNetwork(network.weights, network.tau, network.input_matrix, bias, network.activation,
                            network.activation_params)


def test_the_network_and_its_input_are_the_authors():
    cfg = RingSSNConfig()
    network = ring_ssn_network(cfg)
    assert network.n_units == 2 * M and network.n_inputs == 2 * cfg.harmonics + 1
    assert network.activation == "power" and network.activation_params == {"k": 0.3, "n": 2.0}
    assert network.tau[:M].eq(0.02).all() and network.tau[M:].eq(0.01).all()
    w = network.weights
    # kron(W_2x2, z B): each block's rows sum to the 2 x 2 weight (z normalises the rows of B)
    for block, total in (((slice(0, M), slice(0, M)), 1.25), ((slice(0, M), slice(M, None)), -0.65),
                         ((slice(M, None), slice(0, M)), 1.2), ((slice(M, None), slice(M, None)), -0.5)):
        torch.testing.assert_close(w[block].sum(1), torch.full((M,), total, dtype=torch.float64))
    phi = 2 * math.pi * torch.arange(M, dtype=torch.float64) / M
    profile = torch.exp((torch.cos(phi[:, None] - phi[None]) - 1) / math.radians(45) ** 2)
    torch.testing.assert_close(w[:M, :M], 1.25 * profile / profile.sum(1).mean())
    # the Fourier-feature input reproduces baseline + c a_max exp((cos(phi_i - phi_s) - 1) / ell^2)
    task = RingSSNTask(cfg)
    inputs, labels = task.sample(256, torch.Generator().manual_seed(0))
    assert inputs.shape == (256, 17) and inputs.dtype == torch.float64
    assert ((labels["orientation"] >= 0) & (labels["orientation"] < math.pi)).all()
    assert ((labels["contrast"] >= 0) & (labels["contrast"] <= 1)).all()
    torch.testing.assert_close(inputs[:, 0], labels["contrast"])
    deviation = (network.drive(inputs) - paper_drive(cfg, labels["orientation"], labels["contrast"])).abs().max()
    assert deviation < 1e-7  # mV, against a peak drive of 22 mV
    assert paper_drive(cfg, torch.tensor([math.pi / 2]), torch.tensor([1.0]))[0, 25].item() == pytest.approx(22.0)


def test_fixed_points_agree_with_lsoda_from_rest_and_peak_at_the_stimulus():
    task = RingSSNTask(RingSSNConfig())
    orientations, contrasts = [0.3, 1.0, 2.0, 1.5], [0.3, 0.6, 1.0, 0.45]
    inputs = stimuli(orientations, contrasts)
    result = solve(task.network, inputs, SolverOptions())
    assert result.status == ["converged"] * 4
    np.testing.assert_allclose(result.rates.numpy(), lsoda(task.network, inputs), rtol=1e-6)
    assert (result.states > 0).all()  # every unit above threshold: the code's k u^n and the paper's k [u]_+^n agree
    decoded, _ = decode_orientation(result.rates[:, :M])
    np.testing.assert_allclose(decoded.numpy(), orientations, atol=1e-9)  # the E bump sits on the stimulus
    metrics = task.metrics(inputs, {"orientation": torch.tensor(orientations, dtype=torch.float64),
                                    "contrast": torch.tensor(contrasts, dtype=torch.float64)},
                           result.rates, result.rates)
    assert metrics["peak_orientation_error"] == 0 and metrics["peak_rate_error"] == 0
    assert metrics["stimulus_orientation_error"] < 1e-6


def test_the_peak_e_rate_grows_sublinearly_with_contrast():
    """The SSN's normalisation: equal steps of contrast (equal steps of drive) raise the E rate at
    the stimulus orientation by less and less, while the drive there grows linearly."""
    task = RingSSNTask(RingSSNConfig())
    contrasts = np.linspace(0.0, 1.0, 9)
    inputs = stimuli([math.pi / 2] * len(contrasts), contrasts)  # on unit 25's preferred orientation
    result = solve(task.network, inputs, SolverOptions())
    assert result.status == ["converged"] * len(contrasts)
    peak = result.rates[:, 25].numpy()
    np.testing.assert_allclose(peak, result.rates[:, :M].amax(1).numpy())
    assert (np.diff(peak) > 0).all() and (np.diff(peak, 2) < 0).all()
    assert peak[-1] - peak[4] < 0.5 * (peak[4] - peak[0])  # the second half of the contrast range adds < half
    np.testing.assert_allclose(peak[[2, 8]], lsoda(task.network, inputs[[2, 8]])[:, 25], rtol=1e-6)


@pytest.mark.parametrize("baseline, contrast, isn", [(2.0, 1.0, True), (0.0, 0.02, False)])
def test_strong_contrast_is_inhibition_stabilized(baseline, contrast, isn):
    """At strong contrast the E subnetwork alone is unstable at the fixed point (W_EE f'(x_E) has an
    eigenvalue > 1) and extra drive to every I unit lowers their mean rate (the paradoxical
    response); a faint stimulus without the baseline is below that regime and neither holds."""
    task = RingSSNTask(RingSSNConfig(baseline=baseline))
    inputs = stimuli([1.2], [contrast])
    before = solve(task.network, inputs, SolverOptions())
    after = solve(with_extra_inhibitory_drive(task.network, 0.5), inputs, SolverOptions())
    assert before.status == after.status == ["converged"]
    assert (task.e_subnetwork_gain(before.rates).item() > 1) == isn
    assert (after.rates[0, M:].mean() < before.rates[0, M:].mean()).item() == isn
    reference = lsoda(with_extra_inhibitory_drive(task.network, 0.5), inputs)
    np.testing.assert_allclose(after.rates.numpy(), reference, rtol=1e-6)


def test_a_wider_stimulus_suppresses_the_centre():
    """Surround suppression on the ring: the E unit at the stimulus orientation gets the same drive
    (2 + 20 mV) whatever the stimulus width, yet fires less as the stimulus widens and recruits more
    of the ring (and its inhibition)."""
    rates = []
    for width in (30.0, 60.0, 90.0):
        network = ring_ssn_network(RingSSNConfig(stimulus_width=width, harmonics=25))
        inputs = stimuli([math.pi / 2], [1.0], harmonics=25)
        torch.testing.assert_close(network.drive(inputs)[0, 25], torch.tensor(22.0, dtype=torch.float64))
        result = solve(network, inputs, SolverOptions())
        assert result.status == ["converged"]
        rates.append(result.rates[0, 25].item())
    assert rates[0] > 1.3 * rates[1] > 1.3 * 1.2 * rates[2], rates


def test_metrics_measure_where_the_ff_puts_the_peak():
    task = RingSSNTask(RingSSNConfig())
    inputs, labels = task.sample(32, torch.Generator().manual_seed(1))
    labels["contrast"][:4] = 0.01  # below decode_min_contrast: left out of the peak metrics
    target = torch.rand(32, 2 * M, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    phi = 2 * math.pi * torch.arange(M, dtype=torch.float64) / M
    target[:, :M] = 3 + 10 * torch.exp(3 * (torch.cos(phi - 2 * labels["orientation"][:, None]) - 1))
    shifted = target.clone()
    shifted[:, :M] = target[:, :M].roll(1, dims=1)  # one unit along the ring: 180 / 50 = 3.6 degrees
    shifted[:4, :M] = 0.0  # the left-out inputs do not count, however wrong
    metrics = task.metrics(inputs, labels, shifted, target)
    assert metrics["peak_orientation_error"].item() == pytest.approx(3.6)
    assert metrics["peak_orientation_error_max"].item() == pytest.approx(3.6)
    assert metrics["stimulus_orientation_error"].item() == pytest.approx(3.6)
    assert task.metrics(inputs, labels, target, target)["peak_orientation_error"] == 0
    labels["contrast"][:] = 0.0
    assert math.isnan(task.metrics(inputs, labels, shifted, target)["peak_orientation_error"].item())
    assert {"excitatory", "inhibitory"} == set(task.populations())


def test_a_faint_stimulus_converges_with_the_default_solver_options():
    """dopri5 at the default rtol 1e-4 jitters ~1e-3 about this stable fixed point, outside the certificate's
    Lyapunov ball (~1e-4): it timed out until such a sample integrated on at a finer tolerance."""
    task = RingSSNTask(RingSSNConfig())
    inputs = stimuli([2.9], [0.15])
    assert solve(task.network, inputs, SolverOptions(rtol=1e-6, atol=1e-8)).status == ["converged"]
    result = solve(task.network, inputs, SolverOptions())
    assert result.status == ["converged"]
    torch.testing.assert_close(result.rates, torch.from_numpy(lsoda(task.network, inputs)), atol=1e-7, rtol=1e-7)


def test_registered_and_built_by_name():
    assert TASKS["ring_ssn"] == (RingSSNConfig, RingSSNTask)
    assert isinstance(build_task(RingSSNConfig()), RingSSNTask)


@pytest.mark.parametrize("key, value", [("harmonics", 0), ("harmonics", 26), ("input_low", -0.1),
                                        ("input_low", 1.0), ("w_ei", -0.65), ("tau_inhibitory", 0.0),
                                        ("stimulus_width", math.inf), ("n_per_population", 2)])
def test_invalid_config_names_the_key(key, value):
    with pytest.raises(TaskConfigError, match=f"task.{key}="):
        RingSSNTask(RingSSNConfig(**{key: value}))
