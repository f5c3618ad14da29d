"""How rnn_ff's fixed-point solve grows with the network, against explicit Euler and torchdeq's Broyden.

    python scripts/benchmark_scaling.py [--units 64 256 1024 4096] [--batch 256] [--json out.json]

Networks (rnn_ff/random_networks.py; 80% excitatory, connection probability 0.2, tau_I = tau_E / 2,
inputs u ~ U[0, 1] on every unit, float64, one thread):
  proven      E/I ReLU with rho(W_EE) = 0.5: one global stability proof covers every input;
  isn         E/I ReLU with spectral radius 0.9: inhibition-stabilized (rho(W_EE) > 1), no global
              proof, so each input's region is analysed (the per-region path);
  multistable the proven network with a winner-take-all pair (units 0 and 1 inhibit each other
              with weight -2): I - W is not a P-matrix, no global proof;
  tanh        the isn network's weights with tanh rates (Newton and the smooth certificate, or a
              contraction proof where one holds);
  ring_ssn    the ring SSN task (100 units, rnn_ff/tasks/ring_ssn.py) with its own inputs, at one size;
  balanced    the balanced E/I task (1,000 units, rnn_ff/tasks/balanced.py: Rosenbaum 2024's network,
              inhibition-stabilized, no global proof) with its own inputs, at one size.

Each row runs in a fresh subprocess, so its peak RSS (ru_maxrss, the interpreter and torch
included: the "baseline" row is an interpreter that only imports them) is that row's own. In the
same process, after rnn_ff: explicit Euler from rest, x += dt / tau (-x + W f(x) + h) with dt = 0.1
tau_E (the largest tau), until every input's residual |-x + W f(x) + h|_inf <= 1e-9 (checked every 10 steps, at
most --euler-steps), and torchdeq's Broyden solver on x -> W f(x) + h from 0 (when torchdeq is
installed). "same" counts the inputs whose answer agrees with rnn_ff's converged one to 1e-6.
A row whose predicted time exceeds --row-budget seconds (cost ~ N^3 per input without a proof,
from the row at the previous size) is skipped and says so.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

KINDS = ["proven", "isn", "multistable", "tanh"]
TASK_KINDS = {"ring_ssn": 100, "balanced": 1000}  # built-in tasks, each at its own size
RESIDUAL = 1e-9
SAME = 1e-6
CHECK_EVERY = 10


def build(kind: str, units: int):
    """(network, inputs sampler) of one benchmark row."""
    from rnn_ff.network import RecurrentNetwork
    from rnn_ff.random_networks import random_ei_network

    if kind in TASK_KINDS:
        from rnn_ff.tasks import TASKS, build_task

        task = build_task(TASKS[kind][0]())
        return task.network, lambda batch: task.sample(batch, torch.Generator().manual_seed(1))[0]
    network = random_ei_network(units, excitatory_radius=0.5) if kind in ("proven", "multistable") else \
        random_ei_network(units, spectral_radius=0.9)
    if kind == "multistable":
        weights = network.weights.clone()
        weights[0, 1] = weights[1, 0] = -2.0
        network = RecurrentNetwork(weights, network.tau, network.input_matrix, network.bias)
    if kind == "tanh":
        network = RecurrentNetwork(network.weights, network.tau, network.input_matrix, network.bias, activation="tanh")
    return network, lambda batch: torch.rand(batch, units, generator=torch.Generator().manual_seed(1),
                                             dtype=torch.float64)


def euler(network, drive: torch.Tensor, max_steps: int) -> tuple[torch.Tensor, int]:
    """Explicit Euler from rest to residual RESIDUAL (every input), or max_steps."""
    dt_over_tau = 0.1 * network.tau.max() / network.tau
    x = torch.zeros_like(drive)
    for step in range(0, max_steps, CHECK_EVERY):
        for _ in range(CHECK_EVERY):
            x = x + dt_over_tau * (-x + network.rate(x) @ network.weights.T + drive)
        if network.residual(x, drive).abs().amax() <= RESIDUAL:
            return x, step + CHECK_EVERY
    return x, max_steps


def broyden(network, drive: torch.Tensor, iterations: int) -> tuple[torch.Tensor, float]:
    from torchdeq.solver import broyden_solver

    states, _, info = broyden_solver(lambda x: network.rate(x) @ network.weights.T + drive, torch.zeros_like(drive),
                                     max_iter=iterations, tol=RESIDUAL, stop_mode="abs")
    return states, info["nstep"].double().mean().item()


def same_as(answer: torch.Tensor, ours: torch.Tensor, converged: torch.Tensor) -> int:
    close = (answer - ours).abs().amax(-1) <= SAME
    return int((close & converged).sum())


def row(kind: str, units: int, batch: int, euler_steps: int, broyden_iterations: int) -> dict:
    """One row, measured in this process (run by the parent as a subprocess)."""
    from rnn_ff.solver import SolverOptions, solve

    torch.set_num_threads(1)
    network, sample = build(kind, units)
    inputs = sample(batch)
    drive = network.drive(inputs)
    start = time.perf_counter()
    result = solve(network, inputs, SolverOptions())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    converged = torch.tensor([status == "converged" for status in result.status])
    out = {"kind": kind, "units": network.n_units, "batch": batch, "ms_per_fp": 1e3 * seconds / batch,
           "statuses": {k: v for k, v in result.counts().items() if v}, "peak_rss_mb": peak,
           "certificate": result.stats["certificate"].split(":")[0], "regions": result.stats["distinct_active_sets"]}
    start = time.perf_counter()
    states, steps = euler(network, drive, euler_steps)
    out["euler"] = {"ms_per_fp": 1e3 * (time.perf_counter() - start) / batch, "steps": steps,
                    "reached": steps < euler_steps, "same": same_as(states, result.states, converged)}
    out["euler_ratio"] = out["ms_per_fp"] / out["euler"]["ms_per_fp"]
    try:
        start = time.perf_counter()
        states, iterations = broyden(network, drive, broyden_iterations)
        out["broyden"] = {"ms_per_fp": 1e3 * (time.perf_counter() - start) / batch, "iterations": iterations,
                          "same": same_as(states, result.states, converged)}
    except ImportError:
        out["broyden"] = {"skipped": "torchdeq is not installed"}
    return out


def baseline_rss_mb() -> float:
    code = "import resource, torch, rnn_ff.solver; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def predicted_seconds(rows: list[dict], kind: str, units: int, batch: int) -> float:
    """From the largest measured row of this kind: rnn_ff plus Euler, scaled as N^3 (no proof) or N^2.5."""
    done = [r for r in rows if r["kind"] == kind and "ms_per_fp" in r]
    if not done:
        return 0.0
    last = done[-1]
    power = 2.5 if last["certificate"] == "globally stable" else 3.0
    per_fp = last["ms_per_fp"] + last["euler"]["ms_per_fp"]
    return per_fp * 1e-3 * batch * (units / last["units"]) ** power


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--kinds", nargs="+", default=KINDS + list(TASK_KINDS), choices=KINDS + list(TASK_KINDS))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--euler-steps", type=int, default=200_000)
    parser.add_argument("--broyden-iterations", type=int, default=200)
    parser.add_argument("--row-budget", type=float, default=600.0, help="skip a row predicted to take longer")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--row", nargs=2, metavar=("KIND", "UNITS"), help=argparse.SUPPRESS)  # a child's job
    args = parser.parse_args()
    if args.row:
        print(json.dumps(row(args.row[0], int(args.row[1]), args.batch, args.euler_steps, args.broyden_iterations)))
        return

    report = {"baseline_rss_mb": baseline_rss_mb(), "batch": args.batch, "threads": 1, "rows": []}
    print(f"{args.batch} inputs per row, one thread; peak RSS includes {report['baseline_rss_mb']:.0f} MB "
          "of interpreter and torch")
    print(f"{'network':12s} {'N':>5s} {'rnn_ff ms/fp':>12s} {'Euler ms/fp':>11s} {'ratio':>6s} {'Broyden ms/fp':>13s} "
          f"{'peak MB':>8s}  statuses; certificate; same answer (Euler, Broyden)")
    for kind in args.kinds:
        for units in ([TASK_KINDS[kind]] if kind in TASK_KINDS else args.units):
            expected = predicted_seconds(report["rows"], kind, units, args.batch)
            if expected > args.row_budget:
                report["rows"].append({"kind": kind, "units": units,
                                       "skipped": f"predicted {expected:.0f} s > --row-budget {args.row_budget:.0f} s"})
                print(f"{kind:12s} {units:5d}  skipped: {report['rows'][-1]['skipped']}", flush=True)
                continue
            child = subprocess.run([sys.executable, __file__, "--row", kind, str(units), "--batch", str(args.batch),
                                    "--euler-steps", str(args.euler_steps),
                                    "--broyden-iterations", str(args.broyden_iterations)],
                                   capture_output=True, text=True)
            if child.returncode != 0:
                report["rows"].append({"kind": kind, "units": units, "failed": child.stderr.strip().splitlines()[-1]})
                print(f"{kind:12s} {units:5d}  failed: {report['rows'][-1]['failed']}", flush=True)
                continue
            r = json.loads(child.stdout.strip().splitlines()[-1])
            report["rows"].append(r)
            b = r["broyden"]
            broyden_text = f"{b['ms_per_fp']:13.2f}" if "ms_per_fp" in b else f"{'-':>13s}"
            same = f"{r['euler']['same']}, {b.get('same', '-')}"
            print(f"{kind:12s} {r['units']:5d} {r['ms_per_fp']:12.2f} {r['euler']['ms_per_fp']:11.2f} "
                  f"{r['euler_ratio']:5.1f}x {broyden_text} {r['peak_rss_mb']:8.0f}  {r['statuses']}; "
                  f"{r['certificate']}; {same}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
