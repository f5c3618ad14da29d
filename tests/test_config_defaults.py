"""Each default is written once, in the schema (rnn_ff/config.py and the task dataclasses): the
YAML files of the default groups only select it, and what Hydra composes equals the schema."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from rnn_ff.config import PROJECT_ROOT, DataConfig, ModelConfig, SolverConfig, TrainerConfig
from rnn_ff.tasks import TASKS
from tests.conftest import compose_config

GROUPS = {"model": ModelConfig, "solver": SolverConfig, "trainer": TrainerConfig, "data": DataConfig}
# Groups whose files hold defaults (experiment/, launcher/, hparams_search/ hold deliberate overrides).
DEFAULT_GROUPS = ("task", "model", "solver", "trainer", "data", "paths")


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


def test_no_yaml_file_writes_a_default_again():
    files = [PROJECT_ROOT / "configs" / "train.yaml"]
    files += sorted(path for group in DEFAULT_GROUPS for path in (PROJECT_ROOT / "configs" / group).glob("*.yaml"))
    assert len(files) >= 1 + len(DEFAULT_GROUPS) + len(TASKS) - 1
    values = {str(path.relative_to(PROJECT_ROOT)): sorted(set(OmegaConf.load(path)) - {"defaults"})
              for path in files}
    assert not {name: keys for name, keys in values.items() if keys}, "set again outside the schema"


def test_the_schemas_are_not_options_of_the_task_group(tmp_path):
    with pytest.raises(MissingConfigException, match="task/wta_schema"):
        compose_config(tmp_path, ["task=wta_schema"])
