"""What a solve is asked (SolverOptions) and what it answers (FixedPointResult, one status per sample)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

STATUSES = ("converged", "unstable", "oscillating", "diverged", "timeout", "nonfinite")
CONVERGED, UNSTABLE, OSCILLATING, DIVERGED, TIMEOUT, NONFINITE = range(len(STATUSES))
RUNNING = -1
# torchdiffeq's adaptive methods by name (its public `odeint(method=...)`). Its fixed-step methods
# would step on the window's few output times, not on a step of their own: they are refused.
ADAPTIVE_METHODS = ("adaptive_heun", "bosh3", "dopri5", "dopri8", "fehlberg2")
FIXED_STEP_METHODS = ("euler", "explicit_adams", "fixed_adams", "heun2", "heun3", "implicit_adams", "midpoint", "rk4")
# Tolerance on the fixed-point residual |x - W f(x) - Mu - b|_inf / (1 + |x|_inf) by dtype.
DEFAULT_RESIDUAL_TOL = {torch.float64: 1e-9, torch.float32: 1e-4}
INTEGRATION_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class SolverOptions:
    method: str = "dopri5"  # one of torchdiffeq's adaptive methods (ADAPTIVE_METHODS)
    # The trajectory only has to reach the right linear region: the answer is then the exact,
    # certified fixed point, so the integration tolerance can be looser than the answer's.
    rtol: float = 1e-4
    atol: float = 1e-6
    window: float = 5.0  # integration window, in units of the largest tau; samples are judged after each
    max_time: float = 1000.0  # give up (timeout) after this, in units of the largest tau
    max_steps_per_window: int = 20000
    points_per_window: int = 8  # trajectory samples per window, for the oscillation test
    # Smooth activations: Newton's polish is tried once the residual is this small (relative to
    # 1 + |x|_inf); a sample is accepted only by its certificate (ReLU or smooth).
    accept_distance: float = 1e-3
    residual_tol: Optional[float] = None  # None: 1e-9 in float64, 1e-4 in float32
    unstable_distance: float = 1e-9  # relative distance that counts as sitting on a fixed point ...
    unstable_windows: int = 3  # ... for this many windows in a row: status unstable
    oscillation_windows: int = 8  # windows per block of the oscillation test
    stability_margin: float = 1e-9  # stable means max Re(eig) < -stability_margin
    diverge_threshold: float = 1e6
    certify_horizon: float = 100.0  # ReLU: certify a region's attractor up to this time (largest-tau units)
    newton_steps: int = 20  # polish iterations for smooth activations
    # Try first to prove that the network has one globally attracting equilibrium for every input
    # (rnn_ff/solver/global_stability.py); where that is proved, no sample needs an analysis of its own.
    global_proof: bool = True
    chunk_size: Optional[int] = None  # samples integrated together; None: from the device's free memory
    # None: integrate in the answer's dtype. "float32": integrate in float32 and polish and certify
    # in the answer's dtype (for GPUs whose float64 is slow; the answer stays exact). A float32
    # trajectory jitters about a saddle at the integrator's tolerance, far above unstable_distance:
    # an input that sits on one ends `timeout` rather than `unstable` (never a target either way).
    integration_dtype: Optional[str] = None

    def __post_init__(self) -> None:
        """Reject meaningless options with a message that names the key (solver.<name>)."""

        def check(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"solver.{name}={getattr(self, name)!r} is invalid: {allowed}")

        check(self.method not in FIXED_STEP_METHODS, "method",
              "fixed-step methods would step on the window's output times, not on a step of their own; "
              f"use an adaptive one: {list(ADAPTIVE_METHODS)}")
        check(self.method in ADAPTIVE_METHODS, "method", f"allowed: {list(ADAPTIVE_METHODS)}")
        for name in ("rtol", "atol", "window", "max_time", "accept_distance", "unstable_distance",
                     "diverge_threshold", "certify_horizon"):
            check(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name, "must be a finite number > 0")
        check(math.isfinite(self.stability_margin) and self.stability_margin >= 0, "stability_margin",
              "must be a finite number >= 0")
        check(self.residual_tol is None or math.isfinite(self.residual_tol) and self.residual_tol > 0, "residual_tol",
              "must be null (the dtype's default) or a finite number > 0")
        for name in ("max_steps_per_window", "points_per_window", "unstable_windows", "oscillation_windows",
                     "newton_steps"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.chunk_size is None or self.chunk_size >= 1, "chunk_size",
              "must be null (from the device's free memory) or >= 1")
        check(self.integration_dtype is None or self.integration_dtype in INTEGRATION_DTYPES, "integration_dtype",
              f"must be null (the answer's dtype) or one of {list(INTEGRATION_DTYPES)}")

    def residual_tolerance(self, dtype: torch.dtype) -> float:
        return self.residual_tol if self.residual_tol is not None else DEFAULT_RESIDUAL_TOL.get(dtype, 1e-4)


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
        return dict(zip(STATUSES, tally(self.status_codes, len(STATUSES)).tolist()))


def tally(codes: torch.Tensor, size: int, offset: int = 0) -> torch.Tensor:
    """Counts of codes + offset in 0..size-1, on the codes' device (no host round trip, unlike bincount)."""
    counts = torch.zeros(size, dtype=torch.long, device=codes.device)
    return counts.index_add_(0, codes + offset, torch.ones_like(codes))
