"""The README stays true: its commands name real files, its Hydra commands compose, and its
solver example runs as shown."""

import re
import shlex

import pytest

from rnn_ff.config import PROJECT_ROOT
from tests.conftest import compose_config

README = (PROJECT_ROOT / "README.md").read_text()


def test_quickstart_is_what_ci_runs():
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    for command in ('pip install -e ".[dev]"', "python -m pytest"):
        assert command in README and command in ci
    assert "python train.py task=wta" in README


def test_scripts_and_configs_named_in_the_readme_exist():
    for script in set(re.findall(r"scripts/[\w/]+\.py", README)):
        assert (PROJECT_ROOT / script).is_file(), script
    for group, name in set(re.findall(r"\b(task|experiment|launcher|hparams_search)=(\w+)", README)):
        assert (PROJECT_ROOT / "configs" / group / f"{name}.yaml").is_file(), f"{group}={name}"


def test_solver_example_prints_what_the_readme_says():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "solve_fixed_points" in b)
    namespace: dict = {}
    exec(block, namespace)
    expected = re.search(r"result\.status\s+# (\[.*?\])", block).group(1)
    assert str(namespace["result"].status) == expected


def readme_commands(*programs: str) -> list[str]:
    """The README's shell commands (continued lines joined, comments cut) that run these programs."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S) + re.findall(r"  ```bash\n(.*?)  ```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith(tuple(f"python {program}" for program in programs)) and command not in commands:
                commands.append(command)
    return commands


HYDRA_COMMANDS = readme_commands("train.py", "scripts/generate_data.py")


@pytest.mark.parametrize("command", HYDRA_COMMANDS)
def test_every_hydra_command_of_the_readme_composes(tmp_path, command):
    """Composed as Hydra would (nothing runs): its groups, keys and values exist and have the right
    types. A sweep is checked at its first point."""
    if "hparams_search=wta_optuna" in command:
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    args = [re.sub(r"=(?:range\((\d+)\)|([^,\[]*),.*)", lambda m: "=" + (m[1] and "0" or m[2]), arg)
            for arg in shlex.split(command.replace("<time>", "2026-01-01_00-00-00_000000"))[2:] if arg != "-m"]
    compose_config(tmp_path, args)  # as Hydra composes it for train.py and generate_data.py (same config)


def test_the_readme_commands_were_found():
    assert len(HYDRA_COMMANDS) >= 10 and any("task=custom" in command for command in HYDRA_COMMANDS)


def test_the_python_network_example_solves_and_trains(tmp_path):
    """The README's network built in Python: solved as the comment says, then trained (smaller here)."""
    block = next(b for b in re.findall(r"  ```python\n(.*?)  ```", README, re.S) if "from_network" in b)
    block = block.replace('"data.n_train=1024", "trainer.max_epochs=50"',
                          f'"data.n_train=64", "data.n_val=32", "data.n_test=32", "trainer.max_epochs=2", '
                          f'"trainer.progress=false", "solver.progress=false", "paths.log_dir={tmp_path}"')
    block = block.replace('"outputs/runs/python/ssn"', repr(str(tmp_path / "run")))
    namespace: dict = {}
    exec(re.sub(r"^  ", "", block, flags=re.M), namespace)
    result, metrics = namespace["result"], namespace["metrics"]
    assert result.status == ["converged", "converged"]
    assert [round(r, 2) for r in result.rates[:, 0].tolist()] == [3.26, 10.67]
    assert metrics["data/converged"] == 128 and (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
