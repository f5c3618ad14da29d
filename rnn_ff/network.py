"""The recurrent rate network studied by rnn_ff.

    tau_i dx_i/dt = -x_i + sum_j W_ij f(x_j) + (M u)_i + b_i ,   r = f(x)

A network is plain data (tensors and an activation name), so that it can be stored in a
checkpoint and rebuilt anywhere without the config or the files it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rnn_ff.activations import ACTIVATIONS, ActivationError, activation_params


class NetworkError(ValueError):
    """A network definition that cannot describe a rate network (shape, value, name)."""


@dataclass
class RecurrentNetwork:
    weights: torch.Tensor  # W, (N, N): W[i, j] is the weight from unit j onto unit i
    tau: torch.Tensor  # (N,), time constants, all > 0
    input_matrix: torch.Tensor  # M, (N, D): maps a task input onto units
    bias: torch.Tensor  # b, (N,)
    activation: str = "relu"  # relu | tanh | power | sigmoid (rnn_ff/activations.py)
    activation_params: dict[str, float] = field(default_factory=dict)  # e.g. {"k": 0.04, "n": 2.0} for power

    def __post_init__(self) -> None:
        try:
            self.activation_params = activation_params(self.activation, self.activation_params)
        except ActivationError as error:
            raise NetworkError(str(error)) from None
        w = self.weights
        if w.ndim != 2 or w.shape[0] != w.shape[1]:
            raise NetworkError(f"weights must be a square N x N matrix, got shape {tuple(w.shape)}")
        n = w.shape[0]
        self.tau = torch.as_tensor(self.tau, dtype=w.dtype, device=w.device).expand(n).clone()
        self.bias = torch.as_tensor(self.bias, dtype=w.dtype, device=w.device).expand(n).clone()
        m = self.input_matrix
        if m.ndim != 2 or m.shape[0] != n:
            raise NetworkError(f"input_matrix must be N x D with N={n} units, got shape {tuple(m.shape)}")
        for name in ("weights", "tau", "input_matrix", "bias"):
            if not torch.isfinite(getattr(self, name)).all():
                raise NetworkError(f"{name} has non-finite entries (nan or inf)")
        if (self.tau <= 0).any():
            raise NetworkError(f"tau must be > 0 for every unit, got min {self.tau.min().item():g}")

    def __repr__(self) -> str:
        """A summary, not every tensor (a 1,000-unit network's weights would fill the screen)."""
        params = f", {self.activation_params}" if self.activation_params else ""
        return (f"RecurrentNetwork({self.n_units} units, {self.n_inputs} inputs, {self.activation}{params}, "
                f"tau {self.tau.min().item():g}..{self.tau.max().item():g}, "
                f"|W| max {self.weights.abs().max().item():.3g}, {self.weights.dtype}, {self.weights.device})")

    @property
    def n_units(self) -> int:
        return self.weights.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.input_matrix.shape[1]

    @property
    def piecewise_linear(self) -> bool:
        """ReLU: solved exactly region by region (rnn_ff/solver/regions.py)."""
        return self.activation == "relu"

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> RecurrentNetwork:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dtype)

        return RecurrentNetwork(
            move(self.weights), move(self.tau), move(self.input_matrix), move(self.bias), self.activation,
            self.activation_params,
        )

    def drive(self, inputs: torch.Tensor) -> torch.Tensor:
        """Constant external drive M u + b for a batch of inputs (B, D) -> (B, N)."""
        return inputs @ self.input_matrix.T + self.bias

    def rate(self, states: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation].rate(states, self.activation_params)

    def rate_slope(self, states: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation].slope(states, self.activation_params)

    @property
    def slope_bound(self) -> float:
        """s with 0 <= f'(x) <= s for every x (inf where f' is unbounded, as for the SSN's power law)."""
        return ACTIVATIONS[self.activation].slope_bound(self.activation_params)

    def slope_lipschitz(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """A Lipschitz constant of f' on [low, high] per unit (smooth activations only)."""
        return ACTIVATIONS[self.activation].curvature(low, high, self.activation_params)

    def residual(self, states: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """-x + W f(x) + drive: zero exactly at a fixed point (tau does not enter)."""
        return -states + self.rate(states) @ self.weights.T + drive

    def velocity(self, states: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        return self.residual(states, drive) / self.tau

    def state_dict(self) -> dict:
        return {
            "weights": self.weights.cpu(),
            "tau": self.tau.cpu(),
            "input_matrix": self.input_matrix.cpu(),
            "bias": self.bias.cpu(),
            "activation": self.activation,
            "activation_params": dict(self.activation_params),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> RecurrentNetwork:
        return cls(state["weights"], state["tau"], state["input_matrix"], state["bias"], state["activation"],
                   state.get("activation_params", {}))
