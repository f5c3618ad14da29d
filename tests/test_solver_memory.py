"""Memory bounded by the chunk, whatever the network: a 256-unit network without a global proof (every
input in a region of its own) solved in a subprocess under an address-space limit (resource.setrlimit),
and a limit too small for anything ending in the one-line SolverError, not a traceback and not a kill."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("resource")

SCRIPT = """
import resource, sys, torch
from rnn_ff import solve_fixed_points
from rnn_ff.random_networks import random_ei_network
from rnn_ff.solver import SolverError
network = random_ei_network(256, spectral_radius=0.9)  # inhibition-stabilized: no global proof
inputs = torch.rand(64, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
limit = mapped + int(sys.argv[1]) * 2**20  # this much address space beyond what is mapped now
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    result = solve_fixed_points(network.weights, inputs, tau=network.tau)
except SolverError as error:
    print(f"error: {error}")
    sys.exit(2)
print(result.counts()["converged"], result.stats["certificate"].split(":")[0])
"""


def solve_under_limit(megabytes: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(megabytes)], capture_output=True, text=True,
                          timeout=600)


def test_a_256_unit_network_without_a_global_proof_solves_within_a_gigabyte():
    run = solve_under_limit(1024)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["64", "per", "region"]


def test_a_limit_too_small_for_anything_is_one_line_naming_the_chunk_size():
    run = solve_under_limit(16)
    assert run.returncode == 2, run.stderr[-2000:]  # not killed (-9), not a traceback (1)
    assert "Traceback" not in run.stderr
    (line,) = run.stdout.splitlines()
    assert line.startswith("error: out of memory solving 256-unit fixed points in chunks of 64 samples on cpu (")
    assert line.endswith("MiB left to this process); set a smaller solver.chunk_size")
