"""Balanced E/I task (Rosenbaum 2024, *Modeling Neural Circuits Made Simple with Python*; the book's code,
github.com/RobertRosenbaum/ModelingNeuralCircuits, RecurrentSpikingNet.ipynb, EIFfIcurve.ipynb and
DynamicalMeanField.ipynb): the network is the rate model on the book's spiking-network connectivity, its
fixed points are scipy LSODA's from rest, and they show the published behaviour: a balanced,
inhibition-stabilized state whose population rates are the book's mean field's and grow linearly with the
external rate, and the paradoxical response of inhibition-stabilized networks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import SolverOptions, solve
from rnn_ff.solver.global_stability import prove_global_stability
from rnn_ff.tasks import TASKS, build_task
from rnn_ff.tasks.balanced import BalancedConfig, BalancedTask, balanced_network, book_connectivity
from rnn_ff.tasks.base import TaskConfigError
from rnn_ff.training import train
from tests.conftest import TINY, TINY_RUN, compose_config, run_script

NE, NI = 800, 200
G, THETA = 0.00358, 9.64


@pytest.fixture(scope="module")
def task() -> BalancedTask:
    return BalancedTask(BalancedConfig())


@pytest.fixture(scope="module")
def settled(task):
    """Four inputs of the task's distribution, solved with the defaults."""
    inputs, _ = task.sample(4, torch.Generator().manual_seed(0))
    return inputs, solve(task.network, inputs, SolverOptions())


def lsoda(network: RecurrentNetwork, inputs: torch.Tensor, t_end: float) -> np.ndarray:
    """States at t_end (ms) from rest, by LSODA (with the region's exact Jacobian), per input."""
    w, tau = network.weights.numpy(), network.tau.numpy()
    ends = []
    for h in network.drive(inputs).numpy():
        path = solve_ivp(lambda t, x: (-x + w @ np.maximum(x, 0) + h) / tau, (0, t_end), np.zeros(len(h)),
                         method="LSODA", rtol=1e-10, atol=1e-12,
                         jac=lambda t, x: (w * (x > 0)[None] - np.eye(len(x))) / tau[:, None])
        assert path.success, path.message
        ends.append(path.y[:, -1])
    return np.array(ends)


def test_the_connectivity_is_the_books_draw():
    """The book's notebook, line for line (np.random.seed(6); the external spike trains; then the six
    connection matrices), gives the same matrices."""
    np.random.seed(6)
    rx, dt, steps = 5 / 1000, 0.1, len(np.arange(0, 200, 0.1))
    np.random.binomial(1, rx * dt, (800, steps))
    jex = 30.0 * np.random.binomial(1, .2, (NE, 800))
    jee = 12.0 * np.random.binomial(1, .2, (NE, NE))
    jei = -45.0 * np.random.binomial(1, .2, (NE, NI))
    jix = 20.0 * np.random.binomial(1, .2, (NI, 800))
    jie = 35.0 * np.random.binomial(1, .2, (NI, NE))
    jii = -70.0 * np.random.binomial(1, .2, (NI, NI))
    recurrent, external = book_connectivity(BalancedConfig())
    np.testing.assert_array_equal(recurrent, np.block([[jee, jei], [jie, jii]]))
    np.testing.assert_array_equal(external, np.vstack([jex, jix]))


def test_the_rate_network_follows_daless_law_with_the_books_parameters(task):
    network = task.network
    w = network.weights
    assert network.n_units == 1000 and network.n_inputs == 8 and network.activation == "relu"
    assert (w[:, :NE] >= 0).all() and (w[:, NE:] <= 0).all()  # Dale's law: a sign per presynaptic population
    scale = 0.8 * G  # the default coupling_scale
    for block, value in (((slice(0, NE), slice(0, NE)), 12), ((slice(0, NE), slice(NE, None)), -45),
                         ((slice(NE, None), slice(0, NE)), 35), ((slice(NE, None), slice(NE, None)), -70)):
        entries = w[block]
        connected = entries[entries != 0]
        torch.testing.assert_close(connected, torch.full_like(connected, scale * value))
        assert 0.19 < len(connected) / entries.numel() < 0.21  # connection probability 0.2
    assert network.tau[:NE].eq(30).all() and network.tau[NE:].eq(15).all()
    torch.testing.assert_close(network.bias, torch.full((1000,), -1000 * G * THETA, dtype=torch.float64))
    # each pathway is 100 external neurons: its column sums their connections (30 mV onto E, 20 onto I)
    _, external = book_connectivity(BalancedConfig())
    torch.testing.assert_close(network.input_matrix[:, 0], torch.from_numpy(G * external[:, :100].sum(1)))


def test_no_global_proof_exists_for_an_inhibition_stabilized_network(task):
    proof = prove_global_stability(task.network)
    assert not proof.proved and "excitatory units are unstable on their own" in proof.reason


def test_fixed_points_are_lsodas_from_rest(task, settled):
    inputs, result = settled
    assert result.status == ["converged"] * 4
    reference = lsoda(task.network, inputs[:2], t_end=6000.0)  # 200 tau_E
    np.testing.assert_allclose(reference, result.states[:2].numpy(), atol=1e-7)


def test_the_state_is_balanced_and_inhibition_stabilized(task, settled):
    """Each unit's excitatory input (recurrent and external) is several times its net input, which the
    inhibitory input cancels; the active E units alone would be unstable (an ISN); about half the units are
    active (a broad rectified distribution), at mean rates of the order the book's mean field gives."""
    inputs, result = settled
    rates = result.rates
    excitatory, inhibitory = task.balance(rates, inputs)
    net = excitatory + inhibitory + task.network.bias
    assert (excitatory / net.abs()).median() > 5
    assert (inhibitory.abs() / excitatory).median() > 0.6
    for r in rates:
        active_e = (r[:NE] > 0).nonzero().squeeze(1)
        w_ee = task.network.weights[active_e][:, active_e]
        assert torch.linalg.eigvals(w_ee).abs().max() > 2
    active = (rates > 0).double()
    assert 0.3 < active[:, :NE].mean() < 0.7 and 0.3 < active[:, NE:].mean() < 0.7
    mean_e, mean_i = rates[:, :NE].mean().item(), rates[:, NE:].mean().item()
    assert 4 < mean_e < 15 and 10 < mean_i < 30 and mean_i > mean_e


def mean_field(task: BalancedTask, external_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """DynamicalMeanField.ipynb's two populations (J -> j p N, the coupling scaled as the task's), in Hz:
    the fixed point (I - W)^-1 (W_x r_x - 1000 g theta) of the linear mean field, and the balanced limit
    of its slope, -W^-1 W_x (the rates a strongly coupled network takes whatever its f-I curve)."""
    cfg, p = task.cfg, task.cfg.connection_probability
    w = cfg.coupling_scale * cfg.gain * np.array([[cfg.j_ee * p * NE, -cfg.j_ei * p * NI],
                                                 [cfg.j_ie * p * NE, -cfg.j_ii * p * NI]])
    w_x = cfg.gain * np.array([cfg.j_ex * p * 800, cfg.j_ix * p * 800])
    fixed = np.linalg.solve(np.eye(2) - w, w_x * external_rate - 1000 * cfg.gain * cfg.threshold)
    return fixed, -np.linalg.solve(w, w_x)


def test_population_rates_are_the_mean_fields_and_grow_linearly_with_the_external_rate(task):
    """Every external neuron at 5, 7.5 and 10 Hz (the book's rx is 5): the E population's mean rate is the
    mean field's (8.2 Hz), the I population's within 15% (rectification of the heterogeneous inputs is what
    the linear mean field leaves out); both grow in equal steps, at slopes within 20% of the balanced limit."""
    levels = torch.tensor([5.0, 7.5, 10.0], dtype=torch.float64)
    result = solve(task.network, levels[:, None].expand(3, 8).clone(), SolverOptions())
    assert result.status == ["converged"] * 3
    means = torch.stack([result.rates[:, :NE].mean(1), result.rates[:, NE:].mean(1)], 1).numpy()  # (3, 2)
    fixed, slope = mean_field(task, 5.0)
    np.testing.assert_allclose(means[0, 0], fixed[0], rtol=0.05)
    np.testing.assert_allclose(means[0, 1], fixed[1], rtol=0.15)
    steps = np.diff(means, axis=0)
    np.testing.assert_allclose(steps[0], steps[1], rtol=0.02)
    np.testing.assert_allclose(steps[0] / 2.5, slope, rtol=0.2)


def test_more_drive_to_the_inhibitory_units_lowers_their_rate(task):
    """The paradoxical response of an inhibition-stabilized network (Tsodyks et al. 1997): extra excitatory
    drive to every I unit lowers the I population's mean rate, and the E population's with it."""
    network = task.network
    means = []
    for extra in (0.0, 2.0, 5.0):
        bias = network.bias.clone()
        bias[NE:] += extra
        driven = RecurrentNetwork(network.weights, network.tau, network.input_matrix, bias)
        result = solve(driven, torch.full((1, 8), 5.0, dtype=torch.float64), SolverOptions())
        assert result.status == ["converged"]
        means.append((result.rates[0, :NE].mean().item(), result.rates[0, NE:].mean().item()))
    (e0, i0), (e1, i1), (e2, i2) = means
    assert i2 < i1 < i0 and e2 < e1 < e0


def test_registered_and_built_by_name():
    assert TASKS["balanced"] == (BalancedConfig, BalancedTask)
    assert isinstance(build_task(BalancedConfig(n_excitatory=40, n_inhibitory=10, n_external=40)), BalancedTask)


def test_a_small_network_keeps_the_structure():
    network = balanced_network(BalancedConfig(n_excitatory=40, n_inhibitory=10, n_external=40, n_pathways=4))
    assert network.weights.shape == (50, 50) and network.input_matrix.shape == (50, 4)
    assert (network.weights[:, :40] >= 0).all() and (network.weights[:, 40:] <= 0).all()


@pytest.mark.parametrize("key, value", [("n_pathways", 0), ("n_pathways", 801), ("connection_probability", 0.0),
                                        ("j_ei", -45.0), ("tau_inhibitory", 0.0), ("gain", float("nan")),
                                        ("input_low", -1.0), ("input_low", 10.0), ("coupling_scale", -0.5)])
def test_invalid_config_names_the_key(key, value):
    with pytest.raises(TaskConfigError, match=f"task.{key}="):
        BalancedTask(BalancedConfig(**{key: value}))


def test_the_example_writes_the_network_as_files_and_its_command_fits_the_ff(tmp_path):
    """scripts/examples/balanced_network_files.py, on a smaller network of the same kind: the files hold the
    task's network, and the printed command trains the FF on it with task=custom."""
    small = ["task.n_excitatory=160", "task.n_inhibitory=40", "task.n_pathways=4"]
    result = run_script(["scripts/examples/balanced_network_files.py", "--out", str(tmp_path / "files"), *small])
    network = balanced_network(BalancedConfig(n_excitatory=160, n_inhibitory=40, n_pathways=4))
    for name, tensor in (("W", network.weights), ("tau", network.tau), ("M", network.input_matrix),
                         ("b", network.bias)):
        np.testing.assert_array_equal(np.load(tmp_path / "files" / f"{name}.npy"), tensor.numpy())
    command = result.stdout.strip().splitlines()[-1].split()
    assert command[:3] == ["python", "train.py", "task=custom"] and "task.inputs.high=10" in command
    run_script([*command[1:], *TINY_RUN, f"paths.log_dir={tmp_path}/out", "trainer.max_epochs=2"])
    metrics = json.loads(next((tmp_path / "out").glob("runs/custom/*/metrics.json")).read_text())
    assert metrics["data/converged"] == 160 and "test/rel_error_inhibitory" in metrics  # Dale's law inferred
    assert metrics["data/globally_stable"] == 0  # inhibition-stabilized: certified per region


@pytest.mark.parametrize("override, message", [("task.nope=1", "error: 'task.nope=1' is not task.<key>"),
                                               ("task.n_pathways=many", "error: 'task.n_pathways=many': task.n_"),
                                               ("task.n_pathways=0", "error: task.n_pathways=0 is invalid")])
def test_a_bad_override_of_the_example_is_one_line(tmp_path, override, message):
    result = run_script(["scripts/examples/balanced_network_files.py", "--out", str(tmp_path), override],
                        check=False)
    assert result.returncode == 1 and result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_task_trains_end_to_end_with_its_metrics(tmp_path):
    """train.py's path on a 200-unit network of the same kind (TINY: 160 E, 40 I, the book's 800 external
    neurons): every input settles, certified per region (still inhibition-stabilized), and the task's
    metrics and each population's error are reported."""
    cfg = compose_config(tmp_path, ["task=balanced", *TINY["balanced"], *TINY_RUN])
    metrics = train(cfg)
    assert metrics["data/converged"] == 160 and metrics["data/globally_stable"] == 0
    for name in ("rel_error_excitatory", "rel_error_inhibitory", "mean_rate_error_excitatory",
                 "mean_rate_error_inhibitory", "active_set_agreement", "recurrent_active_fraction"):
        assert math.isfinite(metrics[f"test/{name}"]), name
    assert metrics["test/recurrent_active_set_agreement"] == 1 and 0 < metrics["test/recurrent_active_fraction"] < 1
