"""The global stability proof (rnn_ff/solver/global_stability.py), checked independently: a claimed
proof is re-verified in exact rational arithmetic, networks built to have no proof (two equilibria,
an unstable excitatory core, a self-exciting unit, an unbounded slope) are refused, and a proven
network's answers are scipy LSODA's from rest, with a different time constant per unit."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from rnn_ff.network import RecurrentNetwork
from rnn_ff.random_networks import random_ei_network
from rnn_ff.solver import SolverOptions, solve
from rnn_ff.solver.active_sets import ExactSolver
from rnn_ff.solver.global_stability import certified_margin, prove_global_stability
from rnn_ff.solver.regions import diagonal_lyapunov_bound, exact_fixed_points, max_real_parts
from rnn_ff.tasks import TASKS, build_task


def network_of(weights, tau=1.0, activation="relu") -> RecurrentNetwork:
    weights = torch.as_tensor(weights, dtype=torch.float64)
    n = len(weights)
    return RecurrentNetwork(weights, torch.as_tensor(tau, dtype=torch.float64).expand(n).clone(),
                            torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), activation)


def exactly_positive_definite(weights: torch.Tensor, diagonal: torch.Tensor, slope: float) -> bool:
    """D (I - sW) + (I - sW)^T D > 0, decided in rational arithmetic from the float64 entries
    (every leading principal minor > 0, by fraction-exact Gaussian elimination)."""
    n = len(weights)
    w = [[Fraction(v) for v in row] for row in weights.tolist()]
    d = [Fraction(v) for v in diagonal.tolist()]
    s = Fraction(slope)
    a = [[(1 if i == j else 0) - s * w[i][j] for j in range(n)] for i in range(n)]
    m = [[d[i] * a[i][j] + d[j] * a[j][i] for j in range(n)] for i in range(n)]
    for k in range(n):
        if m[k][k] <= 0:
            return False
        for i in range(k + 1, n):
            factor = m[i][k] / m[k][k]
            for j in range(k, n):
                m[i][j] -= factor * m[k][j]
    return True


def test_every_proof_found_holds_in_exact_arithmetic_and_two_equilibria_are_never_proved():
    generator = torch.Generator().manual_seed(0)
    proved = refused = 0
    for trial in range(60):
        n = 2 + trial % 5
        weights = torch.randn(n, n, generator=generator, dtype=torch.float64) * (0.2 + 0.03 * trial)
        proof = prove_global_stability(network_of(weights))
        if proof.proved:
            proved += 1
            assert exactly_positive_definite(weights, proof.diagonal, 1.0), (trial, proof)
        else:
            refused += 1
        # A P-matrix is necessary: det(I - W) < 0 means two equilibria for some input; never proved.
        if torch.linalg.det(torch.eye(n, dtype=torch.float64) - weights) < 0:
            assert not proof.proved
    assert proved >= 10 and refused >= 10  # both outcomes exercised


@pytest.mark.parametrize("gap", [1e-3, 1e-9, 1e-13, 0.0, -1e-13, -1e-9])
def test_a_matrix_at_the_edge_of_diagonal_stability_is_proved_only_where_exactly_true(gap):
    # I - W = [[1, 1 - gap], [1, 1]] up to sign: det = gap; LDS exactly when gap > 0 (2 x 2).
    weights = torch.tensor([[0.0, -(1.0 - gap)], [-1.0, 0.0]], dtype=torch.float64)
    proof = prove_global_stability(network_of(weights))
    if gap <= 0:
        assert not proof.proved, proof
    if proof.proved:
        assert exactly_positive_definite(weights, proof.diagonal, 1.0)
    if gap >= 1e-9:
        assert proof.proved, proof  # well within reach of double precision


def test_the_certified_margin_never_claims_more_than_the_true_smallest_eigenvalue():
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        q, _ = torch.linalg.qr(torch.randn(30, 30, generator=generator, dtype=torch.float64))
        smallest = float(torch.rand(1, generator=generator)) * 1e-3
        eigenvalues = torch.cat([torch.tensor([smallest], dtype=torch.float64),
                                 1 + torch.rand(29, generator=generator, dtype=torch.float64)])
        a = q @ torch.diag(eigenvalues / 2) @ q.T  # symmetric: D A + A^T D = 2A with D = I
        margin = certified_margin(a, torch.ones(30, dtype=torch.float64))
        assert margin is None or 2 * margin <= smallest * (1 + 1e-6)
        shifted = a - (smallest / 2 + 1e-12) * torch.eye(30, dtype=torch.float64)  # now indefinite
        assert certified_margin(shifted, torch.ones(30, dtype=torch.float64)) is None


@pytest.mark.parametrize("name, weights, reason", [
    ("bistable mutual inhibition", [[0.0, -2.0], [-2.0, 0.0]], "no diagonal D"),
    ("self-exciting unit", [[1.2, -1.0], [1.0, 0.0]], "excites itself"),
    ("inhibition-stabilized E/I pair", [[0.0, 1.5, -2.0], [1.5, 0.0, -2.0], [1.0, 1.0, 0.0]], "excitatory units"),
    # a combinatorial threshold-linear network (Curto et al.): a 3-cycle of excitation on inhibition
    ("CTLN 3-cycle", [[0.0, -0.75, -1.5], [-1.5, 0.0, -0.75], [-0.75, -1.5, 0.0]], "no diagonal D"),
])
def test_networks_without_a_global_proof_are_refused_with_the_reason(name, weights, reason):
    proof = prove_global_stability(network_of(weights))
    assert not proof.proved and reason in proof.reason, (name, proof)
    assert proof.describe().startswith("per region: no global proof (")


def test_which_built_in_tasks_are_proved():
    outcome = {}
    for name, (schema, _) in TASKS.items():
        if name == "custom":
            continue
        outcome[name] = prove_global_stability(build_task(schema()).network)
    assert outcome["wta"].proved and outcome["denoising"].proved
    assert not outcome["transformation"].proved  # the search's best smallest eigenvalue stays below 0
    assert not outcome["ssn"].proved and "unbounded" in outcome["ssn"].reason
    assert not outcome["ring_ssn"].proved
    assert not outcome["wilson_cowan"].proved and "excites itself" in outcome["wilson_cowan"].reason
    hard = build_task(TASKS["wta"][0](self_excitation=1.2)).network
    assert not prove_global_stability(hard).proved  # a single-winner WTA is multistable


def lsoda_from_rest(network: RecurrentNetwork, drive: np.ndarray, t_end: float) -> np.ndarray:
    w, tau = network.weights.numpy(), network.tau.numpy()
    rate = np.tanh if network.activation == "tanh" else (lambda x: np.maximum(x, 0))
    solution = solve_ivp(lambda t, x: (-x + w @ rate(x) + drive) / tau, (0.0, t_end), np.zeros(len(drive)),
                         method="LSODA", rtol=1e-11, atol=1e-13)
    assert solution.success, solution.message
    return solution.y[:, -1]


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_a_proven_network_with_a_time_constant_per_unit_answers_what_lsoda_finds_from_rest(activation):
    base = random_ei_network(40, excitatory_radius=0.5, seed=3)
    tau = 0.3 + 2 * torch.rand(40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    network = RecurrentNetwork(base.weights, tau, base.input_matrix, base.bias, activation)
    proof = prove_global_stability(network)
    assert proof.proved
    inputs = torch.rand(6, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1
    result = solve(network, inputs, SolverOptions())
    assert result.stats["certificate"].startswith("globally stable: Lyapunov diagonal")
    assert result.converged.all()
    for x, u in zip(result.states.numpy(), inputs.numpy()):
        np.testing.assert_allclose(x, lsoda_from_rest(network, u, 200.0), rtol=1e-7, atol=1e-9)
    if activation == "tanh":  # Newton's answer is within the a-posteriori bound of the true one
        residual = network.residual(result.states, network.drive(inputs))
        assert (proof.error_bound(residual) < 1e-9).all()


def test_the_proof_and_the_per_region_certificates_give_the_same_answers():
    network = random_ei_network(48, excitatory_radius=0.5, seed=6)
    inputs = torch.rand(64, 48, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    proven = solve(network, inputs, SolverOptions())
    per_region = solve(network, inputs, SolverOptions(global_proof=False))
    assert per_region.stats["certificate"] == "per region: no global proof (solver.global_proof=false)"
    assert proven.stats["distinct_active_sets"] == 0 < per_region.stats["distinct_active_sets"]
    assert proven.converged.all() and per_region.converged.all()
    torch.testing.assert_close(proven.states, per_region.states, rtol=1e-12, atol=1e-12)


def test_the_error_bound_covers_the_distance_to_the_equilibrium():
    network = random_ei_network(30, excitatory_radius=0.5, seed=8)
    network = RecurrentNetwork(network.weights, network.tau, network.input_matrix, network.bias, "tanh")
    proof = prove_global_stability(network)
    drive = torch.rand(1, 30, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    star = torch.tensor(lsoda_from_rest(network, drive[0].numpy(), 300.0))[None]
    for size in (1e-1, 1e-3, 1e-6):
        state = star + size * torch.randn(1, 30, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
        bound = proof.error_bound(network.residual(state, drive))
        assert (state - star).norm() <= bound


@pytest.mark.parametrize("active_fraction", [0.2, 0.95])  # direct LU; low-rank update of (I - W)^-1
def test_per_sample_exact_solves_equal_the_batched_ones_whatever_the_batch(active_fraction):
    network = random_ei_network(160, excitatory_radius=0.5, seed=11)
    generator = torch.Generator().manual_seed(12)
    active = torch.rand(9, 160, generator=generator) < active_fraction
    drive = torch.randn(9, 160, generator=generator, dtype=torch.float64)
    solver = ExactSolver(network)
    assert solver.per_sample
    each = solver(active, drive)
    torch.testing.assert_close(each, exact_fixed_points(network, active, drive), rtol=1e-10, atol=1e-10)
    assert torch.equal(solver(active[3:5], drive[3:5]), each[3:5])  # bit-identical: depends on the sample alone


def random_masks(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    masks = torch.rand(count, n, generator=generator) < 0.6
    masks[:, 0] = True  # never empty
    return masks


def test_a_region_proved_by_d_is_stable_and_its_submatrix_exactly_positive_definite():
    """diagonal_lyapunov_bound on networks without a global proof: wherever it claims a region, the
    region's S block is stable (eig) below the claimed bound, and D_S(I - W_SS) + (I - W_SS)^T D_S is
    positive definite in rational arithmetic; regions it refuses include unstable ones."""
    generator = torch.Generator().manual_seed(2)
    claimed = refused = refused_unstable = 0
    for trial in range(40):
        n = 3 + trial % 6
        weights = torch.randn(n, n, generator=generator, dtype=torch.float64) * (0.3 + 0.02 * trial)
        weights.diagonal().clamp_(max=0.5)
        tau = 0.2 + 2 * torch.rand(n, generator=generator, dtype=torch.float64)
        network = RecurrentNetwork(weights, tau, torch.eye(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64))
        proof = prove_global_stability(network)
        d = proof.diagonal if proof.proved else proof.region_diagonal
        if d is None:
            continue
        masks = random_masks(n, 12, generator)
        bound = diagonal_lyapunov_bound(network, masks, d)
        true_max = max_real_parts(network, masks)
        for mask, claim, actual in zip(masks, bound.tolist(), true_max.tolist()):
            if math.isnan(claim):
                refused += 1
                refused_unstable += actual >= 0
                continue
            claimed += 1
            assert claim < 0 and actual <= claim, (trial, claim, actual)
            index = mask.nonzero().squeeze(1)
            assert exactly_positive_definite(weights[index][:, index], d[index], 1.0)
    assert claimed >= 50 and refused >= 50 and refused_unstable >= 10  # every outcome exercised


@pytest.mark.parametrize("gap", [1e-3, 1e-9, 1e-13, 0.0, -1e-13, -1e-9])
def test_a_region_at_the_edge_of_diagonal_stability_is_claimed_only_where_exactly_true(gap):
    # The pair of the edge test above as one region of a 3-unit network (unit 2 off); D = I.
    weights = torch.tensor([[0.0, -(1.0 - gap), 0.0], [-1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64)
    network = network_of(weights)
    bound = diagonal_lyapunov_bound(network, torch.tensor([[True, True, False]]), torch.ones(3, dtype=torch.float64))
    if gap <= 0:
        assert math.isnan(bound.item())
    else:
        assert math.isnan(bound.item()) or exactly_positive_definite(weights[:2, :2], torch.ones(2), 1.0)
    if gap >= 1e-3:
        assert bound.item() < 0


def test_a_multistable_network_s_regions_proved_by_d_answer_what_lsoda_finds_from_rest():
    """A proven E/I network with a winner-take-all pair (units 0 and 1, mutual inhibition -2): no
    global proof, but D (the search's best) proves the regions where one of the pair is active. Its
    answers (a time constant per unit) are LSODA's from rest, and equal to the eigen-analysis path's."""
    base = random_ei_network(40, excitatory_radius=0.5, seed=3)
    weights = base.weights.clone()
    weights[0, 1] = weights[1, 0] = -2.0
    tau = 0.3 + 2 * torch.rand(40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    network = RecurrentNetwork(weights, tau, base.input_matrix, base.bias)
    inputs = torch.rand(8, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    inputs[:, :2] += 1.0  # the pair is driven: one of the two wins
    result = solve(network, inputs, SolverOptions())
    assert result.stats["certificate"].startswith("per region: no global proof")
    assert 0 < result.stats["regions_by_diagonal"] <= result.stats["distinct_active_sets"]
    assert "regions proved stable by the search's best D" in result.stats["certificate"]
    assert result.converged.all()
    assert ((result.states[:, 0] > 0) != (result.states[:, 1] > 0)).all()  # one winner of the pair
    for x, u in zip(result.states.numpy(), inputs.numpy()):
        np.testing.assert_allclose(x, lsoda_from_rest(network, network.drive(torch.from_numpy(u)).numpy(), 200.0),
                                   rtol=1e-7, atol=1e-9)
    # global_proof=false: no D, every region by its eigenvectors; the same answers
    by_eigen = solve(network, inputs, SolverOptions(global_proof=False))
    assert by_eigen.stats["regions_by_diagonal"] == 0 and by_eigen.converged.all()
    torch.testing.assert_close(result.states, by_eigen.states, rtol=1e-12, atol=1e-12)


def test_a_sample_kept_outside_d_s_ellipsoid_by_the_integrator_s_jitter_is_certified_by_eigenvectors(monkeypatch):
    """The transformation's input 4 (seed 0): its region is proved stable by D, but an inactive unit's
    x* lies 1.2e-6 below threshold, so D's ellipsoid about x* is tiny: a state 4e-7 from x* (far within
    dopri5's jitter, about 2e-5) lies outside it. The region is re-analysed with eigenvectors, and the
    modal certificate accepts that state in the next window. From rest the input converges too (the
    jitter crosses that wall: the sample integrates on at the finer tolerance)."""
    from rnn_ff.solver.classification import PiecewiseLinearJudge, make_judge

    calls = []
    reanalyse = PiecewiseLinearJudge._reanalyse_modally
    monkeypatch.setattr(PiecewiseLinearJudge, "_reanalyse_modally",
                        lambda self, *args: calls.append(len(args[0])) or reanalyse(self, *args))
    task = build_task(TASKS["transformation"][0]())
    inputs, _ = task.sample(16, torch.Generator().manual_seed(0))
    result = solve(task.network, inputs[4:5], SolverOptions())
    assert result.status == ["converged"] and result.stats["regions_by_diagonal"] >= 1
    fixed, drive = result.states, task.network.drive(inputs[4:5])
    assert -2e-6 < fixed[fixed <= 0].max() < 0

    judge = make_judge(task.network, SolverOptions(), float(task.network.tau.max()))
    calls.clear()
    noise = torch.rand(fixed.shape, generator=torch.Generator().manual_seed(1), dtype=fixed.dtype) - 0.5
    states = fixed + torch.where(fixed > 0, 8e-7 * noise, 0.0)  # in x*'s region, 4e-7 from it at most
    every = torch.ones(1, dtype=torch.bool)
    first = judge.classify(states, drive, every, every)
    assert not first.accepted.any() and calls == [1] and judge.regions_by_diagonal == 1
    second = judge.classify(states, drive, every, every)
    assert second.accepted.all() and calls == [1]
    torch.testing.assert_close(second.polished, fixed, rtol=0, atol=1e-12)
