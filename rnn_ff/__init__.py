"""rnn_ff: learn a recurrent network's fixed-point response with a feed-forward network.

The few things a notebook needs live here; the rest stays inside the submodules.
"""

from rnn_ff.checkpoint import load_approximator, load_network
from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver import STATUSES, FixedPointResult, SolverOptions, solve, solve_fixed_points
from rnn_ff.tasks import build_task
from rnn_ff.tasks.wta import WTAConfig, wta_network

__all__ = [
    "STATUSES",
    "FixedPointResult",
    "RecurrentNetwork",
    "SolverOptions",
    "WTAConfig",
    "build_task",
    "load_approximator",
    "load_network",
    "solve",
    "solve_fixed_points",
    "wta_network",
]
