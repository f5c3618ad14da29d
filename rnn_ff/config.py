"""Structured configs: the schema of every config group, registered in Hydra's ConfigStore.

A misspelt key or a wrongly typed value fails when Hydra composes the config; values
that are well typed but meaningless (a negative size, an unknown device) fail in
`validate`, before any work, with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import II, MISSING, DictConfig, OmegaConf, open_dict

from rnn_ff.model import FeedForwardApproximator
from rnn_ff.solver import SolverOptions
from rnn_ff.tasks import TASKS, Task

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"float64": torch.float64, "float32": torch.float32}
HIDDEN_ACTIVATIONS = ("relu", "tanh", "gelu", "silu")
OUTPUT_ACTIVATIONS = ("auto", "relu", "softplus", "none")


# What a required key (???) holds, for the message when it is missing.
MISSING_HINTS = {"task.weights": " (the N x N weight matrix, a .npy or .pt file: W[i, j] is the weight from unit j "
                                 "onto unit i)"}


class ConfigError(ValueError):
    """A config value that is well typed but not allowed; the message names the key."""


@dataclass
class ModelConfig:
    """The feed-forward approximator: input -> hidden -> one rate per recurrent unit."""

    hidden: int = II("rnn_ff.task_default:${task.name},hidden")  # the task's own (Task.hidden: 512; wta 256)
    activation: str = "relu"  # relu | tanh | gelu | silu; ReLU matches the piecewise-linear targets
    # auto: relu where the network's rates are >= 0 (relu, power; often exactly 0), none where they
    # can be negative (tanh, sigmoid); or relu | softplus | none
    output_activation: str = "auto"
    # 1: the paper's two-layer network (input -> hidden -> rates); the task's own (Task.hidden_layers:
    # 1; wta 2, whose shared inhibition of the active units is a composition one layer pieces together)
    hidden_layers: int = II("rnn_ff.task_default:${task.name},hidden_layers")


@dataclass
class SolverConfig(SolverOptions):
    """SolverOptions (rnn_ff/solver/options.py) and how a run calls the solver."""

    dtype: str = "float64"  # float64 targets are exact to ~1e-12; float32 to ~1e-5
    progress: bool = True  # a progress bar with the running status counts


@dataclass
class TrainerConfig:
    """The plain PyTorch loop (rnn_ff/training.py): AdamW, warm-up + cosine, early stopping."""

    # The task's own (Task.max_epochs, Task.batch_size, Task.lr): 300, 128, 2e-3; the default tasks
    # reach their quality in 140-150 epochs at a higher lr (README, "Training time")
    max_epochs: int = II("rnn_ff.task_default:${task.name},max_epochs")
    batch_size: int = II("rnn_ff.task_default:${task.name},batch_size")
    lr: float = II("rnn_ff.task_default:${task.name},lr")
    weight_decay: float = 1e-5
    warmup_epochs: int = 5
    min_lr_ratio: float = 0.01  # cosine schedule floor, as a fraction of lr
    grad_clip: float = 1.0
    # rectified: with a ReLU output, the pre-activation's error where the target rate is > 0 and only
    # a positive pre-activation where it is 0 (a unit silent where it should respond still learns);
    # mse: the squared error of the rectified output (such a unit gets no gradient and stays dead)
    loss: str = "rectified"
    patience: int = 40  # early stopping: epochs without a better val/rel_error
    # epochs between writes of checkpoints/last.pt; 0: as often as costs at most 2% of the run (it is
    # written at the end, and on Ctrl-C, in any case)
    checkpoint_every: int = 0
    n_figure_examples: int = 4  # test inputs drawn as recurrent-vs-FF figures
    progress: bool = True  # a progress bar over epochs
    cuda_graphs: bool = True  # on a GPU, each optimiser step replayed from a CUDA graph (rnn_ff/training_steps.py)


@dataclass
class DataConfig:
    """(input, fixed point) pairs; only converged samples (stable fixed points) are kept."""

    n_train: int = II("rnn_ff.task_default:${task.name},n_train")  # the task's own default (Task.n_train)
    n_val: int = 512
    n_test: int = 512
    seed: int = 0  # the dataset's own seed: a sweep over `seed` reuses one dataset
    cache_dir: str = "${paths.cache_dir}"
    multistability_inputs: int = 0  # re-solve this many inputs from random starts and count start-dependent ones
    n_shards: int = 1  # scripts/generate_data.py: generate in this many shards (not part of the dataset key)
    shard: Optional[int] = None  # scripts/generate_data.py: the shard this job generates, 0 .. n_shards - 1


@dataclass
class PathsConfig:
    """Every path comes from here, never from the working directory."""

    root_dir: str = "${rnn_ff.project_root:}"  # the folder holding train.py and configs/
    log_dir: str = "${paths.root_dir}/outputs"
    cache_dir: str = "${paths.log_dir}/cache"  # shared by all runs: datasets keyed by a hash of what determines them
    # this run's folder (null before the run starts: `--cfg job --resolve` and `--help` show it so)
    output_dir: Optional[str] = "${hydra:runtime.output_dir}"


@dataclass
class TrainConfig:
    task: Any = MISSING
    model: ModelConfig = field(default_factory=ModelConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0  # model init and batch order; the dataset has its own data.seed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: Optional[str] = None  # a checkpoint path, or "auto": this run dir's (or the latest matching) last.pt


def register_configs() -> None:
    if not OmegaConf.has_resolver("rnn_ff.project_root"):
        OmegaConf.register_new_resolver("rnn_ff.project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("rnn_ff.task_default"):
        OmegaConf.register_new_resolver("rnn_ff.task_default", _task_default)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for name, (schema, _) in TASKS.items():  # outside any group: not options of `task`, nor a group in --help
        store.store(name=f"task_schema_{name}", node=schema)


def _task_default(name: str, attribute: str) -> int | float:
    """A default that depends on the task (model.hidden, model.hidden_layers, data.n_train,
    trainer.batch_size, trainer.lr, trainer.max_epochs): the Task class's own
    attribute; an unknown task name is reported by validate."""
    return getattr(TASKS[name][1] if name in TASKS else Task, attribute)


def load_config(overrides: Sequence[str] = (), output_dir: str | Path = "outputs/runs/python") -> DictConfig:
    """The config `python train.py <overrides>` would run, for a run started from Python: what the
    run writes goes to `output_dir` (the dataset cache stays where paths.cache_dir says)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(PROJECT_ROOT / "configs")):
        cfg = compose(config_name="train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(output_dir).resolve())
    return cfg


def solver_options(solver_cfg) -> SolverOptions:
    return SolverOptions(**{f.name: solver_cfg[f.name] for f in fields(SolverOptions)})


def resolve_device(name: str) -> torch.device:
    """The torch device for a `device` config value; a ConfigError if it names none that exists here."""
    match = re.fullmatch(r"auto|cpu|cuda(?::(\d+))?", name)
    if match is None:
        raise ConfigError(f"device={name!r} is invalid: allowed: auto, cpu, cuda, cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=cpu or device=auto")
    if match[1] is not None and int(match[1]) >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def unknown_keys(cfg: DictConfig) -> list[tuple[str, list[str]]]:
    """(key, the keys its schema declares) for every key of `cfg` that no schema declares, in
    order. Hydra's `+key=value` adds a key even to a structured config, where nothing reads it."""
    task_schema = TASKS[cfg.task.name][0] if cfg.get("task") and cfg.task.get("name") in TASKS else None
    found: list[tuple[str, list[str]]] = []

    def walk(node: DictConfig, schema: type, prefix: str) -> None:
        hints = typing.get_type_hints(schema)
        known = [f.name for f in fields(schema)]
        for key in node.keys():
            name = f"{prefix}{key}"
            if key not in known:
                found.append((name, known))
            elif dataclasses.is_dataclass(hints.get(key)) and isinstance(node[key], DictConfig):
                walk(node[key], hints[key], f"{name}.")

    walk(cfg, TrainConfig, "")
    if task_schema is not None and isinstance(cfg.task, DictConfig):
        walk(cfg.task, task_schema, "task.")
    return [(key, known) for key, known in found if key != "hydra"]


def validate(cfg) -> None:
    """Reject meaningless values before any work is done."""

    def check(ok: bool, key: str, value, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={value!r} is invalid: {allowed}")

    def positive(value) -> bool:
        return math.isfinite(value) and value > 0

    unknown = unknown_keys(cfg)
    if unknown:
        key, known = unknown[0]
        close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=1)
        hint = f" (did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?)" if close else ""
        raise ConfigError(f"{key} is not a config key{hint}: no schema declares it (a '+' override adds keys that "
                          "nothing reads); `python train.py --cfg job` lists them all")
    missing = sorted(key for key in OmegaConf.missing_keys(cfg) if not key.startswith("hydra."))
    if missing:
        raise ConfigError(f"{missing[0]} is required and has no default: add {missing[0]}=<value> to the command line"
                          f"{MISSING_HINTS.get(missing[0], '')}")

    check(cfg.task.name in TASKS, "task.name", cfg.task.name, f"allowed: {sorted(TASKS)}")
    resolve_device(cfg.device)
    check(cfg.model.hidden >= 1, "model.hidden", cfg.model.hidden, "must be >= 1")
    check(cfg.model.hidden_layers >= 1, "model.hidden_layers", cfg.model.hidden_layers, "must be >= 1")
    check(cfg.model.activation in HIDDEN_ACTIVATIONS, "model.activation", cfg.model.activation,
          f"allowed: {list(HIDDEN_ACTIVATIONS)}")
    check(cfg.model.output_activation in OUTPUT_ACTIVATIONS, "model.output_activation",
          cfg.model.output_activation, f"allowed: {list(OUTPUT_ACTIVATIONS)}")
    check(cfg.solver.dtype in DTYPES, "solver.dtype", cfg.solver.dtype, f"allowed: {list(DTYPES)}")
    try:
        solver_options(cfg.solver)  # SolverOptions checks its own values
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for key in ("n_train", "n_val", "n_test"):
        check(cfg.data[key] >= 1, f"data.{key}", cfg.data[key], "must be >= 1")
    check(cfg.data.multistability_inputs >= 0, "data.multistability_inputs", cfg.data.multistability_inputs,
          "must be >= 0 (0: off)")
    trainer = cfg.trainer
    for key in ("max_epochs", "batch_size", "patience"):
        check(trainer[key] >= 1, f"trainer.{key}", trainer[key], "must be >= 1")
    check(trainer.checkpoint_every >= 0, "trainer.checkpoint_every", trainer.checkpoint_every,
          "must be >= 0 (0: as often as costs at most 2% of the run)")
    check(positive(trainer.lr), "trainer.lr", trainer.lr, "must be a finite number > 0")
    check(trainer.loss in FeedForwardApproximator.LOSSES, "trainer.loss", trainer.loss,
          f"allowed: {list(FeedForwardApproximator.LOSSES)}")
    check(trainer.grad_clip > 0, "trainer.grad_clip", trainer.grad_clip, "must be > 0 (inf: no clipping)")
    check(math.isfinite(trainer.weight_decay) and trainer.weight_decay >= 0, "trainer.weight_decay",
          trainer.weight_decay, "must be a finite number >= 0")
    check(trainer.warmup_epochs >= 0, "trainer.warmup_epochs", trainer.warmup_epochs, "must be >= 0")
    check(0 <= trainer.min_lr_ratio <= 1, "trainer.min_lr_ratio", trainer.min_lr_ratio, "must be in [0, 1]")
    check(trainer.n_figure_examples >= 0, "trainer.n_figure_examples", trainer.n_figure_examples, "must be >= 0")
