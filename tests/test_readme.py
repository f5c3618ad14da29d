"""The README stays true: its commands name real files and its solver example runs as shown."""

import re

from rnn_ff.config import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_quickstart_is_what_ci_runs():
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    for command in ('pip install -e ".[dev]"', "python -m pytest"):
        assert command in README and command in ci
    assert "python train.py task=wta" in README


def test_scripts_and_configs_named_in_the_readme_exist():
    for script in set(re.findall(r"scripts/\w+\.py", README)):
        assert (PROJECT_ROOT / script).is_file(), script
    for group, name in set(re.findall(r"\b(task|experiment|launcher|hparams_search)=(\w+)", README)):
        assert (PROJECT_ROOT / "configs" / group / f"{name}.yaml").is_file(), f"{group}={name}"


def test_solver_example_prints_what_the_readme_says():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "solve_fixed_points" in b)
    namespace: dict = {}
    exec(block, namespace)
    expected = re.search(r"result\.status\s+# (\[.*?\])", block).group(1)
    assert str(namespace["result"].status) == expected
