"""The samples still being integrated, with their oscillation and saddle trackers.

Every update is a tensor operation on the solver's device; the batch is compacted once per
window with a host-known count, so that no boolean-mask indexing (a host round trip on a
GPU) happens in the window loop.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from rnn_ff.solver.options import SolverOptions


@dataclass
class RunningSamples:
    ids: torch.Tensor  # (B,) index of each sample in the chunk
    states: torch.Tensor  # (B, N) state at the end of the last window
    drive: torch.Tensor  # (B, N) constant drive M u + b
    unstable_streak: torch.Tensor  # windows in a row spent sitting on an unstable fixed point
    path: torch.Tensor  # path length travelled in the current oscillation block
    box_low: torch.Tensor  # bounding box of the current block
    box_high: torch.Tensor
    speed_early: torch.Tensor  # max speed in the first half of the block
    speed_late: torch.Tensor  # max speed in the second half of the block
    near_attractor: torch.Tensor  # a window of the block ended in the region (or near) of a stable fixed point
    stalled: torch.Tensor  # windows in a row ended near a stable fixed point that its certificate did not reach
    precise: torch.Tensor  # integrated at the finer tolerance (from the second such window on, for good)

    @classmethod
    def start(cls, drive: torch.Tensor, states: torch.Tensor) -> RunningSamples:
        ids = torch.arange(len(drive), device=drive.device)
        zeros = torch.zeros(len(ids), dtype=drive.dtype, device=drive.device)
        no = torch.zeros_like(ids, dtype=torch.bool)
        return cls(ids, states, drive, torch.zeros_like(ids), zeros, states.clone(), states.clone(), zeros.clone(),
                   zeros.clone(), no, torch.zeros_like(ids), no.clone())

    def __len__(self) -> int:
        return len(self.ids)

    def track(self, trajectory: torch.Tensor, spacing: float, window_index: int, options: SolverOptions) -> None:
        """Accumulate path length, bounding box and speeds of this window's sampled trajectory."""
        trajectory = torch.nan_to_num(trajectory)
        steps = (trajectory[1:] - trajectory[:-1]).norm(dim=-1)  # chords between the sampled points
        self.path = self.path + steps.sum(0)
        self.box_low = torch.minimum(self.box_low, trajectory.amin(0))
        self.box_high = torch.maximum(self.box_high, trajectory.amax(0))
        window_max = steps.amax(0) / spacing  # mean speed over the fastest chord
        position = (window_index - 1) % options.oscillation_windows
        if position < options.oscillation_windows // 2:
            self.speed_early = torch.maximum(self.speed_early, window_max)
        else:
            self.speed_late = torch.maximum(self.speed_late, window_max)

    def oscillating(self, options: SolverOptions) -> torch.Tensor:
        """Bounded motion whose speed does not decay and whose path is much longer than its box,
        and which never came back to a stable fixed point's region in the block: a lightly
        damped spiral about a stable fixed point decays too slowly to tell from a limit cycle
        within a block, so it integrates on until it is certified (or times out)."""
        diagonal = (self.box_high - self.box_low).norm(dim=-1)
        sustained = self.speed_late >= 0.5 * self.speed_early
        # Jitter at the integrator's tolerance around a fixed point is not an oscillation.
        noise = options.atol + options.rtol * self.box_high.abs().amax(-1)
        return sustained & (diagonal > 1e3 * noise) & (self.path > 3.0 * diagonal) & ~self.near_attractor

    def reset_block(self, end: torch.Tensor) -> None:
        end = torch.nan_to_num(end)
        self.path = torch.zeros_like(self.path)
        self.box_low, self.box_high = end.clone(), end.clone()
        self.speed_early = torch.zeros_like(self.speed_early)
        self.speed_late = torch.zeros_like(self.speed_late)
        self.near_attractor = torch.zeros_like(self.near_attractor)

    def keep(self, end: torch.Tensor, still_running: torch.Tensor, n_running: int) -> RunningSamples:
        """The samples still running (n_running of them, a host-known count), with their new states:
        those integrated at the usual tolerance first, then the precise ones."""
        order = torch.argsort(2 * (~still_running).to(torch.int8) + self.precise.to(torch.int8),
                              stable=True)[:n_running]
        self.states = end
        return RunningSamples(**{f.name: getattr(self, f.name)[order] for f in fields(self)})
