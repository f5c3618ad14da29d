"""The fixed-point solver: exact answers, an honest status for every sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from rnn_ff import solve_fixed_points, wta_network, WTAConfig
from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import SolverError, SolverOptions, max_real_eigenvalue, solve
from tests.conftest import three_cycle


def test_polished_fixed_points_are_exact_and_match_a_long_tight_integration():
    network = wta_network(WTAConfig(n_excitatory=6, self_excitation=0.5))
    inputs = torch.rand(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = solve(network, inputs)
    assert result.status == ["converged"] * 8
    assert result.residual.max() <= 1e-10
    w, tau, drive = network.weights.numpy(), network.tau.numpy(), network.drive(inputs).numpy()
    for i in range(len(inputs)):
        reference = solve_ivp(lambda t, x: (-x + w @ np.maximum(x, 0) + drive[i]) / tau, (0, 400),
                              np.zeros(len(tau)), method="LSODA", rtol=1e-11, atol=1e-13).y[:, -1]
        np.testing.assert_allclose(result.states[i].numpy(), reference, atol=1e-7)


def test_hard_wta_picks_the_single_winner_the_trajectory_reaches():
    network = wta_network(WTAConfig(n_excitatory=8, self_excitation=1.2))
    inputs = torch.rand(32, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inputs[0, :2] = torch.tensor([0.9, 0.9 + 1e-4])  # near tie: a premature polish would find the saddle
    result = solve(network, inputs)
    assert result.converged.all()
    winners = result.rates[:, :8]
    assert ((winners > 0).sum(1) == 1).all()
    assert torch.equal(winners.argmax(1), inputs.argmax(1))


def test_limit_cycle_is_oscillating_and_symmetric_saddle_is_unstable():
    inputs = torch.tensor([[1.0, 1.1, 0.9], [1.0, 1.0, 1.0]], dtype=torch.float64)
    result = solve_fixed_points(three_cycle(), inputs)
    assert result.status == ["oscillating", "unstable"]
    assert not result.converged.any()


def test_runaway_excitation_diverges_without_stopping_the_rest_of_the_batch():
    weights = torch.tensor([[1.5]], dtype=torch.float64)  # loop gain above 1, no inhibition
    result = solve_fixed_points(weights, torch.tensor([[-1.0], [1.0], [-0.5]], dtype=torch.float64))
    assert result.status == ["converged", "diverged", "converged"]
    torch.testing.assert_close(result.states[[0, 2], 0], torch.tensor([-1.0, -0.5], dtype=torch.float64))


def test_overflowing_sample_is_isolated_by_bisection():
    weights = torch.tensor([[1e6]], dtype=torch.float64)  # blows up to inf within one window
    result = solve_fixed_points(weights, torch.tensor([[-1.0], [1.0], [-2.0], [-3.0]], dtype=torch.float64))
    assert result.status[1] in ("nonfinite", "diverged")
    assert [result.status[i] for i in (0, 2, 3)] == ["converged"] * 3


def test_integrator_failure_is_bisected_down_to_the_failing_sample(monkeypatch):
    """torchdiffeq raises for the whole batch (e.g. step underflow); only the culprit is marked."""
    import rnn_ff.solver.integration as solver_module

    real_odeint = solver_module.odeint

    def odeint_failing_on_marked_samples(func, y0, t, **kwargs):
        if (func(t[0], y0) == 7.0).any():  # the marked input's drive at the start of a window
            raise AssertionError("underflow in dt")
        return real_odeint(func, y0, t, **kwargs)

    monkeypatch.setattr(solver_module, "odeint", odeint_failing_on_marked_samples)
    inputs = torch.full((9, 1), -1.0, dtype=torch.float64)
    inputs[5] = 7.0
    result = solve_fixed_points(torch.tensor([[0.5]], dtype=torch.float64), inputs)
    assert result.status == ["converged"] * 5 + ["nonfinite"] + ["converged"] * 3


def test_converged_samples_are_stable_fixed_points_the_others_are_not_settled_and_costs_are_counted():
    """The 3-cycle CTLN with uneven drives: some settle, the others are still moving at max_time."""
    weights = three_cycle()
    inputs = torch.rand(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    result = solve_fixed_points(weights, inputs, max_time=60)
    assert result.counts()["converged"] == 2 and result.counts()["timeout"] == 4
    w = weights.numpy()
    for state, drive, status in zip(result.states.numpy(), inputs.numpy(), result.status):
        residual = np.abs(-state + w @ np.maximum(state, 0) + drive).max()
        if status == "converged":
            assert residual <= 1e-12 and np.linalg.eigvals(-np.eye(3) + w * (state > 0)).real.max() < 0
        else:
            assert residual > 1e-3, "a sample that sits on a fixed point was not settled"
    # Settled samples leave the batch: they cost fewer evaluations than those integrated to max_time.
    assert result.nfe[result.converged].max() < result.nfe[~result.converged].min()


def test_float32_solve_agrees_with_float64():
    network = wta_network(WTAConfig(n_excitatory=6))
    inputs = torch.rand(16, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    exact = solve(network, inputs)
    single = solve(network, inputs, dtype=torch.float32)
    assert single.converged.all()
    assert ((single.rates.double() - exact.rates).abs().max() / exact.rates.abs().max()) < 1e-4


def test_float32_integration_gives_the_exact_float64_answers():
    """integration_dtype=float32 (for GPUs with slow float64): the trajectory only has to reach
    the right region, and the answer is solved there in float64, so it is the same to the bit."""
    network = wta_network(WTAConfig(n_excitatory=8, self_excitation=1.2))
    inputs = torch.rand(64, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    exact = solve(network, inputs)
    mixed = solve(network, inputs, SolverOptions(integration_dtype="float32"))
    assert exact.converged.all() and mixed.converged.all()
    assert mixed.states.dtype == torch.float64
    assert torch.equal(mixed.states, exact.states)


def test_tanh_network_is_polished_by_newton():
    weights = 0.5 * torch.randn(5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) / 5**0.5
    result = solve_fixed_points(weights, torch.randn(4, 5, dtype=torch.float64), activation="tanh")
    assert result.converged.all()
    assert result.residual.max() <= 1e-10


def test_stability_check_survives_repeated_eigenvalues():
    """8 disjoint 8-unit blocks + 1 inhibitory unit: torch.linalg.eigvals failed here once."""
    n = 65
    weights = torch.zeros(n, n, dtype=torch.float64)
    for block in range(8):
        index = slice(8 * block, 8 * block + 8)
        weights[index, index] = 0.95 / 8
    weights[64, :64], weights[:64, 64] = 1.0, -0.5
    network = RecurrentNetwork(weights, torch.ones(n, dtype=torch.float64), torch.eye(n, dtype=torch.float64),
                               torch.zeros(n, dtype=torch.float64))
    all_active = torch.ones(3, n, dtype=torch.float64)
    values = max_real_eigenvalue(network, all_active)
    assert torch.isfinite(values).all()


def test_bad_inputs_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="non-finite"):
        solve_fixed_points(torch.eye(2, dtype=torch.float64) * 0.5, torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="square"):
        solve_fixed_points(torch.zeros(2, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="tau"):
        solve_fixed_points(torch.zeros(2, 2), torch.zeros(1, 2), tau=-1.0)


@pytest.mark.parametrize("task_name", ["wta", "transformation"])
def test_region_solution_matches_integration_while_inside_the_region(task_name):
    """The certificate's closed form (resonant terms included) is the network's trajectory."""
    from torchdiffeq import odeint

    from rnn_ff.solver.regions import active_set_fixed_points, analyse_regions, pack_active_sets, region_trajectory
    from rnn_ff.tasks import TASKS, build_task

    task = build_task(TASKS[task_name][0]())
    network = task.network
    inputs, _ = task.sample(4, torch.Generator().manual_seed(5))
    drive = network.drive(inputs)
    settled = solve(network, inputs).states
    margin = settled.abs().amin(-1, keepdim=True)
    noise = torch.rand(settled.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64) - 0.5
    start = settled + 0.2 * margin * noise  # in the same linear region as the fixed point
    times = torch.linspace(0, 3, 7, dtype=torch.float64)
    reference = odeint(lambda t, x: network.velocity(x, drive), start, times, rtol=1e-10, atol=1e-12)
    assert ((reference > 0) == (start > 0)).all(), "a perturbed trajectory left its region"
    # One table for the four regions (padded to the widest): the padding must not change anything.
    table, studied, unstable, _ = analyse_regions(network, start > 0, pack_active_sets(start), torch.float64, 0.0,
                                               network.n_units)
    assert len(unstable) == 0, "every settled state's region is stable"
    rows = torch.argsort(studied)
    fixed = active_set_fixed_points(network, drive, table.active, table.valid)
    path = region_trajectory(network, table, rows, start, fixed, times.expand(len(inputs), -1))
    torch.testing.assert_close(path - fixed[:, None], reference.transpose(0, 1) - fixed[:, None], atol=1e-9,
                               rtol=1e-6)
    if task_name == "transformation":
        assert table.resonant_coupling is not None, "the transformation's regions have lambda = -1/tau resonances"


def test_start_dependence_finds_the_multistable_hard_wta_and_not_the_soft_one():
    from rnn_ff.solver import start_dependent

    inputs = torch.tensor([[0.9, 0.85, 0.1, 0.2], [0.9, 0.1, 0.2, 0.3]], dtype=torch.float64)
    hard = wta_network(WTAConfig(n_excitatory=4, self_excitation=1.2))
    # From rest the strongest input wins; started with unit 1 ahead, unit 1 wins: two stable answers.
    ahead = torch.zeros(2, 5, dtype=torch.float64)
    ahead[:, 1] = 2.0
    rest, started = solve(hard, inputs), solve(hard, inputs, initial_states=ahead)
    assert rest.converged.all() and started.converged.all()
    assert started.rates[0, :4].argmax() == 1 and rest.rates[0, :4].argmax() == 0
    found = start_dependent(hard, inputs, rest.states, torch.Generator().manual_seed(0), n_starts=8)
    assert found[0]
    soft = wta_network(WTAConfig(n_excitatory=4, self_excitation=0.5))  # unique fixed point
    soft_states = solve(soft, inputs).states
    assert not start_dependent(soft, inputs, soft_states, torch.Generator().manual_seed(0), n_starts=4).any()


def test_unit_a_hair_above_threshold_is_not_taken_for_settled():
    """Found by hypothesis: a self-exciting unit fed 1e-254 drifts off its threshold and diverges."""
    weights = torch.zeros(6, 6, dtype=torch.float64)
    weights[3, 3], weights[3, 5] = 3.0, 1.63478156e-251
    inputs = torch.tensor([[0, 0, 0, 0, 0, 0.001]], dtype=torch.float64)
    assert solve_fixed_points(weights, inputs).status == ["diverged"]


def test_the_stability_screen_never_calls_a_stable_non_normal_block_unstable():
    """The screen squares exp(A h); rounding grows with non-normality and once made stable blocks
    look unstable (found in review). Stable blocks with strong transient growth must never be
    flagged; clearly unstable ones should be."""
    from rnn_ff.solver.regions import certainly_unstable

    generator = torch.Generator().manual_seed(1)
    stable, unstable = [], []
    for trial in range(200):
        p = 2 + trial % 7
        scale = [1.0, 3.0, 10.0, 30.0][trial % 4]
        decay = -0.01 - 0.5 * torch.rand(p, generator=generator, dtype=torch.float64)
        upper = torch.triu(torch.randn(p, p, generator=generator, dtype=torch.float64) * scale, 1)
        rotation, _ = torch.linalg.qr(torch.randn(p, p, generator=generator, dtype=torch.float64))
        stable.append(rotation @ (upper + torch.diag(decay)) @ rotation.T)
        growth = decay.clone()
        growth[trial % p] = 0.05 + 0.5 * torch.rand((), generator=generator, dtype=torch.float64)
        unstable.append(rotation @ (upper / scale + torch.diag(growth)) @ rotation.T)
    assert not any(certainly_unstable(block[None], 1e-9).item() for block in stable)
    # An unstable block left undecided only costs an eigensolver call; most must be caught.
    assert sum(certainly_unstable(block[None], 1e-9).item() for block in unstable) >= 0.95 * len(unstable)


def test_a_stable_strongly_non_normal_network_converges_from_rest():
    """W - I is stable (max Re eig -0.055) with eigenvector condition ~1e7; found in review, where
    the screen's rounding turned its region 'unstable' and the sample timed out."""
    weights = torch.tensor([[-0.9609631826610618, -28.384416219748445, 7.481866917091603, 24.65373291045202],
                            [-9.249933662592687, 10.871156713192136, 2.201798563206149, -5.2205515235231035],
                            [0.07484764044776693, -29.193814248127733, -23.434228172502536, 53.28446414980338],
                            [-5.981686237506133, -1.693444322782553, -9.979632341008653, 16.654858209012165]],
                           dtype=torch.float64)
    drive = torch.tensor([[0.04144308145246711, 0.055481990187672636, 0.04828028577822607, 0.05242882472344057]],
                         dtype=torch.float64)
    result = solve_fixed_points(weights, drive)
    assert result.status == ["converged"] and result.residual.item() <= 1e-12


def test_a_saddle_is_never_a_target_with_float32_integration():
    """A float32 trajectory jitters about a saddle at the integrator's tolerance (~1e-4), far from
    the 1e-9 that `unstable` asks for: such an input ends `timeout`, and never `converged`."""
    inputs = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    assert solve_fixed_points(three_cycle(), inputs, integration_dtype="float32", max_time=60).status == ["timeout"]


def test_a_failure_every_part_of_the_batch_shares_raises_at_once_naming_the_option(monkeypatch):
    """Too few steps allowed is not the samples' fault: one clear error after one round of quarters,
    not 2B bisected calls and every sample labelled nonfinite."""
    import rnn_ff.solver.integration as integration

    calls = []
    real_odeint = integration.odeint
    monkeypatch.setattr(integration, "odeint", lambda *args, **kwargs: calls.append(1) or real_odeint(*args, **kwargs))
    network = wta_network(WTAConfig(n_excitatory=6))
    inputs = torch.rand(64, 6, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    with pytest.raises(SolverError, match=r"solver\.max_steps_per_window \(now 2\)"):
        solve(network, inputs, SolverOptions(max_steps_per_window=2))
    assert len(calls) == 5  # the batch, then its four quarters


def test_running_out_of_memory_raises_naming_the_chunk_size(monkeypatch):
    import rnn_ff.solver.integration as integration

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(integration, "odeint", out_of_memory)
    with pytest.raises(SolverError, match=r"out of memory .* solver\.chunk_size"):
        solve(wta_network(WTAConfig(n_excitatory=4)), torch.rand(8, 4, dtype=torch.float64))


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fixed_step_methods_are_refused_with_the_reason(method):
    with pytest.raises(ValueError, match=rf"solver\.method='{method}' is invalid: fixed-step methods .*dopri5"):
        SolverOptions(method=method)


def test_the_chunk_size_changes_neither_statuses_nor_answers():
    """chunk_size is left out of the dataset key: it must not change what the targets are."""
    network = wta_network(WTAConfig(n_excitatory=8, self_excitation=1.2))
    inputs = torch.rand(96, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    inputs[:4, :2] = torch.tensor([0.9, 0.9 + 1e-4])  # near ties, which leave the batch last
    whole, chunked = solve(network, inputs), solve(network, inputs, SolverOptions(chunk_size=7))
    assert torch.equal(whole.status_codes, chunked.status_codes)
    assert torch.equal(whole.states[whole.converged], chunked.states[chunked.converged])


def test_the_path_check_proves_the_state_never_leaves_its_region_between_grid_times():
    """A fast rotation (lambda = -0.1 +- 30i) about x* = (1, 1): a deviation of 0.5 stays in the
    region, one of 1.5 dips below threshold between any two coarse samples. Whatever the check
    accepts, a dense evaluation of the same closed form must confirm."""
    from rnn_ff.solver.regions import (analyse_regions, pack_active_sets, region_trajectory, settling_horizon,
                                       stays_in_region)

    weights = torch.tensor([[0.9, 30.0], [-30.0, 0.9]], dtype=torch.float64)
    network = RecurrentNetwork(weights, torch.ones(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64),
                               torch.zeros(2, dtype=torch.float64))
    fixed = torch.ones(2, 2, dtype=torch.float64)
    drive = fixed @ (torch.eye(2, dtype=torch.float64) - weights).T
    states = fixed + torch.tensor([[0.5, 0.0], [1.5, 0.0]], dtype=torch.float64)
    table, studied, _, _ = analyse_regions(network, states > 0, pack_active_sets(states), torch.float64, 1e-9, 2)
    rows = torch.argsort(studied)
    assert torch.equal(network.residual(fixed, drive), torch.zeros_like(fixed))
    horizon = settling_horizon(table, rows, states, fixed)
    proved = stays_in_region(network, table, rows, states, fixed, horizon)
    assert proved.tolist() == [True, False]
    dense = region_trajectory(network, table, rows, states, fixed,
                              horizon[:, None] * torch.linspace(0, 1, 20001, dtype=torch.float64))
    assert (dense[0] > 0).all() and (dense[1] <= 0).any()


def test_the_progress_bar_counts_every_chunk_and_is_exact_at_the_end(monkeypatch):
    """The status counts on the bar add up over chunks and include the samples that time out."""
    import io

    import rnn_ff.solver.core as core

    bars = []

    class RecordingBar(core.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": False, "file": io.StringIO()})
            bars.append(self)

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            self.shown = dict(ordered_dict)
            super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(core, "tqdm", RecordingBar)
    inputs = torch.tensor([[1.0, 1.1, 0.9], [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [-2.0, -1.0, -1.0],
                           [1.2, 1.0, 0.9]], dtype=torch.float64)
    result = solve_fixed_points(three_cycle(), inputs, max_time=30, chunk_size=2, progress=True)
    counts = {name: count for name, count in result.counts().items() if count}
    assert len(counts) >= 2 and "timeout" in counts  # several statuses, some only known at the end
    assert bars[0].n == len(inputs) and bars[0].shown == counts


def test_an_allocation_failure_in_the_analysis_is_one_error_naming_the_chunk_size(monkeypatch):
    # The CPU allocator's failure is a RuntimeError: it must not be taken for a sample's fault (bisected).
    import rnn_ff.solver.classification as classification

    def cannot_allocate(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 1220575232 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(classification, "analyse_regions", cannot_allocate)
    with pytest.raises(SolverError, match=r"^out of memory solving 5-unit .* set a smaller solver\.chunk_size$"):
        solve(wta_network(WTAConfig(n_excitatory=4)), torch.rand(8, 4, dtype=torch.float64),
              SolverOptions(global_proof=False))


def test_the_cpu_chunk_is_bounded_in_bytes_for_large_networks():
    from rnn_ff.solver.core import auto_chunk_size

    cpu = torch.device("cpu")
    assert auto_chunk_size(17, cpu, torch.float64) == 16384
    assert 64 <= auto_chunk_size(1024, cpu, torch.float64) * 40 * 1024 * 8 <= 2**29

