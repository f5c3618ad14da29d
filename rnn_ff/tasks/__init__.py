"""Tasks: a recurrent network, its input distribution and its metrics, by name."""

from __future__ import annotations

from rnn_ff.network import RecurrentNetwork
from rnn_ff.tasks.balanced import BalancedConfig, BalancedTask
from rnn_ff.tasks.base import Task, TaskConfigError
from rnn_ff.tasks.custom import CustomConfig, CustomTask
from rnn_ff.tasks.denoising import DenoisingConfig, DenoisingTask
from rnn_ff.tasks.ring_ssn import RingSSNConfig, RingSSNTask
from rnn_ff.tasks.ssn import SSNConfig, SSNTask
from rnn_ff.tasks.transformation import TransformationConfig, TransformationTask
from rnn_ff.tasks.wilson_cowan import WilsonCowanConfig, WilsonCowanTask
from rnn_ff.tasks.wta import WTAConfig, WTATask

# name -> (config schema, task class)
TASKS = {
    "wta": (WTAConfig, WTATask),
    "transformation": (TransformationConfig, TransformationTask),
    "denoising": (DenoisingConfig, DenoisingTask),
    "custom": (CustomConfig, CustomTask),
    "ssn": (SSNConfig, SSNTask),
    "wilson_cowan": (WilsonCowanConfig, WilsonCowanTask),
    "ring_ssn": (RingSSNConfig, RingSSNTask),
    "balanced": (BalancedConfig, BalancedTask),
}


def build_task(cfg, network: RecurrentNetwork | None = None, file_contents: dict | None = None) -> Task:
    """Build a task from its config (a dataclass or DictConfig). Pass `network` (and the task's
    `file_contents`) to rebuild a stored task (from a checkpoint) without the files it came from."""
    name = cfg.name
    if name not in TASKS:
        raise TaskConfigError(f"task.name={name!r} is unknown; allowed: {sorted(TASKS)}")
    task_class = TASKS[name][1]
    return task_class(cfg, network) if network is None else task_class.rebuilt(cfg, network, file_contents or {})


__all__ = ["TASKS", "Task", "TaskConfigError", "build_task"]
