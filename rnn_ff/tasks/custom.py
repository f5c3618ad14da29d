"""A network the user brings: W, tau, M and b from .npy/.pt files (or numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from rnn_ff.activations import ActivationError, activation_params
from rnn_ff.network import NetworkError, RecurrentNetwork
from rnn_ff.tasks.base import Labels, Task, TaskConfigError, require, require_finite


@dataclass
class InputDistributionConfig:
    distribution: str = "uniform"  # uniform | normal
    low: float = 0.0  # uniform
    high: float = 1.0
    mean: float = 0.0  # normal
    std: float = 1.0


@dataclass
class ActivationParamsConfig:
    """Parameters of task.activation (rnn_ff/activations.py); null: the activation's default. Setting
    one that the chosen activation does not have is an error."""

    k: Optional[float] = None  # power: gain k of k [x]_+^n (default 1)
    n: Optional[float] = None  # power: exponent n >= 1 (default 2)
    gain: Optional[float] = None  # sigmoid: slope factor (default 1)
    threshold: Optional[float] = None  # sigmoid: half-activation point (default 0)


@dataclass
class CustomConfig:
    name: str = "custom"
    weights: str = "???"  # path to an N x N .npy or .pt file
    tau: Any = 1.0  # a number or a path to an (N,) file
    input_matrix: Optional[str] = None  # path to an N x D file; default identity (D = N)
    bias: Any = 0.0  # a number or a path to an (N,) file
    activation: str = "relu"  # relu | tanh | power | sigmoid (rnn_ff/activations.py); relu is solved exactly
    activation_params: ActivationParamsConfig = field(default_factory=ActivationParamsConfig)
    inputs: InputDistributionConfig = field(default_factory=InputDistributionConfig)


def load_array(path: str | Path, key: str) -> torch.Tensor:
    """Read a numeric array from .npy or .pt; errors name the config key and the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskConfigError(f"task.{key}: file not found: {path.resolve()}")
    try:
        if path.suffix == ".npy":
            array = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix == ".pt":
            array = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise TaskConfigError(f"task.{key}: {path} must be a .npy or .pt file")
    except TaskConfigError:
        raise
    except Exception as error:  # corrupt or unreadable file
        raise TaskConfigError(f"task.{key}: cannot read {path}: {error}") from error
    if not isinstance(array, torch.Tensor) or not array.is_floating_point() and array.dtype not in (
        torch.int32, torch.int64):
        raise TaskConfigError(f"task.{key}: {path} must hold a numeric tensor/array")
    array = array.to(torch.float64)
    if not torch.isfinite(array).all():
        raise TaskConfigError(f"task.{key}: {path} has non-finite entries (nan or inf)")
    return array


def _number_or_file(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, (int, float)):
        return torch.tensor(float(value), dtype=torch.float64)
    return load_array(value, key)


def custom_network(cfg: CustomConfig) -> RecurrentNetwork:
    given = {f.name: getattr(cfg.activation_params, f.name) for f in fields(ActivationParamsConfig)}
    given = {key: value for key, value in given.items() if value is not None}
    try:  # before any file is read
        params = activation_params(cfg.activation, given, prefix="task.")
    except ActivationError as error:
        raise TaskConfigError(str(error)) from None
    require(cfg.weights not in (None, "", "???"), "weights", cfg.weights, "give a path to an N x N .npy or .pt file")
    weights = load_array(cfg.weights, "weights")
    require(weights.ndim == 2 and weights.shape[0] == weights.shape[1], "weights", cfg.weights,
            f"must hold a square N x N matrix, got shape {tuple(weights.shape)}")
    n = weights.shape[0]
    tau = _number_or_file(cfg.tau, "tau")
    require(tau.ndim == 0 or tuple(tau.shape) == (n,), "tau", cfg.tau, f"must be a number or hold {n} values")
    require(bool((tau > 0).all()), "tau", cfg.tau, "must be > 0 for every unit")
    bias = _number_or_file(cfg.bias, "bias")
    require(bias.ndim == 0 or tuple(bias.shape) == (n,), "bias", cfg.bias, f"must be a number or hold {n} values")
    input_matrix = torch.eye(n, dtype=torch.float64) if cfg.input_matrix is None else load_array(
        cfg.input_matrix, "input_matrix")
    require(input_matrix.ndim == 2 and input_matrix.shape[0] == n, "input_matrix", cfg.input_matrix,
            f"must hold an N x D matrix with N={n}, got shape {tuple(input_matrix.shape)}")
    try:
        return RecurrentNetwork(weights, tau, input_matrix, bias, cfg.activation, params)
    except NetworkError as error:
        raise TaskConfigError(f"task: {error}") from error


IN_PYTHON = "<a network built in Python>"  # task.weights of a task made by CustomTask.from_network


class CustomTask(Task):
    name = "custom"

    def __init__(self, cfg: CustomConfig, network: RecurrentNetwork | None = None) -> None:
        dist = cfg.inputs
        require_finite(dist, ("low", "high", "mean", "std"), prefix="inputs.")
        require(dist.distribution in ("uniform", "normal"), "inputs.distribution", dist.distribution,
                "allowed: uniform, normal")
        if dist.distribution == "uniform":
            require(dist.low < dist.high, "inputs.low", dist.low, f"must be < inputs.high={dist.high}")
        else:
            require(dist.std > 0, "inputs.std", dist.std, "must be > 0")
        self.cfg = cfg
        self.network = network or custom_network(cfg)

    @classmethod
    def from_network(cls, network: RecurrentNetwork, inputs: InputDistributionConfig | None = None) -> CustomTask:
        """A task around a network built in Python, no files: inputs drawn from `inputs` (uniform on
        [0, 1] per input by default). Hand it to rnn_ff.training.train(cfg, task=...)."""
        cfg = CustomConfig(weights=IN_PYTHON, activation=network.activation,
                           inputs=inputs or InputDistributionConfig())
        return cls(cfg, network)

    def key_config(self, config: dict) -> dict:
        """Without the parameters of the input distribution that is not used."""
        unused = ("mean", "std") if config["inputs"]["distribution"] == "uniform" else ("low", "high")
        return {**config, "inputs": {k: v for k, v in config["inputs"].items() if k not in unused}}

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, Labels]:
        dist, d = self.cfg.inputs, self.network.n_inputs
        if dist.distribution == "uniform":
            u = torch.rand(n, d, generator=generator, dtype=torch.float64)
            return dist.low + (dist.high - dist.low) * u, {}
        return dist.mean + dist.std * torch.randn(n, d, generator=generator, dtype=torch.float64), {}
