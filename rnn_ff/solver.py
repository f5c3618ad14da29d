"""Batched fixed-point solver: windowed torchdiffeq integration with a status per sample.

torchdiffeq shares one step size across a batch and raises on non-finite values, so a
single misbehaving input would slow or abort everyone. We therefore integrate in short
windows from x(0) = 0; after each window every sample is classified and finished samples
leave the batch:

- converged   the state is close to a fixed point that is *stable*; the answer is the
              exact fixed point (active-set solve for ReLU, Newton otherwise), polished
              only once the trajectory is already inside its linear region.
- unstable    the state sits (to 1e-9) on a fixed point that is not stable, for several
              windows in a row (e.g. an exactly symmetric input on a saddle).
- oscillating bounded motion whose speed does not decay and whose path is much longer
              than the box it stays in (a limit cycle).
- diverged    |x| grew beyond `diverge_threshold`.
- nonfinite   the integrator produced nan/inf or failed numerically on this sample alone.
- timeout     none of the above within `max_time`.

Stability of a ReLU fixed point depends only on its active set S: the Jacobian
diag(1/tau) (-I + W diag(f'(x))) is block triangular with eigenvalues -1/tau_i off S, so
only the |S| x |S| block is decomposed, once per distinct active set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torchdiffeq import odeint
from torchdiffeq._impl.odeint import SOLVERS
from tqdm.auto import tqdm

from rnn_ff.linear_regions import (
    LinearRegion,
    analyse_region,
    certify,
    max_real_parts,
    region_fixed_points,
    single_threaded_lapack,
)
from rnn_ff.network import RecurrentNetwork

STATUSES = ("converged", "unstable", "oscillating", "diverged", "timeout", "nonfinite")
CONVERGED, UNSTABLE, OSCILLATING, DIVERGED, TIMEOUT, NONFINITE = range(len(STATUSES))
_RUNNING = -1
# Tolerance on the fixed-point residual |x - W f(x) - Mu - b|_inf / (1 + |x|_inf) by dtype.
_DEFAULT_RESIDUAL_TOL = {torch.float64: 1e-9, torch.float32: 1e-4}


@dataclass
class SolverOptions:
    method: str = "dopri5"
    # The trajectory only has to reach the right linear region: the answer is then the exact,
    # certified fixed point, so the integration tolerance can be looser than the answer's.
    rtol: float = 1e-4
    atol: float = 1e-6
    window: float = 5.0  # integration window, in units of the largest tau
    max_time: float = 1000.0  # give up (timeout) after this, in units of the largest tau
    max_steps_per_window: int = 20000
    points_per_window: int = 8  # trajectory samples per window, for the oscillation test
    accept_distance: float = 1e-3  # polish once |x - x*|_inf <= this * (1 + |x*|_inf) ...
    margin_factor: float = 10.0  # ... and 10 x that distance stays inside x*'s linear region
    residual_tol: Optional[float] = None  # None: 1e-9 in float64, 1e-4 in float32
    unstable_distance: float = 1e-9  # relative distance that counts as sitting on a fixed point
    unstable_windows: int = 3
    oscillation_windows: int = 8  # windows per block of the oscillation test
    stability_margin: float = 1e-9  # stable means max Re(eig) < -stability_margin
    diverge_threshold: float = 1e6
    certify_horizon: float = 100.0  # ReLU: certify a region's attractor up to this time (largest-tau units)
    newton_steps: int = 20  # polish iterations for smooth activations
    chunk_size: int = 16384  # samples integrated together; bounds memory

    def __post_init__(self) -> None:
        """Reject meaningless options with a message that names the key (solver.<name>)."""

        def check(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"solver.{name}={getattr(self, name)!r} is invalid: {allowed}")

        check(self.method in SOLVERS, "method", f"allowed: {sorted(SOLVERS)}")
        for name in ("rtol", "atol", "window", "max_time", "accept_distance", "unstable_distance",
                     "diverge_threshold", "certify_horizon"):
            check(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name, "must be a finite number > 0")
        # margin_factor < 1 would polish a state that is not yet inside its fixed point's linear region.
        check(math.isfinite(self.margin_factor) and self.margin_factor >= 1, "margin_factor",
              "must be a finite number >= 1")
        check(math.isfinite(self.stability_margin) and self.stability_margin >= 0, "stability_margin",
              "must be a finite number >= 0")
        check(self.residual_tol is None or math.isfinite(self.residual_tol) and self.residual_tol > 0, "residual_tol",
              "must be null (the dtype's default) or a finite number > 0")
        for name in ("max_steps_per_window", "points_per_window", "unstable_windows", "oscillation_windows",
                     "newton_steps", "chunk_size"):
            check(getattr(self, name) >= 1, name, "must be >= 1")


@dataclass
class FixedPointResult:
    states: torch.Tensor  # (B, N) fixed points x* (last state where not converged)
    rates: torch.Tensor  # (B, N) f(states)
    status_codes: torch.Tensor  # (B,) index into STATUSES
    residual: torch.Tensor  # (B,) |-x + W f(x) + Mu + b|_inf at `states`
    nfe: torch.Tensor  # (B,) right-hand-side evaluations spent on each sample
    settle_time: torch.Tensor  # (B,) simulated time at which the sample was classified
    seconds: float = 0.0  # wall time of the whole solve
    stats: dict = field(default_factory=dict)

    @property
    def status(self) -> list[str]:
        return [STATUSES[c] for c in self.status_codes.tolist()]

    @property
    def converged(self) -> torch.Tensor:
        return self.status_codes == CONVERGED

    def counts(self) -> dict[str, int]:
        return {name: int((self.status_codes == code).sum()) for code, name in enumerate(STATUSES)}


def solve_fixed_points(
    weights,
    inputs,
    tau=1.0,
    input_matrix=None,
    bias=None,
    activation: str = "relu",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    **solver_options,
) -> FixedPointResult:
    """Fixed points reached from x(0) = 0 for a batch of inputs (B, D), without Hydra.

    `input_matrix` defaults to the identity (D = N) and `bias` to zero; any keyword of
    `SolverOptions` (method, rtol, atol, window, max_time, ...) may be passed.
    """
    weights = torch.as_tensor(weights, dtype=dtype)
    n = weights.shape[0] if weights.ndim == 2 else -1
    network = RecurrentNetwork(
        weights=weights,
        tau=torch.as_tensor(tau, dtype=dtype),
        input_matrix=torch.eye(n, dtype=dtype) if input_matrix is None else torch.as_tensor(input_matrix, dtype=dtype),
        bias=torch.as_tensor(0.0 if bias is None else bias, dtype=dtype),
        activation=activation,
    )
    inputs = torch.as_tensor(inputs, dtype=dtype)
    if inputs.ndim == 1:
        inputs = inputs[None]
    return solve(network, inputs, SolverOptions(**solver_options), device=device, dtype=dtype, progress=progress)


def solve(
    network: RecurrentNetwork,
    inputs: torch.Tensor,
    options: SolverOptions | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    initial_states: torch.Tensor | None = None,
) -> FixedPointResult:
    """Solve every input of a (B, D) batch, chunk by chunk; results come back on the CPU.

    Trajectories start from x(0) = 0 unless `initial_states` (B, N) are given (used to
    probe multistability: does the response depend on where the network starts?)."""
    options = options or SolverOptions()
    if inputs.ndim != 2 or inputs.shape[1] != network.n_inputs:
        raise ValueError(f"inputs must be B x {network.n_inputs}, got shape {tuple(inputs.shape)}")
    if not torch.isfinite(inputs).all():
        raise ValueError("inputs contain non-finite values (nan or inf)")
    device = torch.device(device) if device is not None else inputs.device
    network = network.to(device, dtype)
    drive = network.drive(inputs.to(device, dtype))
    starts = torch.zeros_like(drive) if initial_states is None else initial_states.to(device, dtype)
    if starts.shape != drive.shape or not torch.isfinite(starts).all():
        raise ValueError(f"initial_states must be finite and B x {network.n_units}, got shape {tuple(starts.shape)}")
    start = time.perf_counter()
    parts, distinct_active_sets = [], 0
    with tqdm(total=len(inputs), unit="fp", desc="fixed points", disable=not progress, leave=False) as bar:
        for chunk, chunk_starts in zip(drive.split(options.chunk_size), starts.split(options.chunk_size)):
            # ReLU linear regions met in this chunk: the max real eigenvalue part of an unstable
            # one, the full analysis of a stable one. Kept per chunk, so memory stays bounded.
            regions: dict[bytes, LinearRegion | float] = {}
            parts.append(_solve_chunk(network, chunk, chunk_starts, options, regions, bar))
            distinct_active_sets += len(regions)
    fields = {name: torch.cat([p[name] for p in parts]).cpu() for name in parts[0]}
    result = FixedPointResult(**fields, seconds=time.perf_counter() - start)
    result.stats = {"distinct_active_sets": distinct_active_sets, "nfe_total": int(result.nfe.sum())}
    return result


def _solve_chunk(
    network: RecurrentNetwork,
    drive: torch.Tensor,
    starts: torch.Tensor,
    options: SolverOptions,
    regions: dict[bytes, LinearRegion | float],
    bar: tqdm,
) -> dict[str, torch.Tensor]:
    batch, n = drive.shape
    dev, dtype = drive.device, drive.dtype
    time_unit = float(network.tau.max())
    window, max_time = options.window * time_unit, options.max_time * time_unit
    residual_tol = options.residual_tol if options.residual_tol is not None else _DEFAULT_RESIDUAL_TOL.get(dtype, 1e-4)
    times = torch.linspace(0.0, window, options.points_per_window + 1, dtype=dtype, device=dev)

    final_states = torch.zeros(batch, n, dtype=dtype, device=dev)
    status = torch.full((batch,), _RUNNING, dtype=torch.long, device=dev)
    nfe = torch.zeros(batch, dtype=torch.long, device=dev)
    settle_time = torch.zeros(batch, dtype=dtype, device=dev)

    # Per running sample: global index, state, drive, and the oscillation/unstable trackers.
    running = _Running.start(torch.arange(batch, device=dev), drive, starts)
    elapsed, window_index = 0.0, 0
    while len(running.ids) and elapsed < max_time:
        trajectory, window_nfe, integrated = _integrate(network, running.states, running.drive, times, options)
        elapsed += window
        window_index += 1
        nfe[running.ids] += window_nfe
        end = trajectory[-1]
        finite = integrated & torch.isfinite(trajectory).all(dim=0).all(dim=-1)
        safe_end = torch.where(finite[:, None], end, torch.zeros_like(end))
        decided = torch.full((len(running.ids),), _RUNNING, dtype=torch.long, device=dev)
        decided[~finite] = NONFINITE
        diverged = finite & (safe_end.abs().amax(-1) > options.diverge_threshold)
        decided[diverged] = DIVERGED
        candidates = finite & ~diverged
        polished, fixed, unstable_here = _polish_and_classify(
            network, safe_end, running.drive, candidates, options, residual_tol, regions
        )
        decided[fixed & (decided == _RUNNING)] = CONVERGED
        running.unstable_streak = torch.where(unstable_here, running.unstable_streak + 1, 0)
        decided[(running.unstable_streak >= options.unstable_windows) & (decided == _RUNNING)] = UNSTABLE
        running.track(trajectory, float(times[1] - times[0]), window_index, options)
        if window_index % options.oscillation_windows == 0:
            decided[running.oscillating(options) & (decided == _RUNNING)] = OSCILLATING
            running.reset_block(end)

        done = decided != _RUNNING
        ids = running.ids[done]
        status[ids] = decided[done]
        final_states[ids] = torch.where((decided[done] == CONVERGED)[:, None], polished[done], safe_end[done])
        settle_time[ids] = elapsed
        running.advance(end, ~done)
        bar.update(int(done.sum()))
        bar.set_postfix(_counts(status), refresh=False)

    final_states[running.ids] = running.states
    status[running.ids] = TIMEOUT
    settle_time[running.ids] = elapsed
    bar.update(len(running.ids))
    residual = network.residual(final_states, drive).abs().amax(-1)
    residual = torch.where(torch.isfinite(residual), residual, torch.full_like(residual, math.inf))
    return {
        "states": final_states,
        "rates": network.rate(final_states),
        "status_codes": status,
        "residual": residual,
        "nfe": nfe,
        "settle_time": settle_time,
    }


@dataclass
class _Running:
    """State and trackers of the samples still being integrated, compacted every window."""

    ids: torch.Tensor
    states: torch.Tensor
    drive: torch.Tensor
    unstable_streak: torch.Tensor
    path: torch.Tensor  # path length travelled in the current oscillation block
    box_low: torch.Tensor  # bounding box of the current block
    box_high: torch.Tensor
    speed_early: torch.Tensor  # max speed in the first half of the block
    speed_late: torch.Tensor  # max speed in the second half of the block

    @classmethod
    def start(cls, ids: torch.Tensor, drive: torch.Tensor, states: torch.Tensor) -> _Running:
        zeros = torch.zeros(len(ids), dtype=drive.dtype, device=drive.device)
        return cls(
            ids, states, drive, torch.zeros_like(ids), zeros, states.clone(), states.clone(), zeros.clone(),
            zeros.clone(),
        )

    def track(self, trajectory: torch.Tensor, spacing: float, window_index: int, options: SolverOptions) -> None:
        trajectory = torch.nan_to_num(trajectory)
        steps = (trajectory[1:] - trajectory[:-1]).norm(dim=-1)  # chords between the sampled points
        self.path = self.path + steps.sum(0)
        self.box_low = torch.minimum(self.box_low, trajectory.amin(0))
        self.box_high = torch.maximum(self.box_high, trajectory.amax(0))
        window_max = steps.amax(0) / spacing  # mean speed over the fastest chord
        position = (window_index - 1) % options.oscillation_windows
        if position < options.oscillation_windows // 2:
            self.speed_early = torch.maximum(self.speed_early, window_max)
        else:
            self.speed_late = torch.maximum(self.speed_late, window_max)

    def oscillating(self, options: SolverOptions) -> torch.Tensor:
        diagonal = (self.box_high - self.box_low).norm(dim=-1)
        sustained = self.speed_late >= 0.5 * self.speed_early
        # Jitter at the integrator's tolerance around a fixed point is not an oscillation.
        noise = options.atol + options.rtol * self.box_high.abs().amax(-1)
        return sustained & (diagonal > 1e3 * noise) & (self.path > 3.0 * diagonal)

    def reset_block(self, end: torch.Tensor) -> None:
        end = torch.nan_to_num(end)
        self.path = torch.zeros_like(self.path)
        self.box_low, self.box_high = end.clone(), end.clone()
        self.speed_early = torch.zeros_like(self.speed_early)
        self.speed_late = torch.zeros_like(self.speed_late)

    def advance(self, end: torch.Tensor, keep: torch.Tensor) -> None:
        self.states = end
        for name in ("ids", "states", "drive", "unstable_streak", "path", "box_low", "box_high", "speed_early",
                     "speed_late"):
            setattr(self, name, getattr(self, name)[keep])


def start_dependent(
    network: RecurrentNetwork,
    inputs: torch.Tensor,
    fixed_points: torch.Tensor,
    generator: torch.Generator,
    n_starts: int = 2,
    options: SolverOptions | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Which inputs have a response that depends on the start (multistability)?

    `fixed_points` (B, N) are the converged states reached from rest. Each input is solved
    again from `n_starts` random initial states x0 ~ U(-s, s), with s the size of its fixed
    point; an input counts if a restart settles on another stable fixed point. Restarts
    that do not converge prove nothing and are ignored."""
    differs = torch.zeros(len(inputs), dtype=torch.bool)
    rates = network.rate(fixed_points)
    scale = 1.0 + fixed_points.abs().amax(-1, keepdim=True)
    for _ in range(n_starts):
        starts = scale * (2 * torch.rand(fixed_points.shape, generator=generator, dtype=torch.float64) - 1)
        again = solve(network, inputs, options, device=device, dtype=dtype, initial_states=starts)
        gap = (again.rates - rates).abs().amax(-1)
        differs |= again.converged & (gap > 1e-6 * (1.0 + rates.abs().amax(-1)))
    return differs


def _integrate(
    network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, times: torch.Tensor, options: SolverOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window for a batch. If torchdiffeq fails (non-finite values, step underflow, too
    many steps), bisect the batch so that only the samples responsible are marked failed.

    Returns the trajectory (T, B, N), function evaluations per sample and a success mask.
    """
    calls = 0

    guard = 10.0 * options.diverge_threshold

    def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The network's velocity, with rates capped beyond 10x the divergence threshold: a
        sample that explodes then grows only linearly and is classified `diverged` at the
        end of the window, instead of driving the shared step size to underflow. Samples
        below the threshold are unaffected."""
        nonlocal calls
        calls += 1
        return (-x + network.rate(x.clamp(-guard, guard)) @ network.weights.T + drive) / network.tau

    batch = len(states)
    try:
        trajectory = odeint(
            rhs, states, times, method=options.method, rtol=options.rtol, atol=options.atol,
            options={"max_num_steps": options.max_steps_per_window} if options.method in _ADAPTIVE else None,
        )
        ok = torch.ones(batch, dtype=torch.bool, device=states.device)
        return trajectory, torch.full((batch,), calls, device=states.device), ok
    except (AssertionError, RuntimeError, ValueError, OverflowError):
        pass
    if batch == 1:
        trajectory = torch.full((len(times), 1, states.shape[1]), math.nan, dtype=states.dtype, device=states.device)
        return trajectory, torch.full((1,), calls, device=states.device), torch.zeros(1, dtype=torch.bool,
                                                                                      device=states.device)
    half = batch // 2
    first = _integrate(network, states[:half], drive[:half], times, options)
    second = _integrate(network, states[half:], drive[half:], times, options)
    trajectory = torch.cat([first[0], second[0]], dim=1)
    return trajectory, torch.cat([first[1] + calls, second[1] + calls]), torch.cat([first[2], second[2]])


_ADAPTIVE = {"dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"}


def _polish_and_classify(
    network: RecurrentNetwork,
    states: torch.Tensor,
    drive: torch.Tensor,
    candidates: torch.Tensor,
    options: SolverOptions,
    residual_tol: float,
    regions: dict[bytes, LinearRegion | float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Find the fixed point each sample may be settling on and judge it.

    Returns (polished states, accepted as converged, sitting on an unstable fixed point).
    ReLU: every sample is checked against the exact fixed point of its current linear
    region and accepted once the region certificate shows the trajectory stays there.
    Otherwise (or if the certificate cannot be given), a sample is accepted only when it
    is already within `accept_distance` of a stable fixed point, well inside its region.
    """
    polished = states.clone()
    accepted = torch.zeros(len(states), dtype=torch.bool, device=states.device)
    on_unstable = torch.zeros_like(accepted)
    if network.piecewise_linear:
        _classify_by_region(network, states, drive, candidates, options, residual_tol, regions, polished, accepted,
                            on_unstable)
        return polished, accepted, on_unstable
    scale_now = 1.0 + states.abs().amax(-1)
    near = candidates & (network.residual(states, drive).abs().amax(-1) <= options.accept_distance * scale_now)
    members = near.nonzero().squeeze(1)
    if len(members):
        x_star = polish(network, states[members], drive[members], options.newton_steps)
        finite = torch.isfinite(x_star).all(-1)
        stable = torch.zeros_like(finite)
        if finite.any():
            stable[finite] = max_real_eigenvalue(network, x_star[finite]) < -options.stability_margin
        _judge(network, states, drive, members, x_star, stable, torch.zeros_like(stable), options, residual_tol,
               polished, accepted, on_unstable)
    return polished, accepted, on_unstable


def _classify_by_region(network, states, drive, candidates, options, residual_tol, regions, polished, accepted,
                        on_unstable) -> None:
    """ReLU: group samples by their current linear region. Unstable regions are ruled out by
    one batched eigenvalue call per region size; only samples in stable regions get the
    exact fixed point and the certificate; samples (almost) at rest in an unstable region
    are polished to tell whether they sit on a saddle."""
    index = candidates.nonzero().squeeze(1)
    if not len(index):
        return
    unique, inverse = torch.unique(states[index] > 0, dim=0, return_inverse=True)
    unique_cpu = unique.cpu()
    keys = [mask.numpy().tobytes() for mask in unique_cpu]
    new = [k for k, key in enumerate(keys) if key not in regions]
    if new:
        for k, value in zip(new, max_real_parts(network, unique_cpu[new])):
            regions[keys[k]] = value
    time_limit = options.certify_horizon * _time_unit(network)
    resting = network.residual(states[index], drive[index]).abs().amax(-1) <= options.unstable_distance * (
        1.0 + states[index].abs().amax(-1))
    for k, key in enumerate(keys):
        members = index[inverse == k]
        if isinstance(regions[key], float) and regions[key] < -options.stability_margin:
            regions[key] = analyse_region(network, unique_cpu[k])  # stable: worth the full analysis
        region = regions[key]
        if isinstance(region, LinearRegion):
            x_star = region_fixed_points(network, region, drive[members])
            certified = certify(network, region, states[members], x_star, time_limit)
            stable = torch.ones(len(members), dtype=torch.bool, device=states.device)
        else:
            members = members[resting[inverse == k]]
            if not len(members):
                continue
            x_star = polish(network, states[members], drive[members])
            certified = stable = torch.zeros(len(members), dtype=torch.bool, device=states.device)
        _judge(network, states, drive, members, x_star, stable, certified, options, residual_tol, polished,
               accepted, on_unstable)


def _judge(network, states, drive, members, x_star, stable, certified, options, residual_tol, polished, accepted,
           on_unstable) -> None:
    """Accept x* for `members` if it is a fixed point, stable, and the trajectory is bound for it."""
    scale = 1.0 + x_star.abs().amax(-1)
    is_fixed = torch.isfinite(x_star).all(-1)
    is_fixed &= network.residual(x_star, drive[members]).abs().amax(-1) <= residual_tol * scale
    if network.piecewise_linear:
        # x* must lie in the region it was solved for: a unit a hair above threshold whose
        # region says "off" (a residual of 1e-254 passes any tolerance) is not settled there.
        is_fixed &= ((x_star > 0) == (states[members] > 0)).all(-1)
    distance = (x_star - states[members]).abs().amax(-1)
    magnitude = x_star.abs()
    # Distance to the nearest switching surface (ReLU), ignoring units exactly at threshold.
    margin = torch.where(magnitude > 1e-12 * scale[:, None], magnitude, torch.full_like(magnitude, math.inf))
    margin = margin.amin(-1) if network.piecewise_linear else torch.full_like(scale, math.inf)
    # Close, and either well inside x*'s linear region or as close as the integrator resolves
    # (a unit that ends within the tolerance of its threshold would otherwise never settle).
    resolution = options.atol + options.rtol * scale
    close = (distance <= options.accept_distance * scale) & (
        (options.margin_factor * distance <= margin) | (distance <= resolution)
    )
    polished[members] = torch.where(is_fixed[:, None], x_star, states[members])
    accepted[members] = is_fixed & stable & (certified | close)
    on_unstable[members] = is_fixed & ~stable & (distance <= options.unstable_distance * scale)


def _time_unit(network: RecurrentNetwork) -> float:
    return float(network.tau.max())


def polish(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, newton_steps: int = 20) -> torch.Tensor:
    """Fixed point near `states` by Newton's method on -x + W f(x) + drive = 0 (for ReLU a
    single step is the exact active-set solve). Singular systems give nan."""
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
            x = torch.where((info == 0)[:, None], solution, torch.full_like(solution, math.nan))
        parts.append(x)
    return torch.cat(parts)


_SOLVE_ELEMENTS = 2**23


def max_real_eigenvalue(network: RecurrentNetwork, fixed_points: torch.Tensor) -> torch.Tensor:
    """Largest real part of the eigenvalues of diag(1/tau)(-I + W diag(f'(x*))) per fixed point
    (for ReLU, of the active block: the other eigenvalues are -1/tau_i < 0)."""
    if network.piecewise_linear:
        unique, inverse = torch.unique((fixed_points > 0).cpu(), dim=0, return_inverse=True)
        per_set = torch.tensor(max_real_parts(network, unique), dtype=torch.float64)
        return per_set[inverse].to(fixed_points.device, fixed_points.dtype)
    weights = network.weights.detach().cpu().double()
    slopes = network.rate_slope(fixed_points).cpu().double()
    matrices = (-torch.eye(network.n_units, dtype=torch.float64) + weights * slopes[:, None, :]) / network.tau.cpu(
        ).double()[:, None]
    try:
        values = torch.linalg.eigvals(matrices).real.amax(-1)
    except RuntimeError:  # e.g. "failed to converge ... too many repeated eigenvalues"
        values = torch.tensor([np.linalg.eigvals(m.numpy()).real.max() for m in matrices], dtype=torch.float64)
    return values.to(fixed_points.device, fixed_points.dtype)


def _counts(status: torch.Tensor) -> dict[str, int]:
    return {name: int((status == code).sum()) for code, name in enumerate(STATUSES) if (status == code).any()}
