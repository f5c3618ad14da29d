"""Checkpoints: plain dicts of tensors and primitives, loaded with weights_only=True.

A checkpoint holds the model (with its normalisation), optimiser, scheduler, epoch, best
metric, RNG states, the resolved config and the recurrent network's definition, so that
it can be resumed, evaluated on new inputs, or used without the config that made it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from rnn_ff.model import FeedForwardApproximator
from rnn_ff.network import RecurrentNetwork
from rnn_ff.storage import StorageError, atomic_save, safe_load
from rnn_ff.tasks import TASKS, Task, build_task

CHECKPOINT_FORMAT = "rnn_ff.checkpoint/1"


class CheckpointError(StorageError):
    """A checkpoint that is not one of ours, or not for this task or model."""


def save_checkpoint(path: str | Path, **contents) -> None:
    """Write a checkpoint whose tensors are all on the CPU (a CUDA model's and optimiser's state
    dicts hold CUDA tensors), so that one written on a GPU loads on any machine."""
    atomic_save(on_cpu({"format": CHECKPOINT_FORMAT, **contents}), path)


def on_cpu(value):
    """`value` with every tensor in it, however deeply nested in dicts, lists and tuples, on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return type(value)((key, on_cpu(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(item) for item in value)
    return value


def load_checkpoint(path: str | Path, task: str | None = None, model_hparams: dict | None = None,
                    network: RecurrentNetwork | None = None) -> dict:
    """Load and check a checkpoint; `task`, `model_hparams` and `network` must match when given
    (a model of the right shape trained on another network would resume silently wrong)."""
    checkpoint = safe_load(path, "checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rnn_ff checkpoint (format {checkpoint.get('format')!r})")
    if task is not None and checkpoint["task"] != task:
        raise CheckpointError(f"checkpoint {path} was trained on task {checkpoint['task']!r}, not {task!r}")
    if model_hparams is not None and checkpoint["model_hparams"] != model_hparams:
        raise CheckpointError(f"checkpoint {path} holds a model {checkpoint['model_hparams']}, "
                              f"but this run builds {model_hparams}")
    if network is not None and not _same_network(checkpoint["network"], network.state_dict()):
        raise CheckpointError(f"checkpoint {path} was trained on another {checkpoint['task']} network than this "
                              "config builds (a task.* value or weight file differs)")
    return checkpoint


def _same_network(stored: dict, built: dict) -> bool:
    return stored.keys() == built.keys() and all(
        torch.equal(value, built[name]) if isinstance(value, torch.Tensor) else value == built[name]
        for name, value in stored.items())


def approximator_from(checkpoint: dict) -> FeedForwardApproximator:
    model = FeedForwardApproximator(**checkpoint["model_hparams"])
    model.load_state_dict(checkpoint["model"])
    return model.eval()


def task_from(checkpoint: dict) -> Task:
    """The task a checkpoint was trained on, with the network stored in it: its inputs and metrics,
    with no config or weight files needed (the one place every script rebuilds it)."""
    config = OmegaConf.merge(OmegaConf.structured(TASKS[checkpoint["task"]][0]), checkpoint["config"]["task"])
    return build_task(config, network=RecurrentNetwork.from_state_dict(checkpoint["network"]),
                      file_contents=checkpoint.get("task_files", {}))


def load_approximator(path: str | Path, device: str | torch.device = "cpu") -> FeedForwardApproximator:
    """The trained MLP of a checkpoint, mapping raw inputs (B x D) to rates (B x N)."""
    return approximator_from(load_checkpoint(path)).to(device)


def load_network(path: str | Path) -> RecurrentNetwork:
    """The recurrent network a checkpoint's approximator was trained on."""
    return RecurrentNetwork.from_state_dict(load_checkpoint(path)["network"])
