"""The feed-forward approximator: a two-layer MLP from task input to fixed-point rates."""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}
OUTPUT = {"relu": torch.relu, "softplus": nn.functional.softplus, "none": lambda y: y}


class FeedForwardApproximator(nn.Module):
    """u -> r*: standardised input -> hidden -> output, returned in raw rate units.

    hidden_layers = 1 is the two-layer network of Muir (2018) and the default of most tasks;
    more hidden layers (of the same width) fit maps that compose rectifications faster, such as
    the WTA's shared inhibition of its active units (its default is 2; docs/results.md).

    Normalisation lives in buffers, so the saved state maps raw inputs to raw rates.
    Targets are shifted by their per-unit mean and scaled by one global scale (so that
    units that are almost always silent do not get their noise blown up); the output
    activation (ReLU by default) is applied in raw units, keeping rates >= 0.
    """

    LOSSES = ("rectified", "mse")

    def __init__(self, n_inputs: int, n_outputs: int, hidden: int, activation: str = "relu",
                 output_activation: str = "relu", hidden_layers: int = 1) -> None:
        super().__init__()
        self.hparams = {"n_inputs": n_inputs, "n_outputs": n_outputs, "hidden": hidden, "activation": activation,
                        "output_activation": output_activation, "hidden_layers": hidden_layers}
        self.hidden_layer = nn.Linear(n_inputs, hidden)
        self.activation = HIDDEN[activation]()
        self.deeper_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(hidden_layers - 1))
        self.output_layer = nn.Linear(hidden, n_outputs)
        self.output_activation = OUTPUT[output_activation]
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_std", torch.ones(n_inputs))
        self.register_buffer("target_mean", torch.zeros(n_outputs))
        self.register_buffer("target_scale", torch.ones(()))

    def fit_normalisation(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.input_mean.copy_(inputs.mean(0))
        self.input_std.copy_(inputs.std(0).clamp_min(1e-8))
        self.target_mean.copy_(targets.mean(0))
        self.target_scale.copy_((targets - targets.mean(0)).std().clamp_min(1e-8))

    def standardised_output(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output layer's value: the pre-activation less the target mean, over the target scale."""
        hidden = self.activation(self.hidden_layer((inputs - self.input_mean) / self.input_std))
        for layer in self.deeper_layers:
            hidden = self.activation(layer(hidden))
        return self.output_layer(hidden)

    def preactivation(self, inputs: torch.Tensor) -> torch.Tensor:
        """The output before its activation, in raw rate units."""
        return self.target_mean + self.target_scale * self.standardised_output(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.preactivation(inputs))

    def flops(self) -> int:
        """Multiply-adds x 2 of one input's forward pass (activations and normalisation are negligible)."""
        return sum(2 * module.weight.numel() for module in self.modules() if isinstance(module, nn.Linear))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, kind: str = "rectified") -> torch.Tensor:
        """Mean squared error in units of the target scale.

        kind="rectified" (with a ReLU output): the error of the pre-activation where the target
        rate is positive, and only a positive pre-activation where it is 0. The squared error of
        the rectified output ("mse") gives no gradient to a unit whose pre-activation is negative
        on the inputs where it should respond, so a sparse unit that starts (or drifts) silent
        there stays silent; here it always gets one. Both agree wherever the output is right.
        Without a ReLU output both kinds are the squared error of the output."""
        if kind not in self.LOSSES:
            raise ValueError(f"loss kind {kind!r}: allowed {list(self.LOSSES)}")
        if kind == "rectified" and self.hparams["output_activation"] == "relu":
            # The squared distance, in standardised units, to a reference without gradient: the target
            # where it is positive; where it is 0, the output itself below a rate of 0 (no cost, no
            # gradient), else a rate of 0. The same loss and gradient as (where(target > 0, pre - target,
            # pre.clamp_min(0)) / scale)^2, in fewer kernels: a training step is overhead-bound.
            output = self.standardised_output(inputs)
            with torch.no_grad():
                zero_rate = -self.target_mean / self.target_scale
                reference = torch.where(targets > 0, (targets - self.target_mean) / self.target_scale,
                                        torch.minimum(output, zero_rate))
            return nn.functional.mse_loss(output, reference)
        return (((self(inputs) - targets) / self.target_scale) ** 2).mean()
