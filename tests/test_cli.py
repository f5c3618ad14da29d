"""Every entry point answers a user's mistake with one `error:` line naming the problem, printed
once, exit status 1, no traceback, and no run folder left behind (run as a user would, in a
fresh interpreter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_script

# (arguments, what the one line says); {tmp} is this test's folder.
CASES = [
    (["train.py", "task=custom"], "error: task.weights is required and has no default: add task.weights=<value> to "
                                  "the command line (the N x N weight matrix, a .npy or .pt file"),
    (["train.py", "task=custom", "task.weights={tmp}/W.npy"], "error: task.weights: file not found: {tmp}/W.npy"),
    (["train.py", "task=wta", "data.n_train=0"], "error: data.n_train=0 is invalid: must be >= 1"),
    (["train.py", "task=ssn", "hydra.run.dir={tmp}/notes.txt/run"], "error: cannot create the run folder "
                                                                    "{tmp}/notes.txt/run (hydra.run.dir): Not a directory"),
    # Hydra's own hint for a misspelt key is '+': the added key would be silently ignored
    (["train.py", "task=wta", "+trainer.max_epoch=5"], "error: trainer.max_epoch is not a config key (did you mean "
                                                         "trainer.max_epochs?)"),
    (["train.py", "task=wta", "+task.self_exitation=1.2"], "error: task.self_exitation is not a config key (did you "
                                                            "mean task.self_excitation?)"),
    (["scripts/generate_data.py", "task=ssn", "+data.n_trian=5"], "error: data.n_trian is not a config key (did you "
                                                                   "mean data.n_train?)"),
    (["train.py", "task=wta", "resume={tmp}/notes.txt"], "error: checkpoint {tmp}/notes.txt cannot be read"),
    (["scripts/generate_data.py", "task=custom"], "error: task.weights is required and has no default"),
    (["scripts/summarize.py", "outputs/multiruns/wta/x"], "error: arguments are key=value, got 'outputs/multiruns/wta/x'; "
                                                          "keys: sweep, out"),
    (["scripts/summarize.py"], "error: sweep=... is required"),
    (["scripts/evaluate.py"], "error: checkpoint=... is required"),
    (["scripts/evaluate.py", "checkpoint=x.pt", "n_sample=3"], "error: Key 'n_sample' not in 'EvaluateConfig'; keys: "
                                                               "checkpoint, n_samples"),
    (["scripts/evaluate.py", "checkpoint=x.pt", "n_samples=many"], "error: Value 'many' of type 'str' could not be "
                                                                   "converted to Integer"),
    (["scripts/evaluate.py", "checkpoint={tmp}/notes.txt"], "error: checkpoint {tmp}/notes.txt cannot be read "
                                                            "(truncated, corrupt"),
    (["scripts/evaluate.py", "checkpoint={tmp}/missing.pt"], "error: checkpoint not found: {tmp}/missing.pt"),
    (["scripts/export.py", "format=onnx"], "error: checkpoint=... is required"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_a_user_error_is_one_clear_line_and_leaves_no_run_folder(tmp_path: Path, args, message):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    args = [arg.format(tmp=tmp_path) for arg in args]
    hydra_app = args[0] in ("train.py", "scripts/generate_data.py")
    outputs = tmp_path / "outputs"
    result = run_script([*args, f"paths.log_dir={outputs}"] if hydra_app else args, check=False, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(message.format(tmp=tmp_path)), lines[0]
    assert "weights_only=False" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.count(lines[0][len("error: "):]) == 0  # printed once: not in the console log too
    assert not list(outputs.rglob(".hydra")), "a run folder was left behind"


def test_the_task_schemas_are_not_offered_as_tasks(tmp_path: Path):
    result = run_script(["train.py", "task=wtaa", f"paths.log_dir={tmp_path}"], check=False, timeout=120)
    assert result.returncode == 1 and "Could not find 'task/wtaa'" in result.stderr
    options = result.stderr.split("Available options in 'task':")[1].split("Config search path")[0].split()
    assert options == ["balanced", "custom", "denoising", "ring_ssn", "ssn", "transformation", "wilson_cowan", "wta"]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("script, task, hidden", [("train.py", "wta", 256), ("train.py", "ssn", 512),
                                                  ("scripts/generate_data.py", "ssn", 512)])
def test_help_lists_the_groups_users_choose_and_the_config_resolved_for_the_task(script, task, hidden):
    result = run_script([script, f"task={task}", "--help"], timeout=120)
    groups = result.stdout.split("== Configuration groups (group=option) ==")[1].split("== Config")[0]
    assert [word[:-1] for word in groups.split() if word.endswith(":")] == [
        "data", "experiment", "hparams_search", "launcher", "model", "paths", "solver", "task", "trainer"]
    assert "schema" not in groups and "${" not in result.stdout
    assert f"  hidden: {hidden}\n" in result.stdout and f"  name: {task}\n" in result.stdout


def test_cfg_job_resolve_prints_the_composed_config():
    result = run_script(["train.py", "task=ssn", "--cfg", "job", "--resolve"], timeout=120)
    assert "  hidden: 512\n" in result.stdout and "  output_dir: null\n" in result.stdout
