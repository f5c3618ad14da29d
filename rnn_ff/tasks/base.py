"""What every task provides: a recurrent network, an input sampler and task metrics."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from rnn_ff.network import RecurrentNetwork

Labels = dict[str, torch.Tensor]  # per-sample facts the metrics need (first dim = batch)


class Task(ABC):
    name: str
    network: RecurrentNetwork

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, Labels]:
        """Draw n inputs (n x D, float64) and their labels, reproducibly from `generator`."""

    # Config keys that only change how results are evaluated, not the dataset: left out of its key.
    evaluation_only: tuple[str, ...] = ()
    # Task metrics (no split prefix) that the end-of-run summary quotes beside rel_error.
    headline_metrics: tuple[str, ...] = ()

    def populations(self) -> dict[str, torch.Tensor]:
        """Each population's unit indices, in the network's order (figures label units by them;
        every run reports each population's own `rel_error_<name>`)."""
        return {"units": torch.arange(self.network.n_units)}

    def key_config(self, config: dict) -> dict:
        """The task config as the dataset key sees it: what determines the inputs and the network."""
        return {key: value for key, value in config.items() if key not in self.evaluation_only}

    def metrics(self, inputs: torch.Tensor, labels: Labels, predicted: torch.Tensor,
                target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Task metrics of predicted rates against the recurrent fixed-point rates (B x N).

        0-dim tensors on the arguments' device, which every tensor a metric creates shares, so
        that a run's metrics stay where its data is (rnn_ff.evaluation.numbers fetches them).
        Keys carry no split prefix. Evaluated with predicted = target, they describe the
        recurrent network itself, which is how `test/recurrent_*` is reported.
        """
        return {}


class ExcitatoryInhibitoryPair(Task):
    """A network of one excitatory unit (0) and one inhibitory unit (1), driven by `n_drives`
    inputs each uniform on [cfg.input_low, cfg.input_high]: each unit's own error."""

    n_drives: int = 2

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, Labels]:
        u = torch.rand(n, self.n_drives, generator=generator, dtype=torch.float64)
        return self.cfg.input_low + (self.cfg.input_high - self.cfg.input_low) * u, {}

    def populations(self) -> dict[str, torch.Tensor]:
        return {"excitatory": torch.tensor([0]), "inhibitory": torch.tensor([1])}


def relative_error(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """||P - T|| / ||T|| over the entries where `mask` (B x N or N, bool) is true: a population's own error."""
    if mask is not None:
        mask = mask.to(predicted.device).expand_as(predicted)
        predicted, target = predicted[mask], target[mask]
    return (predicted - target).norm() / target.norm().clamp_min(1e-300)


def population_errors(populations: dict[str, torch.Tensor], predicted: torch.Tensor,
                      target: torch.Tensor) -> dict[str, torch.Tensor]:
    """`rel_error_<population>` for each population that is not the whole network ("ring A" -> ring_a):
    the overall rel_error is dominated by the population with the largest rates (a WTA's inhibitory
    unit), so each population's own figure tells whether its computation is approximated."""
    errors = {}
    for name, units in populations.items():
        if len(units) < predicted.shape[1]:
            key = "rel_error_" + name.lower().replace(" ", "_")
            errors[key] = relative_error(predicted[:, units.to(predicted.device)], target[:, units.to(target.device)])
    return errors


class TaskConfigError(ValueError):
    """A task config value that cannot build the task; the message names the key."""


def require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise TaskConfigError(f"task.{key}={value!r} is invalid: {allowed}")


def require_finite(section, keys: tuple[str, ...], prefix: str = "") -> None:
    """Every named number of a config section is finite (inf/nan would only fail deep in a solve)."""
    for key in keys:
        value = getattr(section, key)
        require(math.isfinite(value), prefix + key, value, "must be a finite number")
