"""One integration window for a batch, through torchdiffeq's public `odeint`.

torchdiffeq shares one step size across the batch and raises on non-finite values, step
underflow or too many steps. A failure caused by some samples is bisected so that only they
are marked failed and the rest of the batch goes on; a failure that every part of the batch
shares (too few steps allowed, out of memory) is not the samples' fault and raises a
SolverError naming the option to change, after at most one round of four quarters.
"""

from __future__ import annotations

import math

import torch
from torchdiffeq import odeint

from rnn_ff.network import RecurrentNetwork
from rnn_ff.solver.options import SolverOptions


class SolverError(RuntimeError):
    """The integration fails for reasons that are not the samples': the message names the option to change."""


def capped_velocity(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor,
                    guard: float) -> torch.Tensor:
    """The network's velocity, with rates capped beyond `guard`: a sample that explodes then
    grows only linearly and is classified `diverged` at the end of the window, instead of
    driving the shared step size to underflow. Samples below the guard are unaffected."""
    return (-states + network.rate(states.clamp(-guard, guard)) @ network.weights.T + drive) / network.tau


def integrate_window(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, times: torch.Tensor,
                     options: SolverOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate a batch over `times`. Returns the trajectory (T, B, N), the function
    evaluations per sample (B,) and a success mask (B,)."""
    trajectory, calls, error = _attempt(network, states, drive, times, options)
    if error is None:
        return _succeeded(trajectory, calls, len(states))
    if len(states) < 4:
        return _bisect(network, states, drive, times, options, calls)
    quarters = [(s, d, *_attempt(network, s, d, times, options))
                for s, d in zip(states.tensor_split(4), drive.tensor_split(4))]
    if all(type(quarter[4]) is type(error) for quarter in quarters):  # the batch is not to blame
        raise SolverError(_systematic(error, options, len(states))) from error
    return _joined([_succeeded(t, c, len(s)) if e is None else _bisect(network, s, d, times, options, c)
                    for s, d, t, c, e in quarters], calls)


def _bisect(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, times: torch.Tensor,
            options: SolverOptions, spent: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Halve a batch that failed (after `spent` evaluations) until the samples that fail on their
    own are found; their trajectory is nan."""
    if len(states) == 1:
        trajectory = torch.full((len(times), 1, states.shape[1]), math.nan, dtype=states.dtype, device=states.device)
        return trajectory, torch.full((1,), spent, device=states.device), torch.zeros(1, dtype=torch.bool,
                                                                                      device=states.device)
    halves = [(s, d, *_attempt(network, s, d, times, options))
              for s, d in zip(states.tensor_split(2), drive.tensor_split(2))]
    return _joined([_succeeded(t, c, len(s)) if e is None else _bisect(network, s, d, times, options, c)
                    for s, d, t, c, e in halves], spent)


def _succeeded(trajectory: torch.Tensor, calls: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    device = trajectory.device
    return trajectory, torch.full((batch,), calls, device=device), torch.ones(batch, dtype=torch.bool, device=device)


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
            spent: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Parts of a batch put back together; every sample also paid for the failed attempt before."""
    return (torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts]) + spent,
            torch.cat([p[2] for p in parts]))


def _attempt(network: RecurrentNetwork, states: torch.Tensor, drive: torch.Tensor, times: torch.Tensor,
             options: SolverOptions) -> tuple[torch.Tensor | None, int, Exception | None]:
    """One odeint call: (trajectory, right-hand-side evaluations, None) or (None, evaluations, error)."""
    calls = 0
    guard = 10.0 * options.diverge_threshold

    def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return capped_velocity(network, x, drive, guard)

    try:
        trajectory = odeint(rhs, states, times, method=options.method, rtol=options.rtol, atol=options.atol,
                            options={"max_num_steps": options.max_steps_per_window})
    except (AssertionError, RuntimeError, ValueError, OverflowError, MemoryError) as error:
        if out_of_memory(error):
            raise SolverError(f"out of memory integrating {len(states)} samples of {states.shape[1]} units on "
                              f"{states.device}; set a smaller solver.chunk_size") from error
        return None, calls, error
    return trajectory, calls, None


def out_of_memory(error: BaseException) -> bool:
    """An allocation failure (CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, Python's
    MemoryError): never a sample's fault, so never bisected."""
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and ("can't allocate memory" in str(error) or "out of memory" in str(error)))


def _systematic(error: Exception, options: SolverOptions, batch: int) -> str:
    """The message for a failure that every quarter of the batch shares: its cause and the option to change."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "max_num_steps" in reason:
        advice = (f"raise solver.max_steps_per_window (now {options.max_steps_per_window}) or shorten "
                  f"solver.window (now {options.window})")
    else:
        advice = "check the network (weights, tau) and solver.method, rtol and atol"
    return f"the integration fails for every quarter of a batch of {batch} samples ({reason}); {advice}"
