"""The results report (rnn_ff/report): its analysis on known tables, and the whole pipeline on a tiny
study (real training runs, datasets, timings, figures and markdown)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from rnn_ff.report import analysis, generate, markdown
from rnn_ff.report.plan import QUICK, Settings, default_flops, default_task, plan
from rnn_ff.tasks.base import QualityTarget
from tests.conftest import run_script


def test_pareto_front_keeps_only_runs_no_cheaper_run_beats():
    runs = pd.DataFrame({"model/flops_per_input": [100, 200, 300, 400, 500],
                         "test/rel_error": [0.10, 0.12, 0.05, 0.06, 0.01],
                         "hidden_layers": [1, 2, 1, 3, 2], "hidden": [8, 8, 32, 8, 64]})
    assert analysis.pareto_front(runs)["model/flops_per_input"].tolist() == [100, 300, 500]
    text = analysis.pareto_conclusion(runs, default_flops=300, bound=0.03)
    assert "The cheapest network under 0.03 is 2 hidden layers of 64" in text
    assert "Within the default network's budget (0.3 kFLOP) the best is 1 hidden layer of 32" in text


def test_power_law_recovers_a_known_exponent_and_the_data_needed():
    n = np.array([1024, 4096, 16384, 65536], dtype=float)
    c, b, r2 = analysis.power_law(n, 2.0 * n**-0.5)
    assert (c, b, r2) == pytest.approx((2.0, -0.5, 1.0))
    runs = pd.DataFrame({"n_train": n, "test/rel_error": 4.0 * n**-0.5})
    assert "0.01 at about 160,000 inputs (2.4x the largest size)" in analysis.data_conclusion(runs)  # (4 / 0.01)^2
    reached = pd.DataFrame({"n_train": n, "test/rel_error": 2.0 * n**-0.5})
    assert analysis.data_conclusion(reached).endswith("Measured under 0.01 from 65,536 inputs.")
    flat = pd.DataFrame({"n_train": n, "test/rel_error": [0.05, 0.049, 0.048, 0.047]})
    assert "more data alone is not the way there" in analysis.data_conclusion(flat)


def test_targets_use_the_mean_over_seeds_and_their_kind():
    defaults = pd.DataFrame({"test/rel_error": [0.018, 0.024], "test/snr_gain_db": [15.0, 15.8],
                             "test/recurrent_snr_gain_db": [15.1, 15.1]})
    task = default_task("denoising")
    assert task.quality_targets == (QualityTarget("rel_error", 0.02), QualityTarget("snr_gain_db", 0.5, "within"))
    verdicts = analysis.target_verdicts(defaults, task)
    assert verdicts["mean over seeds"].tolist() == pytest.approx([0.021, 0.4])  # |15.0-15.1|, |15.8-15.1|
    assert verdicts["met"].tolist() == [False, True]
    assert str(QualityTarget("winner_agreement", 0.98, "at least")) == "winner_agreement ≥ 0.98"


def test_hardness_boundary_is_compared_at_each_value_of_the_other_axis():
    task = default_task("wta")
    rows = [{"n_excitatory": n, "self_excitation": alpha, "test/rel_error": error, "test/rel_error_excitatory": error}
            for n, scale in ((8, 1.0), (16, 2.0))
            for alpha, error in ((0.3, 0.01 * scale), (0.9, 0.02 * scale), (1.2, 0.05 * scale))]
    text = analysis.hardness_conclusion(task, pd.DataFrame(rows))
    assert "Along self_excitation 0.3 -> 0.9 -> 1.2: 0.015 -> 0.03 -> 0.075" in text
    assert "the best point is 2.5-2.5x worse than the worst point below at every n_excitatory" in text


def test_the_plan_runs_every_group_at_a_fixed_hardness_cost():
    runs = plan(QUICK, ("wta",))
    groups = {run.group for run in runs}
    assert groups == {"defaults", "pareto", "data", "hardness", "deeper"}
    assert len({run.folder for run in runs}) == len(runs)
    flops = default_flops(default_task("wta"))
    for run in (run for run in runs if run.group == "hardness"):  # FLOPs per input within 5% of the default's
        n, width = run.axes["n_excitatory"], run.axes["hidden"]
        assert abs(2 * (width * (n + n + 1) + width**2) / flops - 1) < 0.05  # two hidden layers


TINY = Settings(seeds=(0, 1), pareto_widths={1: (8, 16), 2: (8,)}, data_sizes=(64, 128), samples_per_run=640,
                min_epochs=2, study_n_train=64, study_epochs=3, timed_inputs=3, hardness_points=2,
                overrides=("data.n_train=64", "data.n_val=32", "data.n_test=32", "trainer.max_epochs=3",
                           "model.hidden=16", "trainer.n_figure_examples=2"))


def test_tiny_study_writes_every_section_figure_and_the_readme_summary(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{markdown.README_START}\nold\n{markdown.README_END}\nafter\n")
    out = generate(TINY, "quick", tmp_path / "runs", tmp_path / "docs", readme, ("wta", "ssn"), jobs=1,
                   extra=(f"data.cache_dir={tmp_path / 'cache'}",))
    text = out.read_text()
    for heading in ("## Summary: the default runs", "### Every target", "## Error against FF cost",
                    "## Error against data", "## Hardness maps", "### wta", "## Cost against size",
                    "## The default runs in detail", "## How"):
        assert heading in text, heading
    for figure in ("pareto", "data", "hardness_wta", "hardness_ssn", "cost_wta", "cost_ssn", "examples_wta"):
        assert (tmp_path / "docs" / "figures" / f"{figure}.png").stat().st_size > 1000
        assert f"(figures/{figure}.png)" in text
    # Each target of both tasks has a verdict, computed from the mean of the two seeds' metrics.
    table = analysis.target_verdicts(pd.read_json(tmp_path / "runs/defaults/wta/seed0/metrics.json", typ="series")
                                     .to_frame().T, default_task("wta"))
    assert "rel_error_excitatory ≤ 0.06" in text and "winner_agreement ≥ 0.98" in text
    assert not math.isnan(table["mean over seeds"].iloc[0])
    assert re.search(r"- wta: 0\.\d{4} \(\w+ run \w+, [\d,]+ training inputs\): (met|MISSED)", text)
    assert "With 3 hidden layers of the same width on the same 128 inputs" in text  # wta: 2 by default
    assert "With 2 hidden layers of the same width on the same 128 inputs" in text  # ssn: 1
    assert "Beyond" not in text  # the tiny grid stays below the WTA's self-excitation boundary
    readme_text = readme.read_text()
    assert "old" not in readme_text and "before" in readme_text and "after" in readme_text
    assert "| wta " in readme_text and "| ssn " in readme_text
    # A rerun keeps the finished runs: no training, the same numbers.
    logs = sorted((tmp_path / "runs").glob("*/*/*/train.log"))
    stamps = [log.stat().st_mtime_ns for log in logs]
    generate(TINY, "quick", tmp_path / "runs", tmp_path / "docs2", None, ("wta", "ssn"), jobs=1,
             extra=(f"data.cache_dir={tmp_path / 'cache'}",))
    assert [log.stat().st_mtime_ns for log in logs] == stamps
    summary = (tmp_path / "docs2" / "results.md").read_text().split("### Every target")[0]
    assert summary.split("\n", 4)[-1] == text.split("### Every target")[0].split("\n", 4)[-1]


@pytest.mark.slow
def test_quick_report_command(tmp_path):
    """`python scripts/report.py --quick`, as the README gives it (its own folders here)."""
    run_script(["scripts/report.py", "--quick", "--runs-dir", str(tmp_path / "runs"), "--docs-dir",
                str(tmp_path / "docs"), "--cache-dir", str(tmp_path / "cache")], timeout=900)
    assert "## Error against FF cost" in (tmp_path / "docs" / "results.md").read_text()
