"""A network the user brings: W, tau, M and b from files (a state_dict's entries too) or numbers,
and the inputs it sees, drawn from a distribution or given as an input set.

A model trained in discrete time, x <- (1 - alpha) x + alpha (W f(x) + W_in u + b), is this
network's Euler step with dt / tau = alpha: it has the same fixed points for any alpha, and
with one alpha for every unit the same stability (tau = dt / alpha only sets the time scale).
The rate form r <- (1 - alpha) r + alpha f(W r + W_in u + b) (torch.nn.RNN is alpha = 1) has
them too, as r = f(x): its Jacobian diag(f') W - I has the eigenvalues of W diag(f') - I.
torch.nn.RNN's weight_hh_l0 is W, weight_ih_l0 is M (both W[i, j] from j onto i) and its two
biases add up to b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from omegaconf import DictConfig, ListConfig

from rnn_ff.activations import ActivationError, activation_params
from rnn_ff.network import NetworkError, RecurrentNetwork
from rnn_ff.tasks.arrays import read_array
from rnn_ff.tasks.base import Labels, Task, TaskConfigError, population_metric, require
from rnn_ff.tasks.input_sets import IN_PYTHON as INPUTS_IN_PYTHON, InputSet

# An input set at most this large travels in the checkpoint (every epoch's); a larger one is read
# again from its file, whose content must still match.
STORED_INPUT_BYTES = 64 * 2**20
SEQUENCES = (list, tuple, ListConfig)


@dataclass
class InputDistributionConfig:
    """The inputs: an input set from `file`, or else `distribution` with its parameters, each one
    number or one per input (`low=[0,0,-1]`)."""

    distribution: str = "uniform"  # uniform | normal
    low: Any = 0.0  # uniform
    high: Any = 1.0
    mean: Any = 0.0  # normal
    std: Any = 1.0
    # an n x D array (.npy, .pt, .npz or file:name), the dataset's splits drawn from it without
    # replacement with data.seed; or train, val and test arrays, each split taken from its own
    file: Optional[str] = None
    replace: bool = False  # draw from `file` with replacement (inputs repeat; splits share inputs)


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
    # W (N x N): a .npy, .pt or .npz file, or file:name for an entry of a state_dict or .npz
    # (model.pt:rnn.weight_hh_l0); tau, input_matrix and bias take the same forms
    weights: str = "???"
    tau: Any = 1.0  # a number or an (N,) array; a model trained in discrete time: dt / alpha
    input_matrix: Optional[str] = None  # N x D; default identity (D = N)
    bias: Any = 0.0  # a number, an (N,) array, or a list of them that are added (nn.RNN's two biases)
    activation: str = "relu"  # relu | tanh | power | sigmoid (rnn_ff/activations.py); relu is solved exactly
    activation_params: ActivationParamsConfig = field(default_factory=ActivationParamsConfig)
    inputs: InputDistributionConfig = field(default_factory=InputDistributionConfig)
    # name -> its units, "start:stop" or a list of indices: each population's own rel_error and figure
    # panel; null: excitatory and inhibitory where every unit's outgoing weights share one sign
    # (Dale's law), else one population of all units.
    populations: Any = None  # 'task.populations={excitatory: "0:160", inhibitory: "160:200"}'


def _array(value: Any, key: str) -> torch.Tensor:
    """A number, or the array a file source names."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, (str, Path)):
        raise TaskConfigError(f"task.{key}={value!r} is invalid: give a number or a file (file:name for an entry)")
    return read_array(value, f"task.{key}")


def custom_network(cfg: CustomConfig) -> RecurrentNetwork:
    given = {f.name: getattr(cfg.activation_params, f.name) for f in fields(ActivationParamsConfig)}
    given = {key: value for key, value in given.items() if value is not None}
    try:  # before any file is read
        params = activation_params(cfg.activation, given, prefix="task.")
    except ActivationError as error:
        raise TaskConfigError(str(error)) from None
    require(cfg.weights not in (None, "", "???"), "weights", cfg.weights,
            "give an N x N array: a .npy, .pt or .npz file, or file:name")
    weights = read_array(cfg.weights, "task.weights")
    require(weights.ndim == 2 and weights.shape[0] == weights.shape[1], "weights", cfg.weights,
            f"must hold a square N x N matrix, got shape {tuple(weights.shape)}")
    n = weights.shape[0]
    tau = _array(cfg.tau, "tau")
    require(tau.ndim == 0 or tuple(tau.shape) == (n,), "tau", cfg.tau, f"must be a number or hold {n} values")
    require(bool((tau > 0).all()), "tau", cfg.tau, "must be > 0 for every unit")
    biases = list(cfg.bias) if isinstance(cfg.bias, SEQUENCES) else [cfg.bias]
    bias = torch.zeros((), dtype=torch.float64)
    for part in biases:
        value = _array(part, "bias")
        require(value.ndim == 0 or tuple(value.shape) == (n,), "bias", part, f"must be a number or hold {n} values")
        bias = bias + value
    input_matrix = torch.eye(n, dtype=torch.float64) if cfg.input_matrix is None else read_array(
        cfg.input_matrix, "task.input_matrix")
    require(input_matrix.ndim == 2 and input_matrix.shape[0] == n, "input_matrix", cfg.input_matrix,
            f"must hold an N x D matrix with N={n}, got shape {tuple(input_matrix.shape)}")
    try:
        return RecurrentNetwork(weights, tau, input_matrix, bias, cfg.activation, params)
    except NetworkError as error:
        raise TaskConfigError(f"task: {error}") from error


def channel_values(value: Any, key: str, n_inputs: int) -> torch.Tensor:
    """A distribution parameter as a (1,) or (D,) tensor: one number, or one per input."""
    values = list(value) if isinstance(value, SEQUENCES) else [value]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    require(numbers and len(values) in (1, n_inputs), key, value,
            f"must be one finite number or {n_inputs} of them (one per input)")
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def unit_indices(value: Any, key: str, n_units: int) -> torch.Tensor:
    """A population's units from "start:stop" (stop excluded, as in Python) or a list of indices."""
    if isinstance(value, str):
        bounds = value.split(":")
        require(len(bounds) == 2 and all(b.strip().isdigit() for b in bounds), key, value,
                'give "start:stop" (unit indices, stop excluded) or a list of unit indices')
        start, stop = (int(b) for b in bounds)
        require(start < stop <= n_units, key, value, f"needs start < stop <= {n_units} (the network's units)")
        return torch.arange(start, stop)
    require(isinstance(value, SEQUENCES) and len(value) > 0
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value), key, value,
            'give "start:stop" (unit indices, stop excluded) or a list of unit indices')
    units = torch.tensor(list(value), dtype=torch.long)
    require(bool(((units >= 0) & (units < n_units)).all()), key, value, f"unit indices lie in 0..{n_units - 1}")
    require(len(units.unique()) == len(units), key, value, "lists a unit twice")
    return units


def dale_populations(weights: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """Excitatory and inhibitory units where every unit's outgoing weights (its column) share one
    sign and both signs occur; None otherwise (a unit with no outgoing weight is ambiguous)."""
    positive, negative = (weights > 0).any(0), (weights < 0).any(0)
    if (positive & negative).any() or not (positive | negative).all() or not positive.any() or not negative.any():
        return None
    return {"excitatory": positive.nonzero().squeeze(1), "inhibitory": negative.nonzero().squeeze(1)}


IN_PYTHON = "<a network built in Python>"  # task.weights of a task made by CustomTask.from_network


class CustomTask(Task):
    name = "custom"
    evaluation_only = ("populations",)

    def __init__(self, cfg: CustomConfig, network: RecurrentNetwork | None = None,
                 input_set: InputSet | None = None) -> None:
        dist = cfg.inputs
        require(dist.distribution in ("uniform", "normal"), "inputs.distribution", dist.distribution,
                "allowed: uniform, normal")
        self.cfg = cfg
        self.network = network or custom_network(cfg)
        d = self.network.n_inputs
        self.low, self.high, self.mean, self.std = (channel_values(getattr(dist, key), f"inputs.{key}", d)
                                                    for key in ("low", "high", "mean", "std"))
        if dist.distribution == "uniform":
            require(bool((self.low < self.high).all()), "inputs.low", dist.low, f"must be < inputs.high={dist.high}")
        else:
            require(bool((self.std > 0).all()), "inputs.std", dist.std, "must be > 0")
        if input_set is None and dist.file is not None:
            input_set = InputSet.read(dist.file, dist.replace)
        if input_set is not None:
            input_set.check_width(d)
        self.input_set = input_set
        self._populations = self._declared_populations()

    @classmethod
    def from_network(cls, network: RecurrentNetwork,
                     inputs: InputDistributionConfig | torch.Tensor | Mapping | str | Path | None = None,
                     populations: Mapping[str, Any] | None = None, replace: bool = False) -> CustomTask:
        """A task around a network built in Python, no weight files: inputs drawn from a distribution
        (uniform on [0, 1] per input by default), or an input set given as a tensor (n x D), a dict
        of train/val/test tensors, or a file (as task.inputs.file). Hand it to rnn_ff.training.train."""
        input_set = None
        if isinstance(inputs, (str, Path)):
            inputs = InputDistributionConfig(file=str(inputs), replace=replace)
        elif isinstance(inputs, (torch.Tensor, Mapping)):
            input_set = InputSet.of(inputs, replace=replace)
            inputs = InputDistributionConfig(file=INPUTS_IN_PYTHON, replace=replace)
        cfg = CustomConfig(weights=IN_PYTHON, activation=network.activation, inputs=inputs or InputDistributionConfig(),
                           populations=None if populations is None else dict(populations))
        return cls(cfg, network, input_set)

    def _declared_populations(self) -> dict[str, torch.Tensor]:
        n = self.network.n_units
        declared = self.cfg.populations
        if declared is None:
            return dale_populations(self.network.weights.cpu()) or super().populations()
        require(isinstance(declared, (Mapping, DictConfig)) and len(declared) > 0, "populations", declared,
                'give a mapping name -> units, e.g. {excitatory: "0:160", inhibitory: "160:200"}')
        found = {str(name): unit_indices(value, f"populations.{name}", n) for name, value in declared.items()}
        every = torch.cat(list(found.values()))
        require(len(every.unique()) == len(every), "populations", dict(declared),
                "populations must not share units")
        return found

    def populations(self) -> dict[str, torch.Tensor]:
        return self._populations

    @property
    def headline_metrics(self) -> tuple[str, ...]:
        """The first population's error where there are several (excitatory, under Dale's law)."""
        names = list(self._populations)
        return (population_metric(names[0]),) if len(names) > 1 else ()

    def key_config(self, config: dict) -> dict:
        """What determines the inputs: the input set's content (not its path), or the parameters of
        the distribution in use; never the populations, which only change how errors are reported."""
        config = super().key_config(config)
        inputs = config["inputs"]
        if self.input_set is not None:
            kept = {"input_set_sha256": self.input_set.digest, "replace": self.input_set.replace}
        else:
            unused = ("mean", "std") if inputs["distribution"] == "uniform" else ("low", "high")
            kept = {k: v for k, v in inputs.items() if k not in (*unused, "file", "replace")}
        return {**config, "inputs": kept}

    def file_contents(self) -> dict[str, Any]:
        """The input set (or, when larger than STORED_INPUT_BYTES, its file and digest) for a checkpoint."""
        if self.input_set is None:
            return {}
        if sum(a.numel() * a.element_size() for a in self.input_set.arrays.values()) <= STORED_INPUT_BYTES:
            return {"input_set": dict(self.input_set.arrays)}
        return {"input_set_file": self.input_set.source, "input_set_sha256": self.input_set.digest}

    @classmethod
    def rebuilt(cls, cfg: CustomConfig, network: RecurrentNetwork, contents: Mapping[str, Any]) -> CustomTask:
        """The task a checkpoint holds: its network, and its input set from `contents` (file_contents)."""
        if "input_set" in contents:
            return cls(cfg, network, InputSet(dict(contents["input_set"]), cfg.inputs.file, cfg.inputs.replace))
        task = cls(cfg, network)
        if "input_set_sha256" in contents and task.input_set.digest != contents["input_set_sha256"]:
            raise TaskConfigError(f"task.inputs.file: {contents['input_set_file']} has changed since the checkpoint "
                                  "was written (its content differs); restore it to use this checkpoint")
        return task

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, Labels]:
        """n fresh inputs: from the distribution, or with replacement from the input set's rows."""
        if self.input_set is not None:
            return self.input_set.sample(n, generator), {}
        d = self.network.n_inputs
        if self.cfg.inputs.distribution == "uniform":
            u = torch.rand(n, d, generator=generator, dtype=torch.float64)
            return self.low + (self.high - self.low) * u, {}
        return self.mean + self.std * torch.randn(n, d, generator=generator, dtype=torch.float64), {}

    def draw(self, layout, seed: int) -> tuple[torch.Tensor, Labels]:
        if self.input_set is None:
            return super().draw(layout, seed)
        return self.input_set.draw(layout, seed), {}
