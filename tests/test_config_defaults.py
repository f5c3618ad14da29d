"""Every default is the same in the schema (rnn_ff/config.py, the task dataclasses) and in the YAML
that documents it (configs/): a value changed in one place only fails here, naming the key."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from omegaconf import OmegaConf

from rnn_ff.config import DataConfig, ModelConfig, SolverConfig, TrainerConfig
from rnn_ff.tasks import TASKS
from tests.conftest import compose_config

GROUPS = {"model": ModelConfig, "solver": SolverConfig, "trainer": TrainerConfig, "data": DataConfig}


def differences(schema: dict, composed: dict, prefix: str) -> list[str]:
    return [f"{prefix}.{key}: schema {value!r}, YAML {composed.get(key)!r}" for key, value in schema.items()
            if composed.get(key) != value]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_composed_defaults_equal_the_schema_defaults(tmp_path, task):
    cfg = OmegaConf.to_container(compose_config(tmp_path, [f"task={task}"]), resolve=False)
    found = differences(asdict(TASKS[task][0]()), cfg["task"], "task")
    for group, schema in GROUPS.items():
        found += differences(asdict(schema()), cfg[group], group)
    assert not found, "defaults that differ between schema and YAML:\n" + "\n".join(found)
