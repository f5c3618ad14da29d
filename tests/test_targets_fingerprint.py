"""The targets' fingerprint: a change that alters which samples converge, or their answers, must
bump rnn_ff.data.TARGETS_VERSION (so that no dataset cached by older code is reused) and update
the fingerprints below."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from rnn_ff.data import TARGETS_VERSION
from rnn_ff.random_networks import random_ei_network
from rnn_ff import WTAConfig, wta_network
from rnn_ff.solver import solve, solve_fixed_points
from rnn_ff.tasks import TASKS, build_task
from tests.conftest import three_cycle

# TARGETS_VERSION -> batch -> (status codes, one digit per sample; sha256 of the rates rounded to 1e-9).
# Version 4 changed how a dataset's inputs are drawn (in blocks, rnn_ff.data.draw_inputs), not the
# solver: the fixed batches below keep the fingerprints of version 3. Version 5 accepts the samples of
# a network with a global stability proof (rnn_ff/solver/global_stability.py) by the proof alone: the
# WTA and denoising are proved, and their targets stay those of version 4 to 1e-9. Version 6 accepts
# samples in regions that the global search's best D proves stable (a diagonal Lyapunov function per
# region): a sample that timed out before may now converge; these batches keep version 5's targets.
# Version 7 moves a sample whose fixed point sits on a wall off it (within the integrator's tolerance)
# and integrates one that the integrator's jitter keeps from its certificate at a finer tolerance: a
# sample that timed out before may now converge; these batches keep version 6's targets.
FINGERPRINTS = {7: {
    "wta": ("0000000000000000", "686c8f927a77815d"),
    "transformation": ("0000000000000000", "cfeb901979849ae5"),
    "denoising": ("0000000000000000", "87aabe479694261e"),
    "hard_wta": ("0000000000000000", "e1ea430a072c9afb"),
    "three_cycle": ("21", "f4f2afad0f9ce9c4"),
    "runaway": ("03", "148ea1cd0df7bf08"),
    "proven_ei_256": ("0000000000000000", "8bbeee174e483712"),
}}


def fingerprint(status_codes: torch.Tensor, rates: torch.Tensor) -> tuple[str, str]:
    rounded = np.round(rates.numpy(), 9) + 0.0  # + 0.0 turns -0.0 into 0.0
    return "".join(map(str, status_codes.tolist())), hashlib.sha256(rounded.tobytes()).hexdigest()[:16]


def batches():
    for name in ("wta", "transformation", "denoising"):
        task = build_task(TASKS[name][0]())
        inputs, _ = task.sample(16, torch.Generator().manual_seed(0))
        yield name, lambda task=task, inputs=inputs: solve(task.network, inputs)
    hard = wta_network(WTAConfig(n_excitatory=8, self_excitation=1.2))  # multistable, long transients
    hard_inputs = torch.rand(16, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hard_inputs[0, :2] = torch.tensor([0.9, 0.9 + 1e-4])  # a near tie
    yield "hard_wta", lambda: solve(hard, hard_inputs)
    hostile = torch.tensor([[1.0, 1.1, 0.9], [1.0, 1.0, 1.0]], dtype=torch.float64)
    yield "three_cycle", lambda: solve_fixed_points(three_cycle(), hostile)
    proven = random_ei_network(256, excitatory_radius=0.5)  # per-sample exact solves, proved
    proven_inputs = torch.rand(16, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    yield "proven_ei_256", lambda: solve(proven, proven_inputs)
    yield "runaway", lambda: solve_fixed_points(torch.tensor([[1.5]], dtype=torch.float64),
                                                torch.tensor([[-1.0], [1.0]], dtype=torch.float64))


@pytest.mark.parametrize("name, run", list(batches()), ids=[name for name, _ in batches()])
def test_targets_match_the_fingerprint_of_this_targets_version(name, run):
    result = run()
    expected = FINGERPRINTS.get(TARGETS_VERSION, {}).get(name)
    found = fingerprint(result.status_codes, result.rates)
    assert found == expected, (f"the targets of batch {name!r} changed: if that is intended, bump TARGETS_VERSION "
                               f"in rnn_ff/data.py and record {found} under it here")
