"""What every task provides: a recurrent network, an input sampler and task metrics."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from rnn_ff.network import RecurrentNetwork

Labels = dict[str, torch.Tensor]  # per-sample facts the metrics need (first dim = batch)
# Inputs are drawn in blocks of this many, so that the draw of n inputs is the start of the draw
# of any larger n for every task's sampler (one that draws several tensors of length n is not).
DRAW_BLOCK = 1024


@dataclass(frozen=True)
class QualityTarget:
    """A bound that a task's default run must meet (mean over seeds 0-2), stated once here: the
    report marks each met or missed and the slow tests check them."""

    metric: str  # a test metric, without the "test/" prefix
    bound: float
    kind: str = "at most"  # "at most" | "at least" | "within" (|FF - recurrent network| <= bound)

    def value(self, metrics: Mapping[str, float]) -> float:
        """The number the bound applies to, from one run's metrics.json."""
        found = metrics[f"test/{self.metric}"]
        return abs(found - metrics[f"test/recurrent_{self.metric}"]) if self.kind == "within" else found

    def met(self, value: float, slack: float = 0.0) -> bool:
        """Whether `value` meets the bound, loosened by the fraction `slack` of its allowance (one
        seed's run against a bound on the mean over seeds: an error of up to (1 + slack) x bound,
        an agreement short of 1 by up to (1 + slack) x (1 - bound))."""
        if self.kind == "at least":
            return 1.0 - value <= (1.0 + slack) * (1.0 - self.bound)
        return value <= (1.0 + slack) * self.bound

    def __str__(self) -> str:
        if self.kind == "within":
            return f"{self.metric} within {self.bound:g} of the recurrent network's"
        return f"{self.metric} {'≥' if self.kind == 'at least' else '≤'} {self.bound:g}"


class Task(ABC):
    name: str
    network: RecurrentNetwork

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, Labels]:
        """Draw n inputs (n x D, float64) and their labels, reproducibly from `generator`."""

    def draw(self, layout: Sequence[tuple[str, int]], seed: int) -> tuple[torch.Tensor, Labels]:
        """A dataset's inputs and labels, the splits of `layout` ((split, size) pairs) one after
        another: by default the start of one seeded sequence of `sample`, DRAW_BLOCK at a time."""
        total = sum(n for _, n in layout)
        generator = torch.Generator().manual_seed(seed)
        blocks = [self.sample(DRAW_BLOCK, generator) for _ in range(-(-total // DRAW_BLOCK))]
        inputs = torch.cat([block[0] for block in blocks])[:total]
        return inputs, {name: torch.cat([block[1][name] for block in blocks])[:total] for name in blocks[0][1]}

    def file_contents(self) -> dict[str, Any]:
        """What files the task config names hold beyond the network (a custom task's input set),
        stored in a checkpoint so that `rebuilt` needs none of them."""
        return {}

    @classmethod
    def rebuilt(cls, cfg, network: RecurrentNetwork, contents: Mapping[str, Any]) -> Task:
        """The task a checkpoint was trained on, from its config, network and file_contents."""
        return cls(cfg, network)

    # Config keys that only change how results are evaluated, not the dataset: left out of its key.
    evaluation_only: tuple[str, ...] = ()
    # Task metrics (no split prefix) that the end-of-run summary quotes beside rel_error; the first
    # is the error of the population that carries the computation, where there is one.
    headline_metrics: tuple[str, ...] = ()
    quality_targets: tuple[QualityTarget, ...] = (QualityTarget("rel_error", 0.03),)
    # A default run's network (model.hidden, model.hidden_layers), training inputs (data.n_train)
    # and schedule (trainer.batch_size, trainer.lr, trainer.max_epochs): what the quality targets
    # need, the whole run within five minutes on a 2-core CPU (docs/results.md shows the alternatives;
    # the README's "Training time" how the default tasks' schedules were halved).
    hidden: int = 512
    hidden_layers: int = 1
    n_train: int = 4096
    batch_size: int = 128
    lr: float = 2e-3
    max_epochs: int = 300
    # The report's hardness map: task config keys and the values to sweep (their product), and
    # where along an axis the map changes kind (value, what happens beyond it).
    hardness: dict[str, tuple] = {}
    hardness_boundary: dict[str, tuple[float, str]] = {}

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
    """||P - T|| / ||T|| over the entries where `mask` (B x N or N, bool) is true: a population's own
    error (masked by multiplication: no data-dependent shapes, so no wait for a GPU)."""
    weight = 1.0 if mask is None else mask.to(predicted)
    return ((predicted - target) * weight).norm() / (target * weight).norm().clamp_min(1e-300)


def population_metric(population: str) -> str:
    """The metric of a population's own error: "ring A" -> rel_error_ring_a."""
    return "rel_error_" + population.lower().replace(" ", "_")


def population_errors(populations: dict[str, torch.Tensor], predicted: torch.Tensor,
                      target: torch.Tensor) -> dict[str, torch.Tensor]:
    """`rel_error_<population>` for each population that is not the whole network ("ring A" -> ring_a):
    the overall rel_error is dominated by the population with the largest rates (a WTA's inhibitory
    unit), so each population's own figure tells whether its computation is approximated."""
    errors = {}
    for name, units in populations.items():
        if len(units) < predicted.shape[1]:
            errors[population_metric(name)] = relative_error(predicted[:, units.to(predicted.device)],
                                                             target[:, units.to(target.device)])
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
