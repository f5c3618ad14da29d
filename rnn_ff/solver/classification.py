"""Judging a window's end states: is each sample at, or certainly bound for, a stable fixed point?

One strategy per kind of network, chosen once when the solve starts (as torchdiffeq picks a
solver class from a table), so that the window loop never asks which kind it has:

- `PiecewiseLinearJudge` (ReLU): every sample is checked against the exact fixed point of its
  current linear region and accepted once the region's closed-form certificate shows that the
  trajectory stays there until it settles. Regions are analysed once, in batches, and kept in
  a table on the device across windows and chunks (rnn_ff/solver/regions.py).
- `SmoothJudge` (tanh, power, sigmoid): Newton's method from states already close to a fixed
  point, the eigenvalues of the Jacobian there, and a ball about it proved to contract onto it
  (rnn_ff/solver/smooth.py).

Host round trips per window (outside the integrator): the piecewise-linear judge makes four
(the largest active set and how many samples rest in a region, which size the batched solve;
torch.unique of the active sets; how many samples go on to the certificate's path check; which
samples have a moving unit whose x* lies on its wall), two more when one does (the eigenvalues of
the region across that wall, on the CPU: the masks there, the values back), and three more
whenever new regions appear (how many of them the stability screen leaves undecided or stable;
their masks go to the CPU for the eigen-analysis; the table comes back); the smooth judge makes
two (which samples are near a fixed point; their Jacobians' eigenvalues on the CPU).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.active_sets import ExactSolver
from rnn_ff.solver.global_stability import GlobalProof, no_proof, prove_global_stability
from rnn_ff.solver.options import SolverOptions
from rnn_ff.solver.smooth import certified_by_lyapunov_ball
from rnn_ff.solver.regions import (
    GRID,
    NO_REGION,
    RETIRED_REGION,
    RegionTable,
    analyse_regions,
    inside_invariant_ellipsoid,
    key_words,
    max_real_parts,
    active_set_fixed_points,
    pack_active_sets,
    padded_active_sets,
    placeholder_row,
    row_bytes,
    settling_horizon,
    single_threaded_lapack,
    stays_in_region,
)


# A state this many integrator tolerances (rtol |x*| + atol) from a stable fixed point that its certificate
# does not reach is held back by the integrator's jitter, not in transit.
PRECISION_REACH = 10.0


@dataclass
class WindowVerdict:
    polished: torch.Tensor  # (B, N) the fixed point a sample is bound for, where one was found; else its state
    accepted: torch.Tensor  # (B,) converged: a stable fixed point the trajectory is bound for
    on_unstable: torch.Tensor  # (B,) sitting on a fixed point that is not stable
    near_stable: torch.Tensor  # (B,) in the region of a stable fixed point (ReLU), or near one (smooth)
    # (B,) within a few integrator tolerances of a stable fixed point that its certificate does not reach
    # (a fixed point on a wall, a ball smaller than the jitter): twice in a row, the sample integrates on
    # at a finer tolerance (rnn_ff/solver/core.py)
    needs_precision: torch.Tensor


def judge(network: RecurrentNetwork, fixed: torch.Tensor, states: torch.Tensor, drive: torch.Tensor,
          stable: torch.Tensor, unstable: torch.Tensor, bound_for: torch.Tensor, consistent: torch.Tensor,
          options: SolverOptions, attracted: torch.Tensor | None = None) -> WindowVerdict:
    """Accept x* if it is a fixed point, stable, and the trajectory is shown to be bound for it
    (`bound_for`: the region certificate for ReLU; see SmoothJudge for smooth activations).
    `attracted`: samples known to be bound for a stable fixed point (a global proof), whatever x*;
    None: those whose x* is a stable fixed point."""
    scale = 1.0 + fixed.abs().amax(-1)
    residual_tol = options.residual_tolerance(states.dtype)
    is_fixed = torch.isfinite(fixed).all(-1) & consistent
    is_fixed &= network.residual(fixed, drive).abs().amax(-1) <= residual_tol * scale
    distance = (fixed - states).abs().amax(-1)
    jitter = options.rtol * scale + options.atol
    return WindowVerdict(
        polished=torch.where(is_fixed[:, None], fixed, states),
        accepted=is_fixed & stable & bound_for,
        on_unstable=is_fixed & unstable & (distance <= options.unstable_distance * scale),
        near_stable=is_fixed & stable if attracted is None else attracted,
        needs_precision=is_fixed & stable & ~bound_for & (distance <= PRECISION_REACH * jitter),
    )


def nothing_found(states: torch.Tensor) -> WindowVerdict:
    """The verdict on samples not judged this window: their states stand, nothing is decided."""
    undecided = torch.zeros(len(states), dtype=torch.bool, device=states.device)
    return WindowVerdict(states.clone(), undecided, undecided.clone(), undecided.clone(), undecided.clone())


class PiecewiseLinearJudge:
    """ReLU networks: exact region fixed points, stability per region, closed-form certificate."""

    def __init__(self, network: RecurrentNetwork, options: SolverOptions, time_unit: float,
                 proof: GlobalProof) -> None:
        self.network, self.options, self.proof = network, options, proof
        self.exact = ExactSolver(network)
        self.time_limit = options.certify_horizon * time_unit
        device, n = network.weights.device, network.n_units
        self.placeholder = placeholder_row(torch.full((key_words(n),), NO_REGION, device=device), n,
                                           network.weights.dtype)
        self.table = self.placeholder  # row 0; then the regions that passed the eigen-analysis, then spare rows
        self.n_rows = 1  # rows of the table in use
        self.unstable_keys = torch.zeros(0, key_words(n), dtype=torch.long, device=device)  # all map to row 0
        self.regions_analysed = 0
        self.regions_by_diagonal = 0  # of them, proved stable by the global search's best D
        self.table_bytes, self.work_elements = _budgets(device)

    def classify(self, states: torch.Tensor, drive: torch.Tensor, candidates: torch.Tensor,
                 resting: torch.Tensor) -> WindowVerdict:
        """The resting candidates only (a sample that changed region at the end of the window is in
        transit: its region's fixed point is not worth a solve), in groups small enough that the
        regions of one group fit the table's memory (every sample may be in a region of its own), so
        that memory is bounded whatever the chunk."""
        judged = candidates & resting
        n = states.shape[1]
        width, n_judged = torch.stack([torch.where(judged, (states > 0).sum(1), 0).max(),
                                       judged.sum()]).tolist()  # host round trip
        chosen = torch.argsort((~judged).to(torch.int8), stable=True)[:n_judged]
        verdict = nothing_found(states)
        width = max(1, width)
        group = max(1, self.table_bytes // (2 * row_bytes(n, width)))
        for i in range(0, n_judged, group):
            part = chosen[i:i + group]
            found = self._classify(states[part], drive[part], candidates[part], width)
            for name, value in vars(found).items():
                getattr(verdict, name)[part] = value
        return verdict

    def _classify(self, states: torch.Tensor, drive: torch.Tensor, candidates: torch.Tensor,
                  width: int) -> WindowVerdict:
        n = states.shape[1]
        # Each sample's own region fixed point first: only regions where it lies inside the
        # region (a real fixed point of the network) are worth an eigen-analysis.
        fixed = self._region_fixed_points(states > 0, drive, width)
        jitter = self.options.rtol * (1.0 + fixed.abs().amax(-1)) + self.options.atol  # the integrator's
        on_a_wall = self._on_a_wall(states, candidates, fixed, jitter)
        active_units = states > 0
        # x* must lie in the region it was solved for: a unit a hair above threshold whose
        # region says "off" (a residual of 1e-254 passes any tolerance) is not settled there.
        consistent = candidates & torch.isfinite(fixed).all(-1) & ((fixed > 0) == active_units).all(-1)
        # A region is analysed once a sample is nearer to its x* than x* is to the region's walls, or
        # within the integrator's jitter of it (rtol and atol: that jitter about x* may exceed a wall's
        # distance): one farther away is still in transit (it may cross into another region first, and
        # at a thousand units an analysis costs as much as a hundred windows of integration) and is
        # judged again after the next window.
        wall = torch.where(fixed != 0, fixed.abs(), math.inf).amin(-1)
        distance = (fixed - states).abs().amax(-1)
        near = distance <= torch.maximum(wall, jitter)
        rows = self._rows(states, consistent & near, width)
        table = self.table
        block = max(1, self.work_elements // (n * max(table.width, GRID)))
        pieces = range(0, len(states), block)
        horizon = torch.cat([settling_horizon(table, rows[i:i + block], states[i:i + block], fixed[i:i + block])
                             for i in pieces])
        inside = torch.cat([inside_invariant_ellipsoid(table, rows[i:i + block], states[i:i + block],
                                                       fixed[i:i + block]) for i in pieces])
        # Certified at once: the invariant ellipsoid lies in the region, or a zero horizon (the modal
        # bound never reaches the walls); the path check (the costly part) runs only for samples
        # that can be certified and need it.
        certified = consistent & (inside | (horizon == 0))
        to_check = consistent & ~certified & (horizon <= self.time_limit)
        # A region that D proved stable has only its diagonal ellipsoid; a sample that the integrator's
        # jitter keeps outside it (a wall nearer to x* than that jitter) needs the modal certificate:
        # its region is analysed again with eigenvectors, for the next window.
        by_diagonal = ~table.certifiable[rows] & (table.lyapunov_diagonal[rows, 0] > 0)
        to_reanalyse = consistent & ~certified & by_diagonal & (distance <= jitter)
        n_check, n_reanalyse = torch.stack([to_check.sum(), to_reanalyse.sum()]).tolist()  # host round trip
        if n_reanalyse:
            self._reanalyse_modally(rows[to_reanalyse], active_units[to_reanalyse], width)
        chosen = torch.argsort((~to_check).to(torch.int8), stable=True)[:n_check]
        for i in range(0, len(chosen), block):
            part = chosen[i:i + block]
            certified[part] = stays_in_region(self.network, table, rows[part], states[part], fixed[part],
                                              horizon[part])
        max_real = table.max_real[rows]
        stable, unstable = max_real < -self.options.stability_margin, max_real >= -self.options.stability_margin
        across = self._unstable_across_a_wall(states, fixed, consistent & stable)
        stable, unstable = stable & ~across, unstable | across
        verdict = judge(self.network, fixed, states, drive, stable, unstable, certified, consistent, self.options)
        verdict.needs_precision |= on_a_wall
        return verdict

    def _region_fixed_points(self, active_units: torch.Tensor, drive: torch.Tensor, width: int) -> torch.Tensor:
        """The fixed point of each sample's region (nan where singular). A large network on the CPU
        solves each sample on its own active set (often a low-rank update: few units are off); elsewhere
        one padded batched solve per block keeps the device busy without round trips."""
        if self.exact.per_sample:
            return self.exact(active_units, drive)
        block = max(1, self.work_elements // (active_units.shape[1] * max(width, GRID)))
        return torch.cat([active_set_fixed_points(self.network, drive[i:i + block],
                                                  *padded_active_sets(active_units[i:i + block], width))
                          for i in range(0, len(drive), block)])

    def _on_a_wall(self, states: torch.Tensor, candidates: torch.Tensor, fixed: torch.Tensor,
                   jitter: torch.Tensor) -> torch.Tensor:
        """Which samples (B,) sit on a wall. Where a region's fixed point lies within the integrator's
        jitter of a wall (a unit's x*_i within rtol |x*| + atol of 0), that jitter keeps the state
        crossing it, and its own region's fixed point is then on the other side: never consistent.
        Such a sample, whose every unit on the wrong side of its own region's x* is within that
        tolerance of 0, integrates on at a finer tolerance (`WindowVerdict.needs_precision`), where
        the jitter no longer reaches the wall, or where its departure (a unit that excites itself
        past 1, turned on by the transient) shows. It is never moved: the state that the judge
        certifies from is the integrator's (at a drive of 1e-5 a move within the tolerance skips a
        whole region)."""
        wrong_side = torch.isfinite(fixed) & ((fixed > 0) != (states > 0))
        return candidates & wrong_side.any(-1) & (torch.where(wrong_side, states.abs(), 0).amax(-1) <= jitter)

    def _unstable_across_a_wall(self, states: torch.Tensor, fixed: torch.Tensor, judged: torch.Tensor) -> torch.Tensor:
        """Which of the judged samples (B,) have a moving unit whose x*_i is 0 to within the residual
        tolerance (it decays onto its wall from one side: no drive, no input from the active units,
        or inputs that cancel) and an unstable region across that wall (those units switched). Such
        an x* is not a stable fixed point: the least push across the wall grows (a unit that excites
        itself past 1), and an independent integration's rounding supplies that push."""
        scale = 1.0 + fixed.abs().amax(-1, keepdim=True)
        at_threshold = (fixed.abs() <= self.options.residual_tolerance(fixed.dtype) * scale) & (states != 0)
        members = (judged & at_threshold.any(-1)).nonzero().squeeze(1)  # host round trip
        across = torch.zeros_like(judged)
        if len(members):
            switched = ((fixed[members] > 0) != at_threshold[members]).to(fixed.dtype)
            across[members] = ~(max_real_eigenvalue(self.network, switched) < -self.options.stability_margin)
        return across

    def _rows(self, states: torch.Tensor, consistent: torch.Tensor, width: int) -> torch.Tensor:
        """Each state's row in the region table, analysing the regions met for the first time.
        Samples whose region holds no fixed point of theirs, or is known to be unstable, get
        row 0, the placeholder (their verdict needs no more: `consistent` or +inf max_real)."""
        keys = torch.where(consistent[:, None], pack_active_sets(states), NO_REGION)
        n_table, n_unstable, device = self.n_rows, len(self.unstable_keys), keys.device
        all_keys = torch.cat([self.table.keys[:n_table], self.unstable_keys, keys])
        unique, inverse = torch.unique(all_keys, dim=0, return_inverse=True)  # host round trip
        n_known = n_table + n_unstable
        row = torch.zeros(len(unique), dtype=torch.long, device=device)  # unstable ones stay at 0
        row[inverse[:n_table]] = torch.arange(n_table, device=device)
        n_new = len(unique) - n_known
        if n_new:
            is_new = torch.ones(len(unique), dtype=torch.bool, device=device)
            is_new[inverse[:n_known]] = False
            new_ids = torch.argsort((~is_new).to(torch.int8), stable=True)[:n_new]
            sample_of = torch.empty(len(unique), dtype=torch.long, device=device)
            sample_of[inverse[n_known:]] = torch.arange(len(keys), device=device)
            # rows in use, counted as full ones (a compact table turns full when a row D cannot prove joins)
            stored = self.n_rows * row_bytes(states.shape[1], self.table.width) + self.unstable_keys.numel() * 8
            if stored + 2 * n_new * row_bytes(states.shape[1], width) > self.table_bytes and n_known > 1:
                self.table, self.n_rows = self.placeholder, 1  # full: start again from this window's regions
                self.unstable_keys = self.unstable_keys[:0]
                return self._rows(states, consistent, width)
            table, studied, unstable, by_diagonal = analyse_regions(
                self.network, states[sample_of[new_ids]] > 0, unique[new_ids], states.dtype,
                self.options.stability_margin, width, self.proof.region_diagonal)
            self.regions_analysed += n_new
            self.regions_by_diagonal += by_diagonal
            if table is not None:
                self._append(table)
                row[new_ids[studied]] = torch.arange(n_table, n_table + len(studied), device=device)
            self.unstable_keys = torch.cat([self.unstable_keys, unique[new_ids[unstable]]])
        return row[inverse[n_known:]]

    def _reanalyse_modally(self, rows: torch.Tensor, masks: torch.Tensor, width: int) -> None:
        """Replace these rows of regions proved by D with eigen-analysed ones (appended; the old rows'
        keys are retired), so that the modal certificate serves them from the next window on."""
        unique_rows, inverse = torch.unique(rows, return_inverse=True)
        sample = torch.zeros_like(unique_rows).scatter_(0, inverse, torch.arange(len(rows), device=rows.device))
        keys = self.table.keys[unique_rows].clone()
        table, studied, unstable, _ = analyse_regions(self.network, masks[sample], keys, self.table.max_real.dtype,
                                                      self.options.stability_margin, width)
        self.table.keys[unique_rows] = RETIRED_REGION - unique_rows[:, None]  # unique: the lookup counts distinct keys
        if table is not None:
            self._append(table)
        self.unstable_keys = torch.cat([self.unstable_keys, keys[unstable]])

    def _append(self, new: RegionTable) -> None:
        """Add rows to the table in place; when they do not fit, move the rows in use into a new table a
        quarter wider than it needs, with room for as many rows as the table's memory holds (allocated,
        not touched: the pages are only used as rows are written). A concatenation per window would
        copy the whole table."""
        table, start, end = self.table, self.n_rows, self.n_rows + len(new)
        new = new if table.compact else new.full()
        if new.resonant_coupling is not None and table.resonant_coupling is None:
            table = table.with_resonant_coupling()  # (a view of the rows in use is enough below)
        fits = end <= len(table) and new.width <= table.width and new.compact == table.compact
        if not fits:
            n = self.network.n_units
            in_use = table.select(torch.arange(start, device=new.keys.device))
            if in_use.compact != new.compact:
                in_use, new = in_use.full(), new.full()
            width = min(n, max(in_use.width, -(-5 * new.width // 4)))
            table = in_use.with_capacity(max(2 * end, self.table_bytes // row_bytes(n, width)), width)
        table.write(start, new)
        self.table, self.n_rows = table, end

    def final_answers(self, states: torch.Tensor, drive: torch.Tensor, converged: torch.Tensor) -> torch.Tensor:
        """The converged samples' fixed points solved on their own region (on the CPU independent of
        the batch, to the last bit), where that solve passes the same checks; run once per chunk."""
        index = converged.nonzero().squeeze(1)
        if not len(index):
            return states
        fixed = self.exact(states[index] > 0, drive[index])
        scale = 1.0 + fixed.abs().amax(-1)
        good = torch.isfinite(fixed).all(-1) & ((fixed > 0) == (states[index] > 0)).all(-1)
        good &= self.network.residual(fixed, drive[index]).abs().amax(-1) <= self.options.residual_tolerance(
            states.dtype) * scale
        states = states.clone()
        states[index] = torch.where(good[:, None], fixed, states[index])
        return states


class SmoothJudge:
    """Smooth activations: Newton polish near a fixed point, stability from the Jacobian's eigenvalues."""

    regions_analysed = regions_by_diagonal = 0

    def __init__(self, network: RecurrentNetwork, options: SolverOptions, time_unit: float,
                 proof: GlobalProof) -> None:
        self.network, self.options, self.proof = network, options, proof

    def classify(self, states: torch.Tensor, drive: torch.Tensor, candidates: torch.Tensor,
                 resting: torch.Tensor) -> WindowVerdict:
        """`resting` is not used: nearness is read off the residual (a smooth network has no regions)."""
        network, options = self.network, self.options
        scale_now = 1.0 + states.abs().amax(-1)
        near = candidates & (network.residual(states, drive).abs().amax(-1) <= options.accept_distance * scale_now)
        members = near.nonzero().squeeze(1)  # host round trip
        fixed = states.clone()
        stable = torch.zeros(len(states), dtype=torch.bool, device=states.device)
        unstable, certified = stable.clone(), stable.clone()
        if len(members):
            x_star = polish(network, states[members], drive[members], options.newton_steps)
            finite = torch.isfinite(x_star).all(-1)
            x_star = torch.where(finite[:, None], x_star, 0.0)
            fixed[members] = x_star
            stable[members], unstable[members], certified[members] = self._certify(states[members], x_star, finite)
        return judge(network, fixed, states, drive, stable, unstable, certified, torch.ones_like(stable), options,
                     self._bound_for_attractor(candidates))

    def _certify(self, states: torch.Tensor, fixed: torch.Tensor,
                 finite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stable, unstable, certified) for Newton's fixed points `fixed` of these states."""
        values = max_real_eigenvalue(self.network, fixed)  # host round trip
        stable = finite & (values < -self.options.stability_margin)
        # Accepted only inside a ball about x* that provably contracts onto it (a state merely
        # close to x* may lie beyond a nearby saddle, in another basin).
        certified = stable & certified_by_lyapunov_ball(self.network, states, fixed)
        return stable, finite & (values >= -self.options.stability_margin), certified

    def _bound_for_attractor(self, candidates: torch.Tensor) -> torch.Tensor | None:
        """Samples known to be bound for a stable fixed point whatever their verdict (None: only those
        near one): the oscillation test leaves them alone."""
        return None

    def final_answers(self, states: torch.Tensor, drive: torch.Tensor, converged: torch.Tensor) -> torch.Tensor:
        return states  # Newton's answer is already per sample


class GloballyStableSmoothJudge(SmoothJudge):
    """Smooth activations with a global stability proof: the network's one equilibrium is the answer,
    so Newton's fixed point is accepted on its residual alone (no eigenvalues, no contracting ball); its
    distance to the exact equilibrium is at most GlobalProof.error_bound of that residual."""

    def _certify(self, states, fixed, finite):
        return finite, torch.zeros_like(finite), finite

    def _bound_for_attractor(self, candidates):
        return candidates  # the one equilibrium attracts every trajectory: no limit cycle exists


class GloballyStablePiecewiseLinearJudge:
    """ReLU networks with a global stability proof: the unique equilibrium is the response from rest,
    so a sample is converged as soon as the fixed point of its region, solved exactly on its own
    active set, lies in that region (sign-consistent, to the residual tolerance). No region is analysed.

    Every running sample is solved after every window (one exact solve costs about as much as one
    integration step where the network is large: rnn_ff/solver/active_sets.py); a solution that leaves
    its region is tried once more on the active set it points to (a Newton step of the piecewise-linear
    equation), else the sample integrates on."""

    regions_analysed = regions_by_diagonal = 0

    def __init__(self, network: RecurrentNetwork, options: SolverOptions, time_unit: float,
                 proof: GlobalProof) -> None:
        self.network, self.options, self.proof = network, options, proof
        self.exact = ExactSolver(network)

    def classify(self, states: torch.Tensor, drive: torch.Tensor, candidates: torch.Tensor,
                 resting: torch.Tensor) -> WindowVerdict:
        network, options = self.network, self.options
        members = (candidates & resting).nonzero().squeeze(1)  # host round trip
        fixed = states.clone()
        consistent = torch.zeros(len(states), dtype=torch.bool, device=states.device)
        if len(members):
            active, member_drive = states[members] > 0, drive[members]
            solved = self.exact(active, member_drive)
            retry = (torch.isfinite(solved).all(-1) & ((solved > 0) != active).any(-1)).nonzero().squeeze(1)  # host
            if len(retry):
                active[retry] = solved[retry] > 0
                solved[retry] = self.exact(active[retry], member_drive[retry])
            fixed[members] = solved
            consistent[members] = torch.isfinite(solved).all(-1) & ((solved > 0) == active).all(-1)
        return judge(network, fixed, states, drive, consistent, torch.zeros_like(consistent), consistent, consistent,
                     options, candidates)

    def final_answers(self, states: torch.Tensor, drive: torch.Tensor, converged: torch.Tensor) -> torch.Tensor:
        return states  # already solved on each sample's own active set


def make_judge(network: RecurrentNetwork, options: SolverOptions, time_unit: float):
    """The strategy for this kind of network, chosen once: with a global stability proof (tried
    first where solver.global_proof is true) no per-sample analysis is needed."""
    proof = prove_global_stability(network) if options.global_proof else no_proof("off", "solver.global_proof=false")
    if proof.proved:
        kind = GloballyStablePiecewiseLinearJudge if network.piecewise_linear else GloballyStableSmoothJudge
    else:
        kind = PiecewiseLinearJudge if network.piecewise_linear else SmoothJudge
    return kind(network, options, time_unit, proof)


def _budgets(device: torch.device) -> tuple[int, int]:
    """(bytes for the region table, elements per block of per-sample region work) on this device:
    on a GPU a share of its free memory; on the CPU at most 256 MiB of table (a large network's regions
    are mostly met by one sample each, so a larger table mostly holds memory: 512 MiB cost a 1,000-unit
    network's solve 160 MB of peak RSS and saved no time) and small blocks, which stay in cache."""
    free = available_memory(device)
    if device.type == "cuda":
        return free // 8, max(2**22, min(2**28, free // 256))
    return max(2**24, min(2**28, free // 8)), 2**21


def polish(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, newton_steps: int = 20) -> torch.Tensor:
    """Fixed point near `states` by Newton's method on -x + W f(x) + drive = 0 (for ReLU a
    single step is the exact active-set solve), stopping early once no step moves a state by more
    than rounding (1e-14 relative: quadratic convergence has then reached the last digits). Singular
    systems give nan."""
    steps = 1 if network.piecewise_linear else newton_steps
    eye = torch.eye(network.n_units, dtype=states.dtype, device=states.device)
    rows_per_solve = max(1, _SOLVE_ELEMENTS // network.n_units**2)  # bounds the (B, N, N) systems
    parts = []
    for x, d in zip(states.split(rows_per_solve), drive.split(rows_per_solve)):
        for _ in range(steps):
            slope = network.rate_slope(x)
            jacobian = eye - network.weights * slope[:, None, :]  # I - W diag(f'(x)), (B, N, N)
            # Linearised fixed-point equation: x = W (f(x0) + f'(x0)(x - x0)) + drive.
            rhs = d + (network.rate(x) - slope * x) @ network.weights.T
            with single_threaded_lapack():
                solution, info = torch.linalg.solve_ex(jacobian, rhs)
            moved = (solution - x).abs().amax(-1) / (1.0 + x.abs().amax(-1))
            x = torch.where((info == 0)[:, None], solution, torch.full_like(solution, math.nan))
            if bool((moved <= _NEWTON_STEP).all()):  # nan compares False: a failed solve does every step
                break
        parts.append(x)
    return torch.cat(parts)


_SOLVE_ELEMENTS = 2**23
_NEWTON_STEP = 1e-14  # Newton stops once every step is this small (relative to 1 + |x|_inf)


def max_real_eigenvalue(network: RecurrentNetwork, fixed_points: torch.Tensor) -> torch.Tensor:
    """Largest real part of the eigenvalues of diag(1/tau)(-I + W diag(f'(x*))) per fixed point
    (for ReLU, of the active block: the other eigenvalues are -1/tau_i < 0), computed on the CPU."""
    if network.piecewise_linear:
        unique, inverse = torch.unique((fixed_points > 0).cpu(), dim=0, return_inverse=True)
        return max_real_parts(network, unique)[inverse].to(fixed_points.device, fixed_points.dtype)
    weights = network.weights.detach().cpu().double()
    slopes = network.rate_slope(fixed_points).cpu().double()
    matrices = (-torch.eye(network.n_units, dtype=torch.float64) + weights * slopes[:, None, :]) / network.tau.cpu(
        ).double()[:, None]
    try:
        values = torch.linalg.eigvals(matrices).real.amax(-1)
    except RuntimeError:  # e.g. "failed to converge ... too many repeated eigenvalues"
        values = torch.tensor([np.linalg.eigvals(m.numpy()).real.max() for m in matrices], dtype=torch.float64)
    return values.to(fixed_points.device, fixed_points.dtype)


def available_memory(device: torch.device) -> int:
    """Free bytes on the device. For the CPU, the least of the machine's free RAM, what the process's
    address-space limit (ulimit -v, resource.RLIMIT_AS) leaves and what its cgroup's memory.max
    leaves (a batch scheduler's job limit): whichever a job hits first."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 2**32
    return max(0, min(free, _address_space_left(), _cgroup_memory_left()))


def _address_space_left() -> int:
    try:
        import resource  # POSIX only
    except ImportError:
        return 2**62
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return 2**62
    try:
        with open("/proc/self/statm") as statm:
            return limit - int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return limit


def _cgroup_memory_left() -> int:
    try:
        with open("/sys/fs/cgroup/memory.max") as maximum, open("/sys/fs/cgroup/memory.current") as current:
            limit = maximum.read().strip()
            return 2**62 if limit == "max" else int(limit) - int(current.read())
    except (OSError, ValueError):
        return 2**62
