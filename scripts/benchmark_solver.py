"""Benchmark rnn_ff's fixed-point solver against what a user would otherwise write.

    python scripts/benchmark_solver.py [--batch 1024] [--device cpu] [--json results.json] [--scaling]

All rows run in this one process on the same inputs (reference case: WTA of 64 E + 1 I
units, alpha 1.2, E->I 3.0, I->E -0.3, tau_E 1, tau_I 0.5, inputs ~ U[0, 1], float64):
  (a) scipy solve_ivp (RK45, rtol 1e-6, atol 1e-8) one input at a time to t = 200 tau, on a subsample;
  (b) torchdiffeq dopri5 on the whole batch to a fixed horizon t = 200 tau, same tolerances;
  (c) rnn_ff.solve (windowed, per-sample stop, certified exact polish) with its defaults, and
      again with the tolerances of (a) and (b);
  (d) the exact active-set solve given the true active sets: the lower limit.
Errors are against the exact fixed point of the true active set. Times are medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch
from torchdiffeq import odeint

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import SolverOptions, polish, solve
from rnn_ff.tasks.wta import WTAConfig, wta_network

RTOL, ATOL, HORIZON = 1e-6, 1e-8, 200.0


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


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def exact_fixed_points(network: RecurrentNetwork, drive: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """(I - W D) x = drive with D the given active sets."""
    eye = torch.eye(network.n_units, dtype=drive.dtype, device=drive.device)
    return torch.linalg.solve(eye - network.weights * active[:, None, :].to(drive.dtype), drive)


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
    calls = 0

    def rhs(t, x):
        nonlocal calls
        calls += 1
        return network.velocity(x, drive)

    times = torch.tensor([0.0, HORIZON * float(network.tau.max())], dtype=drive.dtype, device=drive.device)
    seconds, trajectory = timed(lambda: odeint(rhs, torch.zeros_like(drive), times, rtol=RTOL, atol=ATOL), repeats)
    return {"seconds_per_fp": seconds / len(drive), "nfe": calls / repeats, "states": trajectory[-1]}


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
    exact_seconds, _ = timed(lambda: exact_fixed_points(net, drive, active), args.repeats)
    ours_seconds, ours = timed(lambda: solve(network, inputs, options, device=device), args.repeats)
    tight_seconds, ours_tight = timed(lambda: solve(network, inputs, tight, device=device), args.repeats)
    sub = slice(0, args.scipy_samples)
    scipy = scipy_row(network, inputs[sub])
    single_seconds, single = timed(lambda: solve(network, inputs, options, device=device, dtype=torch.float32),
                                   args.repeats)
    hard_inputs = draw_inputs(args.batch, args.n_excitatory, args.seed, hard_fraction=0.01)
    hard_seconds, hard = timed(lambda: solve(network, hard_inputs, options, device=device), args.repeats)
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
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds, result = timed(lambda: solve(network, inputs, SolverOptions(), device=device), 1)
            rows.append({"units": units, "batch": batch, "seconds_per_fp": seconds / batch,
                         "fixed_points_per_second": batch / seconds, "converged": result.counts()["converged"],
                         "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--n-excitatory", type=int, default=64)
    parser.add_argument("--scipy-samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--scaling", action="store_true", help="also measure cost against size and batch")
    parser.add_argument("--scaling-units", type=int, nargs="+", default=[65, 257, 1025])
    parser.add_argument("--scaling-batches", type=int, nargs="+", default=[1024, 16384, 65536])
    args = parser.parse_args()
    report = benchmark(args)
    print_table(report)
    if args.scaling:
        print("\nscaling (rnn_ff):")
        report["scaling"] = scaling(args)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
