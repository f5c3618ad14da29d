"""solve: fixed points of a batch of inputs, chunk by chunk, window by window, a status per sample.

torchdiffeq shares one step size across a batch and raises on non-finite values, so a single
misbehaving input would slow or abort everyone. We therefore integrate in short windows
from x(0) = 0; after each window every sample is classified and finished samples leave the
batch:

- converged   the state is bound for a fixed point that is *stable*; the answer is the
              exact fixed point (active-set solve for ReLU, Newton otherwise), polished
              only once the trajectory is certainly heading there.
- unstable    the state sits (to 1e-9) on a fixed point that is not stable, for several
              windows in a row (e.g. an exactly symmetric input on a saddle).
- oscillating bounded motion whose speed does not decay and whose path is much longer
              than the box it stays in (a limit cycle), away from every stable fixed point's
              region; a slowly decaying spiral about one keeps integrating.
- diverged    |x| grew beyond `diverge_threshold`.
- nonfinite   the integrator produced nan/inf or failed numerically on this sample alone.
- timeout     none of the above within `max_time`.

Everything stays on the solver's device; per window the loop itself brings back one small
vector of status counts (plus the judge's round trips, rnn_ff/solver/classification.py), so
that its cost on a GPU does not grow with the batch or with the number of linear regions.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.classification import available_memory, make_judge
from rnn_ff.solver.integration import SolverError, integrate_window, out_of_memory
from rnn_ff.solver.options import (
    CONVERGED,
    DIVERGED,
    INTEGRATION_DTYPES,
    NONFINITE,
    OSCILLATING,
    RUNNING,
    STATUSES,
    TIMEOUT,
    UNSTABLE,
    FixedPointResult,
    SolverOptions,
    tally,
)
from rnn_ff.solver.tracking import RunningSamples

_CPU_CHUNK = 16384  # beyond this a CPU gains nothing from larger batches
_GPU_CHUNK = 2**20
# A sample that the integrator's jitter keeps from its certificate integrates on at tolerances this much finer.
PRECISION_FACTOR = 1e-4
_CPU_CHUNK_BYTES = 2**29  # the integration state of one CPU chunk (about 40 state-sized tensors per sample)


def solve_fixed_points(
    weights,
    inputs,
    tau=1.0,
    input_matrix=None,
    bias=None,
    activation: str = "relu",
    activation_params: dict[str, float] | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    **solver_options,
) -> FixedPointResult:
    """Fixed points reached from x(0) = 0 for a batch of inputs (B, D), without Hydra.

    `input_matrix` defaults to the identity (D = N) and `bias` to zero; `activation` is relu, tanh,
    power or sigmoid (rnn_ff/activations.py) with its `activation_params`; any keyword of
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
        activation_params=activation_params or {},
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
    time_unit = float(network.tau.max())
    network = network.to(device, dtype)
    drive = network.drive(inputs.to(device, dtype))
    starts = torch.zeros_like(drive) if initial_states is None else initial_states.to(device, dtype)
    if starts.shape != drive.shape or not torch.isfinite(starts).all():
        raise ValueError(f"initial_states must be finite and B x {network.n_units}, got shape {tuple(starts.shape)}")
    chunk_size = options.chunk_size or auto_chunk_size(network.n_units, device, dtype)
    judge = make_judge(network, options, time_unit)  # keeps its linear regions across chunks
    integration_dtype = INTEGRATION_DTYPES[options.integration_dtype] if options.integration_dtype else dtype
    integrated_network = network.to(dtype=integration_dtype)
    start = time.perf_counter()
    totals = dict.fromkeys(STATUSES, 0)
    try:
        with tqdm(total=len(inputs), unit="fp", desc="fixed points", disable=None if progress else True,
                  leave=False) as bar:  # disable=None: bars on a terminal only
            parts = [_solve_chunk(network, integrated_network, chunk, chunk_starts, options, judge, time_unit, bar,
                                  totals)
                     for chunk, chunk_starts in zip(drive.split(chunk_size), starts.split(chunk_size))]
    except (RuntimeError, MemoryError) as error:  # an allocation anywhere in the analysis, not only the integration
        if not out_of_memory(error):
            raise
        free = available_memory(device) / 2**20
        raise SolverError(f"out of memory solving {network.n_units}-unit fixed points in chunks of {chunk_size} "
                          f"samples on {device} ({free:.0f} MiB left to this process); set a smaller "
                          "solver.chunk_size") from error
    fields = {name: torch.cat([p[name] for p in parts]).cpu() for name in parts[0]}
    result = FixedPointResult(**fields, seconds=time.perf_counter() - start)
    certificate = judge.proof.describe(network.piecewise_linear)
    if judge.regions_by_diagonal:
        certificate += (f"; {judge.regions_by_diagonal} of {judge.regions_analysed} regions proved stable by the "
                        "search's best D")
    result.stats = {"certificate": certificate,
                    "global_proof": judge.proof.summary(),
                    "distinct_active_sets": judge.regions_analysed, "regions_by_diagonal": judge.regions_by_diagonal,
                    "nfe_total": int(result.nfe.sum()),
                    "chunk_size": chunk_size}
    return result


def auto_chunk_size(n_units: int, device: torch.device, dtype: torch.dtype) -> int:
    """Samples integrated together: what a quarter of the device's free memory holds (about 40
    state-sized tensors per sample: integrator stages, sampled trajectory, trackers), capped."""
    per_sample = 40 * n_units * torch.finfo(dtype).bits // 8
    if device.type == "cuda":
        return int(min(_GPU_CHUNK, max(256, available_memory(device) // 4 // per_sample)))
    # The CPU's share is also capped in bytes, so that a large network's chunk stays a fixed size
    # however much memory the machine has (1,024 units: about 1,600 samples).
    budget = min(available_memory(device) // 4, _CPU_CHUNK_BYTES)
    return int(min(_CPU_CHUNK, max(64, budget // per_sample)))


def _solve_chunk(network: RecurrentNetwork, integrated_network: RecurrentNetwork, drive: torch.Tensor,
                 starts: torch.Tensor, options: SolverOptions, judge, time_unit: float, bar: tqdm,
                 totals: dict[str, int]) -> dict[str, torch.Tensor]:
    """Integrate one chunk window by window (in `integrated_network`'s dtype), judging in the answer's."""
    batch, dtype, device = len(drive), drive.dtype, drive.device
    integration_dtype = integrated_network.weights.dtype
    window, max_time = options.window * time_unit, options.max_time * time_unit
    times = torch.linspace(0.0, window, options.points_per_window + 1, dtype=integration_dtype, device=device)
    spacing = window / options.points_per_window

    states = starts.clone()
    status = torch.full((batch,), RUNNING, dtype=torch.long, device=device)
    nfe = torch.zeros(batch, dtype=torch.long, device=device)
    settle_time = torch.zeros(batch, dtype=dtype, device=device)
    running = RunningSamples.start(drive.to(integration_dtype), starts.to(integration_dtype))
    elapsed, window_index, n_running, n_precise = 0.0, 0, batch, 0
    while n_running and elapsed < max_time:
        trajectory, window_nfe, integrated = _integrate(integrated_network, running, times, options, n_precise)
        elapsed += window
        window_index += 1
        decided, answer = _decide(judge, running, trajectory, integrated, drive[running.ids], options, window_index,
                                  spacing)
        status[running.ids] = decided
        states[running.ids] = answer
        nfe[running.ids] += window_nfe
        settle_time[running.ids] = elapsed
        counts = tally(decided, len(STATUSES) + 1, offset=1)
        n_precise, *counts = torch.cat([(running.precise & (decided == RUNNING)).sum()[None],
                                        counts]).tolist()  # the loop's one host round trip
        n_running = counts[0]
        for name, count in zip(STATUSES, counts[1:]):
            totals[name] += count
        bar.update(len(running) - n_running)
        bar.set_postfix({name: count for name, count in totals.items() if count}, refresh=False)
        running = running.keep(trajectory[-1], decided == RUNNING, n_running)

    status[running.ids] = TIMEOUT
    states[running.ids] = running.states.to(dtype)
    totals["timeout"] += len(running)
    bar.update(len(running))
    bar.set_postfix({name: count for name, count in totals.items() if count})  # exact at the end
    states = judge.final_answers(states, drive, status == CONVERGED)
    residual = network.residual(states, drive).abs().amax(-1)
    residual = torch.where(torch.isfinite(residual), residual, math.inf)
    return {"states": states, "rates": network.rate(states), "status_codes": status, "residual": residual,
            "nfe": nfe, "settle_time": settle_time}


def _integrate(network: RecurrentNetwork, running: RunningSamples, times: torch.Tensor, options: SolverOptions,
               n_precise: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window for the running samples: the last n_precise at a tolerance 10^4 times finer (down to
    100 ulp of the integration dtype), the rest at the options' own."""
    n_usual = len(running) - n_precise
    if not n_precise:
        return integrate_window(network, running.states, running.drive, times, options)
    eps = torch.finfo(running.states.dtype).eps
    precise = replace(options, rtol=max(options.rtol * PRECISION_FACTOR, 100 * eps),
                      atol=max(options.atol * PRECISION_FACTOR, 100 * eps))
    parts = [integrate_window(network, running.states[n_usual:], running.drive[n_usual:], times, precise)]
    if n_usual:
        parts.insert(0, integrate_window(network, running.states[:n_usual], running.drive[:n_usual], times, options))
    return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def _decide(judge, running: RunningSamples, trajectory: torch.Tensor, integrated: torch.Tensor, drive: torch.Tensor,
            options: SolverOptions, window_index: int, spacing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each running sample's status after this window (RUNNING if undecided) and its answer
    (the polished fixed point if converged, else the end state). Tensor operations only."""
    end = trajectory[-1]
    finite = integrated & torch.isfinite(trajectory).all(dim=0).all(dim=-1)
    safe_end = torch.where(finite[:, None], end, 0.0).to(drive.dtype)
    diverged = finite & (safe_end.abs().amax(-1) > options.diverge_threshold)
    candidates = finite & ~diverged
    # In transit: the active set changed over the window's last stretch, by more than the integrator's
    # jitter about a fixed point on a wall (the judge solves no region's fixed point for it this window).
    before = torch.where(finite[:, None], trajectory[-2], 0.0).to(drive.dtype)
    moved = (safe_end - before).abs().amax(-1) > options.accept_distance * (1.0 + safe_end.abs().amax(-1))
    resting = ((safe_end > 0) == (before > 0)).all(-1) | ~moved
    verdict = judge.classify(safe_end, drive, candidates, resting)
    running.unstable_streak = torch.where(verdict.on_unstable & candidates, running.unstable_streak + 1, 0)
    running.near_attractor |= verdict.near_stable & candidates
    # Near a stable fixed point but short of its certificate twice in a row: the integrator's jitter, not
    # the distance still to go, holds it back (a first such window is usually a state still closing in).
    running.stalled = torch.where(verdict.needs_precision & candidates, running.stalled + 1, 0)
    running.precise |= running.stalled >= 2
    running.track(trajectory, spacing, window_index, options)
    oscillating = torch.zeros_like(finite)
    if window_index % options.oscillation_windows == 0:
        oscillating = running.oscillating(options)
        running.reset_block(end)
    # Later assignments take precedence: a failed or exploding sample is that, whatever else holds.
    decided = torch.full_like(running.ids, RUNNING)
    decided = torch.where(oscillating, OSCILLATING, decided)
    decided = torch.where(running.unstable_streak >= options.unstable_windows, UNSTABLE, decided)
    decided = torch.where(verdict.accepted & candidates, CONVERGED, decided)
    decided = torch.where(diverged, DIVERGED, decided)
    decided = torch.where(~finite, NONFINITE, decided)
    answer = torch.where((decided == CONVERGED)[:, None], verdict.polished, safe_end)
    return decided, answer
