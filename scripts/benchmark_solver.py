"""Benchmark rnn_ff's fixed-point solver against what a user would otherwise write.

    python scripts/benchmark_solver.py [--batch 1024] [--json results.json] [--scaling]   # comparison (CPU default)
    python scripts/benchmark_solver.py --device cuda [--batches 16384,65536] [--json ...]  # throughput table
    python scripts/benchmark_solver.py --task wta|transformation|denoising [--device ...]  # one task's network

Comparison (the default on the CPU). All rows run in this one process on the same inputs
(reference case: WTA of 64 E + 1 I units, alpha 1.2, E->I 3.0, I->E -0.3, tau_E 1, tau_I 0.5,
inputs ~ U[0, 1], float64):
  (a) scipy solve_ivp (RK45, rtol 1e-6, atol 1e-8) one input at a time to t = 200 tau, on a subsample;
  (b) torchdiffeq dopri5 on the whole batch to a fixed horizon t = 200 tau, same tolerances;
  (c) rnn_ff.solve (windowed, per-sample stop, certified exact polish) with its defaults, and
      again with the tolerances of (a) and (b);
  (d) the exact active-set solve given the true active sets: the lower limit.
Errors are against the exact fixed point of the true active set. Times are medians.

Throughput (the default on a CUDA device; --batches picks the batches, also on the CPU, where
it smoke-tests the same code): verified (converged) fixed points per minute of rnn_ff with its
defaults on the reference WTA at batches 2^14 .. 2^20, beside (b) on the same device for
batches up to --horizon-max-batch, and one pass of a 256-hidden two-layer MLP
(rnn_ff.model.FeedForwardApproximator) over the same batch. A row may take --row-budget
seconds and all rows --time-budget: once a row exceeds its budget, or the next one is
predicted to (cost linear in the batch), larger batches are skipped and the report says so.

Task (--task NAME): the task's default network (rnn_ff/tasks/NAME.py; --task-option
key=value changes a field) and its own input sampler. rnn_ff with its defaults beside (b),
scipy.optimize.root (hybr, exact Jacobian, one input at a time, from x = 0 and from x = drive),
a batched damped fixed-point iteration x <- (1 - a) x + a (W f(x) + drive) and torchdeq's
Broyden solver (when torchdeq is installed). "right" counts the inputs whose rates agree
(max abs difference <= 1e-6) with rnn_ff's converged answer, the stable fixed point reached
from rest, out of rnn_ff's converged ones; rnn_ff's own answers are checked against (b)
polished exactly on the active set it ended in. rnn_ff's time is the median of --repeats
solves, the others' one run each, all after a warm-up solve on the device.

GPU work is timed with torch.cuda.synchronize() before each clock reading, so the times
include the kernels still queued when a call returns.

Command line: --flags (argparse), not the key=value overrides of train.py and of the tools that
act on a run (evaluate, export, summarize: rnn_ff/cli.py): a measurement tool with modes
and numeric options that composes no run config.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable, Optional

import numpy as np
import torch
from omegaconf import OmegaConf
from torchdiffeq import odeint

from rnn_ff.model import FeedForwardApproximator
from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import SolverOptions, solve
from rnn_ff.tasks import TASKS, build_task
from rnn_ff.tasks.wta import WTAConfig, wta_network

RTOL, ATOL, HORIZON = 1e-6, 1e-8, 200.0
THROUGHPUT_BATCHES = [2**k for k in range(14, 21)]
FF_HIDDEN = 256  # the MLP of the speed comparison (DESIGN.md's reference point)
RIGHT_TOL = 1e-6  # max abs rate difference within which two answers are the same fixed point
ITERATION_TOL = 1e-9  # residual at which the damped iteration and Broyden stop (rnn_ff's float64 residual_tol)
CHECK_EVERY = 10  # damped iteration steps between residual checks (a check waits for the GPU)
CPU = torch.device("cpu")


def reference_network(n_excitatory: int = 64) -> RecurrentNetwork:
    return wta_network(WTAConfig(n_excitatory=n_excitatory, self_excitation=1.2, excitatory_to_inhibitory=3.0,
                                 inhibitory_to_excitatory=0.3, tau_excitatory=1.0, tau_inhibitory=0.5))


def draw_inputs(n: int, n_excitatory: int, seed: int, hard_fraction: float = 0.0) -> torch.Tensor:
    """Uniform inputs; a fraction of them made near-ties (top two within 1e-3)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(n, n_excitatory, generator=generator, dtype=torch.float64)
    n_hard = int(round(hard_fraction * n))
    if n_hard:
        top2 = inputs[:n_hard].topk(2, dim=1)
        gap = 1e-3 * torch.rand(n_hard, generator=generator, dtype=torch.float64)
        inputs[torch.arange(n_hard), top2.indices[:, 1]] = top2.values[:, 0] - gap
    return inputs


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on a GPU, so that a clock reading counts finished work; a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], repeats: int, device: torch.device = CPU) -> tuple[float, object]:
    """Median wall time of `repeats` calls (the device synchronised around each) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """GPU: the peak allocated since the last reset; CPU: the process's peak RSS (a running maximum)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exact_fixed_points(network: RecurrentNetwork, drive: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """(I - W D) x = drive with D the given active sets. On the CPU the batched LU runs on one
    thread: torch 2.13's multi-threaded batched getrf returns corrupt pivots for N >~ 150."""
    eye = torch.eye(network.n_units, dtype=drive.dtype, device=drive.device)
    threads = torch.get_num_threads()
    if drive.device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return torch.linalg.solve(eye - network.weights * active[:, None, :].to(drive.dtype), drive)
    finally:
        torch.set_num_threads(threads)


def scipy_row(network: RecurrentNetwork, inputs: torch.Tensor) -> dict:
    from scipy.integrate import solve_ivp

    w, tau = network.weights.numpy(), network.tau.numpy()
    drive = network.drive(inputs).numpy()
    start, states, nfe = time.perf_counter(), [], []
    for d in drive:
        solution = solve_ivp(lambda t, x: (-x + w @ np.maximum(x, 0.0) + d) / tau, (0.0, HORIZON * tau.max()),
                             np.zeros(len(tau)), method="RK45", rtol=RTOL, atol=ATOL)
        states.append(solution.y[:, -1])
        nfe.append(solution.nfev)
    seconds = (time.perf_counter() - start) / len(drive)
    return {"seconds_per_fp": seconds, "nfe": float(np.mean(nfe)), "states": torch.tensor(np.array(states))}


def fixed_horizon_row(network: RecurrentNetwork, drive: torch.Tensor, repeats: int) -> dict:
    """(b): dopri5 on the whole batch, on the drive's device, from 0 to t = 200 tau."""
    calls = 0

    def rhs(t, x):
        nonlocal calls
        calls += 1
        return network.velocity(x, drive)

    times = torch.tensor([0.0, HORIZON * float(network.tau.max())], dtype=drive.dtype, device=drive.device)
    seconds, trajectory = timed(lambda: odeint(rhs, torch.zeros_like(drive), times, rtol=RTOL, atol=ATOL), repeats,
                                drive.device)
    return {"seconds_per_fp": seconds / len(drive), "nfe": calls / repeats, "states": trajectory[-1]}


# --- comparison (a)-(d) --------------------------------------------------------------------------------------

def benchmark(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    network = reference_network(args.n_excitatory)
    inputs = draw_inputs(args.batch, args.n_excitatory, args.seed)
    net = network.to(device)
    drive = net.drive(inputs.to(device))
    options = SolverOptions()  # rnn_ff's defaults (its trajectory tolerance is looser: answers are polished)
    tight = SolverOptions(rtol=RTOL, atol=ATOL)

    horizon = fixed_horizon_row(net, drive, args.repeats)
    active = horizon["states"] > 0  # the true active sets, independently of rnn_ff
    exact = exact_fixed_points(net, drive, active)
    exact_seconds, _ = timed(lambda: exact_fixed_points(net, drive, active), args.repeats, device)
    ours_seconds, ours = timed(lambda: solve(network, inputs, options, device=device), args.repeats, device)
    tight_seconds, ours_tight = timed(lambda: solve(network, inputs, tight, device=device), args.repeats, device)
    sub = slice(0, args.scipy_samples)
    scipy = scipy_row(network, inputs[sub])
    single_seconds, single = timed(lambda: solve(network, inputs, options, device=device, dtype=torch.float32),
                                   args.repeats, device)
    hard_inputs = draw_inputs(args.batch, args.n_excitatory, args.seed, hard_fraction=0.01)
    hard_seconds, hard = timed(lambda: solve(network, hard_inputs, options, device=device), args.repeats, device)
    hard_winner_ok = bool(torch.equal(hard.rates[:, : args.n_excitatory].argmax(1), hard_inputs.argmax(1)))

    def error(states: torch.Tensor, reference: torch.Tensor) -> float:
        return (states.to(reference) - reference).abs().max().item()

    n = args.batch
    rows = {
        "scipy_rk45_loop": {"seconds_per_fp": scipy["seconds_per_fp"], "nfe_per_fp": scipy["nfe"],
                            "max_error": error(scipy["states"], exact[sub].cpu())},
        "torchdiffeq_fixed_horizon": {"seconds_per_fp": horizon["seconds_per_fp"], "nfe_per_fp": horizon["nfe"],
                                      "max_error": error(horizon["states"], exact)},
        "rnn_ff": {"seconds_per_fp": ours_seconds / n, "nfe_per_fp": ours.nfe.double().mean().item(),
                   "max_error": error(ours.states, exact.cpu())},
        "rnn_ff_rtol_1e-6": {"seconds_per_fp": tight_seconds / n, "nfe_per_fp": ours_tight.nfe.double().mean().item(),
                             "max_error": error(ours_tight.states, exact.cpu())},
        "rnn_ff_float32": {"seconds_per_fp": single_seconds / n, "nfe_per_fp": single.nfe.double().mean().item(),
                           "max_error": error(single.states.double(), exact.cpu()),
                           "max_relative_error": (error(single.states.double(), exact.cpu())
                                                  / exact.abs().max().item())},
        "rnn_ff_1pct_near_ties": {"seconds_per_fp": hard_seconds / n, "nfe_per_fp": hard.nfe.double().mean().item(),
                                  "max_error": float("nan")},
        "exact_active_set": {"seconds_per_fp": exact_seconds / n, "nfe_per_fp": 0.0, "max_error": 0.0},
    }
    return {
        "device": str(device), "batch": n, "units": network.n_units, "threads": torch.get_num_threads(),
        "rows": rows,
        "speedup_vs_fixed_horizon": horizon["seconds_per_fp"] / rows["rnn_ff"]["seconds_per_fp"],
        "speedup_vs_scipy": scipy["seconds_per_fp"] / rows["rnn_ff"]["seconds_per_fp"],
        "ratio_to_exact_limit": rows["rnn_ff"]["seconds_per_fp"] / rows["exact_active_set"]["seconds_per_fp"],
        "max_error": rows["rnn_ff"]["max_error"],
        "float32_max_relative_error": rows["rnn_ff_float32"]["max_relative_error"],
        "near_tie_cost_ratio": hard_seconds / ours_seconds,
        "near_tie_winners_correct": hard_winner_ok,
        "statuses": ours.counts(),
        "statuses_near_ties": hard.counts(),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def scaling(args: argparse.Namespace) -> list[dict]:
    """Cost per fixed point against network size and batch size (rnn_ff only)."""
    device = torch.device(args.device)
    rows = []
    for units in args.scaling_units:
        network = reference_network(units - 1)
        for batch in args.scaling_batches:
            inputs = draw_inputs(batch, units - 1, args.seed)
            reset_peak_memory(device)
            seconds, result = timed(lambda: solve(network, inputs, SolverOptions(), device=device), 1, device)
            rows.append({"units": units, "batch": batch, "seconds_per_fp": seconds / batch,
                         "fixed_points_per_second": batch / seconds, "converged": result.counts()["converged"],
                         "peak_memory_mb": peak_memory_mb(device)})
            print(f"  units {units:5d}  batch {batch:6d}  {seconds / batch * 1e3:8.4f} ms/fp  "
                  f"{batch / seconds:10.0f} fp/s  converged {rows[-1]['converged']}/{batch}", flush=True)
    return rows


def print_table(report: dict) -> None:
    defaults = SolverOptions()
    print(f"\nWTA {report['units']} units, batch {report['batch']}, {report['device']}, {report['threads']} threads, "
          f"float64; scipy and fixed horizon at rtol {RTOL}, atol {ATOL}; rnn_ff at its defaults "
          f"(rtol {defaults.rtol}, atol {defaults.atol}) and at rtol {RTOL}")
    print(f"{'method':28s} {'ms per fp':>10s} {'nfe per fp':>11s} {'max error':>10s} {'vs rnn_ff':>10s}")
    ours = report["rows"]["rnn_ff"]["seconds_per_fp"]
    for name, row in report["rows"].items():
        print(f"{name:28s} {row['seconds_per_fp'] * 1e3:10.4f} {row['nfe_per_fp']:11.0f} {row['max_error']:10.2e} "
              f"{row['seconds_per_fp'] / ours:9.2f}x")
    for key in ("speedup_vs_fixed_horizon", "speedup_vs_scipy", "ratio_to_exact_limit", "max_error",
                "float32_max_relative_error", "near_tie_cost_ratio", "near_tie_winners_correct", "statuses",
                "peak_memory_mb"):
        print(f"{key}: {report[key]}")


def print_rows(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """A plain-text table: `columns` are (key, header, format spec); the first column is left-aligned,
    a missing value prints as '-'."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([format(row[key], spec) if row.get(key) is not None else "-" for key, _, spec in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(line, widths))), flush=True)


# --- throughput table ----------------------------------------------------------------------------------------

def ff_pass_seconds(n_outputs: int, inputs: torch.Tensor, device: torch.device, repeats: int = 5) -> float:
    """One pass of a two-layer MLP (256 hidden, float32 as trained) over the batch. Its weights are
    untrained: a pass costs the same whatever they are."""
    model = FeedForwardApproximator(inputs.shape[1], n_outputs, hidden=FF_HIDDEN).to(device).eval()
    batch = inputs.to(device, torch.float32)
    with torch.no_grad():
        model(batch)  # warm-up: kernel selection and memory allocation are not part of a pass
        seconds, _ = timed(lambda: model(batch), repeats, device)
    return seconds


def skip_reason(rows: list[dict], batch: int, spent: float, args: argparse.Namespace) -> Optional[str]:
    """Why the row of `batch` is not run (None: run it). Rows run smallest batch first; a row's
    cost is predicted linear in the batch from the last row (fixed horizon included only where
    this batch gets one), which overestimates where the device is not yet saturated."""
    if not rows:
        return None
    over = [row for row in rows if row["row_seconds"] > args.row_budget]
    if over:
        return f"batch {over[0]['batch']} took {over[0]['row_seconds']:.0f} s > --row-budget {args.row_budget:g} s"
    last = rows[-1]
    scale = batch / last["batch"]
    predicted = scale * (last["seconds"] + last["ff_seconds"])
    if batch <= args.horizon_max_batch:
        predicted += scale * last.get("fixed_horizon_seconds", 0.0)
    if predicted > args.row_budget:
        return f"predicted {predicted:.0f} s (linear from batch {last['batch']}) > --row-budget {args.row_budget:g} s"
    if args.time_budget is not None and spent + predicted > args.time_budget:
        return (f"predicted {predicted:.0f} s after {spent:.0f} s spent would exceed --time-budget "
                f"{args.time_budget:g} s")
    return None


def throughput_row(network: RecurrentNetwork, batch: int, device: torch.device, args: argparse.Namespace) -> dict:
    """rnn_ff, the fixed horizon (small batches) and the FF pass on one batch of the reference WTA."""
    inputs = draw_inputs(batch, network.n_inputs, args.seed)
    reset_peak_memory(device)
    seconds, result = timed(lambda: solve(network, inputs, device=device), 1, device)
    converged = result.counts()["converged"]
    row = {"batch": batch, "seconds": seconds, "ms_per_fp": 1e3 * seconds / batch,
           "verified_per_minute": 60 * converged / seconds, "converged": converged, "statuses": result.counts(),
           "nfe_per_fp": result.nfe.double().mean().item(), "peak_memory_mb": peak_memory_mb(device)}
    # The same solve integrating in float32 (answers still polished and certified in float64).
    mixed_seconds, mixed = timed(lambda: solve(network, inputs, SolverOptions(integration_dtype="float32"),
                                               device=device), 1, device)
    row |= {"float32_integration_per_minute": 60 * mixed.counts()["converged"] / mixed_seconds,
            "float32_integration_max_rate_diff": (mixed.rates - result.rates).abs().max().item()}
    if batch <= args.horizon_max_batch:
        net = network.to(device)
        horizon = fixed_horizon_row(net, net.drive(inputs.to(device)), 1)
        horizon_seconds = horizon["seconds_per_fp"] * batch
        row |= {"fixed_horizon_seconds": horizon_seconds, "fixed_horizon_per_minute": 60 * batch / horizon_seconds,
                "fixed_horizon_nfe_per_fp": horizon["nfe"], "speedup_vs_fixed_horizon": horizon_seconds / seconds,
                "max_rate_diff_vs_fixed_horizon":
                    (network.rate(horizon["states"].cpu()) - result.rates).abs().max().item()}
    ff = ff_pass_seconds(network.n_units, inputs, device)
    return row | {"ff_seconds": ff, "ff_per_minute": 60 * batch / ff, "ff_speedup": seconds / ff}


def throughput(args: argparse.Namespace) -> dict:
    """Verified fixed points per minute against the batch size, on one device. With --json the
    report is rewritten after every row, so rows done survive a kill from outside."""
    device = torch.device(args.device)
    network = reference_network(args.n_excitatory)
    # The first calls on a device pay for its context, libraries and kernel selection: not part of a row.
    few = draw_inputs(64, args.n_excitatory, args.seed + 1)
    warm_up, _ = timed(lambda: solve(network, few, device=device), 1, device)
    ff_pass_seconds(network.n_units, few, device)
    report = {"mode": "throughput", "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "units": network.n_units,
              "ff_hidden": FF_HIDDEN, "row_budget": args.row_budget, "time_budget": args.time_budget,
              "warm_up_seconds": warm_up, "solver_options": asdict(SolverOptions()), "rows": [], "skipped": []}
    budget = f"{args.time_budget:g} s" if args.time_budget is not None else "none"
    print(f"\nthroughput: WTA {network.n_units} units, float64, rnn_ff defaults, {device} ({report['device_name']}); "
          f"row budget {args.row_budget:g} s, time budget {budget}; warm-up {warm_up:.1f} s", flush=True)
    rows, skipped, spent = report["rows"], report["skipped"], 0.0
    for batch in sorted(args.batches):
        reason = skip_reason(rows, batch, spent, args)
        if reason is None and skipped:
            reason = f"a smaller batch was skipped ({skipped[-1]['batch']})"
        if reason is None:
            start = time.perf_counter()
            try:
                row = throughput_row(network, batch, device, args)
            except torch.cuda.OutOfMemoryError as error:
                reason = f"out of GPU memory ({str(error).splitlines()[0]})"
                torch.cuda.empty_cache()
            else:
                row["row_seconds"] = time.perf_counter() - start
                spent += row["row_seconds"]
                rows.append(row)
                print(f"  batch {batch}: {row['verified_per_minute']:.3g} verified fp/min in {row['seconds']:.2f} s "
                      f"({row['converged']}/{batch} converged)", flush=True)
        if reason is not None:
            skipped.append({"batch": batch, "reason": reason})
            print(f"  batch {batch}: skipped, {reason}", flush=True)
        if args.json:
            write_json(report, args.json)
    print()
    print_rows(rows, [("batch", "batch", "d"), ("verified_per_minute", "verified fp/min", ".3g"),
                      ("ms_per_fp", "ms per fp", ".4f"), ("converged", "converged", "d"),
                      ("nfe_per_fp", "nfe per fp", ".0f"), ("peak_memory_mb", "peak MB", ".0f"),
                      ("float32_integration_per_minute", "float32-integration fp/min", ".3g"),
                      ("fixed_horizon_per_minute", "fixed horizon fp/min", ".3g"),
                      ("speedup_vs_fixed_horizon", "vs fixed horizon", ".2f"),
                      ("ff_per_minute", "FF fp/min", ".3g"), ("ff_speedup", "FF speedup", ".0f")])
    for entry in skipped:
        print(f"skipped batch {entry['batch']}: {entry['reason']}")
    return report


# --- one task: rnn_ff against other fixed-point methods ------------------------------------------------------

@dataclass
class Attempt:
    """A method's final states (CPU, float64) for the first len(states) inputs, and its wall time."""

    states: torch.Tensor
    seconds: float
    extra: dict = field(default_factory=dict)


def fixed_horizon_method(network: RecurrentNetwork, inputs: torch.Tensor, device: torch.device,
                         args: argparse.Namespace) -> Attempt:
    net = network.to(device)
    row = fixed_horizon_row(net, net.drive(inputs.to(device)), 1)
    return Attempt(row["states"].cpu(), row["seconds_per_fp"] * len(inputs), {"nfe_per_fp": row["nfe"]})


def scipy_root_method(network: RecurrentNetwork, inputs: torch.Tensor, device: torch.device,
                      args: argparse.Namespace, start: str) -> Attempt:
    """scipy.optimize.root (MINPACK hybr) of -x + W relu(x) + drive with its exact Jacobian
    -I + W diag(x > 0), one input at a time on the CPU (--root-samples of them), from x = 0 or
    from x = drive (the answer if W were 0). The default tasks are all ReLU networks."""
    from scipy.optimize import root

    w = network.weights.numpy()
    eye = np.eye(len(w))
    drive = network.drive(inputs[: args.root_samples]).numpy()
    states, calls, begin = [], [], time.perf_counter()
    for d in drive:
        solution = root(lambda x: -x + w @ np.maximum(x, 0.0) + d, np.zeros_like(d) if start == "zero" else d,
                        jac=lambda x: w * (x > 0) - eye, method="hybr")
        states.append(solution.x)
        calls.append(solution.nfev)
    return Attempt(torch.from_numpy(np.array(states)), time.perf_counter() - begin,
                   {"nfe_per_fp": float(np.mean(calls))})


def damped_iteration_method(network: RecurrentNetwork, inputs: torch.Tensor, device: torch.device,
                            args: argparse.Namespace) -> Attempt:
    """x <- (1 - a) x + a (W f(x) + drive) on the whole batch from x = 0, until every residual
    |-x + W f(x) + drive|_inf < 1e-9 or --max-iterations steps. Too large an a makes the
    iteration overshoot and oscillate where the ODE settles."""
    net = network.to(device)
    drive = net.drive(inputs.to(device))
    a = args.damping

    def iterate() -> tuple[torch.Tensor, int]:
        x, steps = torch.zeros_like(drive), 0
        while steps < args.max_iterations:
            for _ in range(CHECK_EVERY):
                x = (1 - a) * x + a * (net.rate(x) @ net.weights.T + drive)
            steps += CHECK_EVERY
            if net.residual(x, drive).abs().amax() < ITERATION_TOL:
                break
        return x, steps

    seconds, (states, steps) = timed(iterate, 1, device)
    return Attempt(states.cpu(), seconds, {"iterations": steps})


def broyden_method(network: RecurrentNetwork, inputs: torch.Tensor, device: torch.device,
                   args: argparse.Namespace) -> Attempt:
    """torchdeq's batched Broyden solver on the map x -> W f(x) + drive from x = 0 (stops when every
    sample's |x - map(x)|_2 < 1e-9 or after --broyden-iterations; returns each sample's best)."""
    from torchdeq.solver import broyden_solver  # optional: ImportError when torchdeq is not installed

    net = network.to(device)
    drive = net.drive(inputs.to(device))
    seconds, (states, _, info) = timed(
        lambda: broyden_solver(lambda x: net.rate(x) @ net.weights.T + drive, torch.zeros_like(drive),
                               max_iter=args.broyden_iterations, tol=ITERATION_TOL, stop_mode="abs"), 1, device)
    return Attempt(states.cpu(), seconds, {"iterations": info["nstep"].double().mean().item()})


# Each method: (network, inputs, device, args) -> Attempt.
METHODS: dict[str, Callable[..., Attempt]] = {
    "torchdiffeq_fixed_horizon": fixed_horizon_method,
    "scipy_root_from_zero": partial(scipy_root_method, start="zero"),
    "scipy_root_from_drive": partial(scipy_root_method, start="drive"),
    "damped_iteration": damped_iteration_method,
    "torchdeq_broyden": broyden_method,
}


def task_config(name: str, assignments: list[str]):
    """The task's schema defaults with `key=value` changes (checked by the schema)."""
    return OmegaConf.merge(OmegaConf.structured(TASKS[name][0]), OmegaConf.from_dotlist(assignments))


def judge(network: RecurrentNetwork, drive: torch.Tensor, attempt: Attempt, reference_rates: torch.Tensor,
          reference_converged: torch.Tensor) -> dict:
    """Cost, residual |-x + W f(x) + drive|_inf reached, and agreement with the reference answers."""
    n = len(attempt.states)
    residual = network.residual(attempt.states, drive[:n]).abs().amax(-1).nan_to_num(nan=float("inf"))
    agrees = (network.rate(attempt.states) - reference_rates[:n]).abs().amax(-1) <= RIGHT_TOL  # nan: False
    converged = reference_converged[:n]
    right, of = int((agrees & converged).sum()), int(converged.sum())
    return {"samples": n, "ms_per_fp": 1e3 * attempt.seconds / n, "residual_max": residual.max().item(),
            "residual_median": residual.median().item(), "right": right, "of_converged": of,
            "right_fraction": right / of if of else float("nan"), **attempt.extra}


def task_comparison(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    task = build_task(task_config(args.task, args.task_option))
    network = task.network
    inputs, _ = task.sample(args.batch, torch.Generator().manual_seed(args.seed))
    drive = network.drive(inputs)
    solve(network, inputs[:16], device=device)  # warm-up: the device's first calls are not part of a row
    seconds, reference = timed(lambda: solve(network, inputs, device=device), args.repeats, device)
    attempts = {}
    skipped = {}
    for name, method in METHODS.items():
        try:
            attempts[name] = method(network, inputs, device, args)
        except ImportError as error:
            skipped[name] = f"not installed ({error.name}); optional"
    # rnn_ff's answers against (b) polished exactly on its final active sets; the others against rnn_ff's.
    horizon = attempts["torchdiffeq_fixed_horizon"].states
    polished_horizon = network.rate(exact_fixed_points(network, drive, horizon > 0))
    rows = {"rnn_ff": judge(network, drive, Attempt(reference.states, seconds,
                                                    {"nfe_per_fp": reference.nfe.double().mean().item()}),
                            polished_horizon, reference.converged)}
    rows |= {name: judge(network, drive, attempt, reference.rates, reference.converged)
             for name, attempt in attempts.items()}
    for row in rows.values():
        row["vs_rnn_ff"] = row["ms_per_fp"] / rows["rnn_ff"]["ms_per_fp"]
    rows |= {name: {"skipped": reason} for name, reason in skipped.items()}
    return {"mode": "task", "task": args.task, "task_options": args.task_option, "device": str(device),
            "threads": torch.get_num_threads(), "units": network.n_units, "batch": args.batch,
            "root_samples": min(args.root_samples, args.batch), "damping": args.damping,
            "statuses": reference.counts(), "rows": rows}


def print_task(report: dict) -> None:
    options = f" ({', '.join(report['task_options'])})" if report["task_options"] else ""
    statuses = ", ".join(f"{name} {count}" for name, count in report["statuses"].items() if count)
    print(f"\ntask {report['task']}{options}: {report['units']} units, {report['batch']} inputs, {report['device']}, "
          f"{report['threads']} threads, float64; rnn_ff statuses: {statuses}")
    rows = [{"method": name, **row} for name, row in report["rows"].items() if "skipped" not in row]
    for row in rows:
        row["right_of"] = f"{row['right']}/{row['of_converged']}"
    print_rows(rows, [("method", "method", "s"), ("ms_per_fp", "ms per fp", ".4f"), ("vs_rnn_ff", "x rnn_ff", ".2f"),
                      ("residual_max", "residual max", ".1e"), ("residual_median", "residual median", ".1e"),
                      ("right_of", "right", "s"), ("samples", "inputs", "d")])
    for name, row in report["rows"].items():
        if "skipped" in row:
            print(f"{name}: skipped, {row['skipped']}")
    print(f"right: rates within {RIGHT_TOL:g} (max abs) of rnn_ff's converged answer; rnn_ff's own against "
          f"the fixed horizon polished on its active set. Damped iteration a = {report['damping']:g}.")


def write_json(report: dict, path: str) -> None:
    with open(path, "w") as file:
        json.dump(report, file, indent=2)


def batch_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024, help="inputs of the comparison and of --task")
    parser.add_argument("--n-excitatory", type=int, default=64)
    parser.add_argument("--scipy-samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--scaling", action="store_true", help="also measure cost against size and batch")
    parser.add_argument("--scaling-units", type=int, nargs="+", default=[65, 257, 1025])
    parser.add_argument("--scaling-batches", type=int, nargs="+", default=[1024, 16384, 65536])
    parser.add_argument("--batches", type=batch_list,
                        help="throughput table at these batches, comma-separated (default on CUDA: 2^14,...,2^20)")
    parser.add_argument("--row-budget", type=float, default=60.0, help="seconds one throughput row may take")
    parser.add_argument("--time-budget", type=float, help="seconds all throughput rows may take (default: no limit)")
    parser.add_argument("--horizon-max-batch", type=int, default=2**16,
                        help="largest batch that also gets the fixed-horizon row")
    parser.add_argument("--task", choices=["wta", "transformation", "denoising"])
    parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                        help="change a field of the task's config (repeatable), e.g. self_excitation=1.2")
    parser.add_argument("--root-samples", type=int, default=256, help="inputs solved by scipy's root, one at a time")
    parser.add_argument("--damping", type=float, default=0.1, help="a of the damped fixed-point iteration")
    parser.add_argument("--max-iterations", type=int, default=20000, help="step cap of the damped iteration")
    parser.add_argument("--broyden-iterations", type=int, default=100)
    args = parser.parse_args()

    if args.task:
        report = task_comparison(args)
        print_task(report)
    elif args.batches or torch.device(args.device).type == "cuda":
        args.batches = args.batches or THROUGHPUT_BATCHES
        report = throughput(args)
    else:
        report = benchmark(args)
        print_table(report)
    if args.scaling:
        print("\nscaling (rnn_ff):")
        report["scaling"] = scaling(args)
    if args.json:
        write_json(report, args.json)


if __name__ == "__main__":
    main()
