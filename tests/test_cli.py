"""The scripts that act on a run answer a wrong command line with one `error:` line naming the
problem, exit status 1 and no traceback (run as a user would, in a fresh interpreter)."""

from __future__ import annotations

import pytest

from tests.conftest import run_script

CASES = [
    (["scripts/summarize.py", "outputs/multiruns/wta/x"], "arguments are key=value, got 'outputs/multiruns/wta/x'; keys: sweep, out"),
    (["scripts/summarize.py"], "sweep=... is required"),
    (["scripts/evaluate.py"], "checkpoint=... is required"),
    (["scripts/evaluate.py", "checkpoint=x.pt", "n_sample=3"], "Key 'n_sample' not in 'EvaluateConfig'; keys: checkpoint, n_samples"),
    (["scripts/evaluate.py", "checkpoint=x.pt", "n_samples=many"], "Value 'many' of type 'str' could not be converted to Integer"),
    (["scripts/evaluate.py", "checkpoint=README.md"], "checkpoint README.md cannot be read (truncated, corrupt"),
    (["scripts/evaluate.py", "checkpoint=missing.pt"], "checkpoint not found: missing.pt"),
    (["scripts/export.py", "format=onnx"], "checkpoint=... is required"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(args) for args, _ in CASES])
def test_a_wrong_command_line_is_one_clear_line(args, message):
    result = run_script(args, check=False, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "weights_only=False" not in result.stderr and "Traceback" not in result.stderr

