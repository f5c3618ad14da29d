"""Batched fixed-point solver: windowed torchdiffeq integration with a certified status per sample.

The public surface: `solve` (a RecurrentNetwork and a batch of inputs), `solve_fixed_points`
(plain tensors), `SolverOptions`, `FixedPointResult` and `STATUSES`. Inside, one module per job:
options.py (what is asked and answered), integration.py (one window through torchdiffeq),
tracking.py (the samples still running), classification.py (judging a window: one strategy
per kind of network), regions.py (ReLU linear regions, batched), core.py (the chunk and window
loops), multistability.py (the start-dependence probe).
"""

from rnn_ff.solver.classification import max_real_eigenvalue, polish
from rnn_ff.solver.core import solve, solve_fixed_points
from rnn_ff.solver.integration import SolverError
from rnn_ff.solver.multistability import start_dependent
from rnn_ff.solver.options import CONVERGED, STATUSES, FixedPointResult, SolverOptions

__all__ = ["CONVERGED", "STATUSES", "FixedPointResult", "SolverError", "SolverOptions", "max_real_eigenvalue", "polish",
           "solve", "solve_fixed_points", "start_dependent"]
