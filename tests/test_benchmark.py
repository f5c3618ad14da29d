"""scripts/benchmark_solver.py's task and throughput modes at tiny sizes on the CPU.

The throughput table is what a GPU run prints (`--device cuda`); here `--batches` runs the
same code on the CPU, so that the one GPU run finds it working.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TINY, TINY_RUN, run_script

METHODS = {"rnn_ff", "torchdiffeq_fixed_horizon", "scipy_root_from_zero", "scipy_root_from_drive",
           "damped_iteration", "torchdeq_broyden"}


def benchmark(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    run_script(["scripts/benchmark_solver.py", *args, "--json", str(out)], timeout=120)
    return json.loads(out.read_text())


def test_task_mode_reports_every_method_and_rnn_ff_is_right_wherever_it_converged(tmp_path):
    report = benchmark(tmp_path, "--task", "wta", "--batch", "48", "--root-samples", "8", "--repeats", "1")
    rows = report["rows"]
    assert set(rows) == METHODS
    assert report["statuses"]["converged"] == 48
    ours = rows["rnn_ff"]
    assert ours["right"] == ours["of_converged"] == 48 and ours["right_fraction"] == 1.0
    assert ours["residual_max"] <= 1e-9 and ours["vs_rnn_ff"] == 1.0
    assert rows["scipy_root_from_zero"]["samples"] == rows["scipy_root_from_drive"]["samples"] == 8
    for name, row in rows.items():
        if "skipped" in row:  # only the optional torchdeq may be missing
            assert name == "torchdeq_broyden" and "torchdeq" in row["skipped"]
            continue
        assert row["ms_per_fp"] > 0 and 0 <= row["right"] <= row["of_converged"] == row["samples"]


def test_task_option_makes_the_hard_wta_where_a_root_finder_from_zero_finds_other_fixed_points(tmp_path):
    """alpha = 1.2: single winners, many unstable fixed points; "right" must tell them apart."""
    report = benchmark(tmp_path, "--task", "wta", "--task-option", "self_excitation=1.2", "--batch", "16",
                       "--root-samples", "8", "--repeats", "1")
    assert report["task_options"] == ["self_excitation=1.2"]
    assert report["rows"]["rnn_ff"]["right_fraction"] == 1.0
    assert report["rows"]["scipy_root_from_zero"]["right"] < 8


def test_throughput_mode_has_a_row_per_batch_with_the_fixed_horizon_where_asked(tmp_path):
    report = benchmark(tmp_path, "--device", "cpu", "--batches", "32,64", "--horizon-max-batch", "32")
    rows = report["rows"]
    assert report["mode"] == "throughput" and [row["batch"] for row in rows] == [32, 64] and not report["skipped"]
    assert "fixed_horizon_per_minute" in rows[0] and "fixed_horizon_per_minute" not in rows[1]
    for row in rows:
        assert row["converged"] == row["batch"] and row["verified_per_minute"] > 0 and row["ff_speedup"] > 0
    assert rows[0]["max_rate_diff_vs_fixed_horizon"] < 1e-3


def test_throughput_mode_skips_larger_batches_once_a_row_exceeds_its_budget(tmp_path):
    report = benchmark(tmp_path, "--device", "cpu", "--batches", "64,16", "--horizon-max-batch", "0",
                       "--row-budget", "0.001")
    assert [row["batch"] for row in report["rows"]] == [16]  # smallest first
    assert [entry["batch"] for entry in report["skipped"]] == [64]
    assert "--row-budget" in report["skipped"][0]["reason"]


def test_scaling_mode_measures_every_network_kind_against_euler_and_skips_rows_over_budget(tmp_path):
    """scripts/benchmark_scaling.py: one subprocess per row; Euler reaches the same converged answers."""
    out = tmp_path / "scaling.json"
    run_script(["scripts/benchmark_scaling.py", "--units", "64", "96", "--batch", "8", "--kinds", "proven", "isn",
                "multistable", "tanh", "--row-budget", "1e-6", "--json", str(out)], timeout=300)
    report = json.loads(out.read_text())
    measured = [row for row in report["rows"] if "ms_per_fp" in row]
    assert [row["kind"] for row in measured] == ["proven", "isn", "multistable", "tanh"]
    assert all(row["units"] == 64 for row in measured)
    skipped = [row for row in report["rows"] if "skipped" in row]
    assert [row["units"] for row in skipped] == [96] * 4 and "--row-budget" in skipped[0]["skipped"]
    proven = measured[0]
    assert proven["certificate"] == "globally stable" and proven["statuses"] == {"converged": 8}
    assert measured[1]["certificate"] == "per region"
    for row in measured:
        assert row["peak_rss_mb"] > report["baseline_rss_mb"] > 0
        assert row["euler"]["reached"] and row["euler"]["same"] == row["statuses"].get("converged", 0)


def test_training_benchmark_splits_a_run_into_its_phases_and_compares_a_variant_and_a_git_revision(tmp_path):
    common = " ".join([*TINY["wta"], *TINY_RUN, f"paths.log_dir={tmp_path}"])
    result = run_script(["scripts/benchmark_training.py", "--tasks", "wta", "--common", common,
                         "--variant", "trainer.batch_size=16", "--before", "HEAD"], timeout=300)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    defaults, variant, before = report["rows"]
    assert (defaults["variant"], variant["variant"], before["variant"]) == ("defaults", "trainer.batch_size=16",
                                                                             "before HEAD")
    assert before["optimizer_steps"] == defaults["optimizer_steps"] and before["wall_s"] > 0
    assert (defaults["batch_size"], variant["batch_size"]) == (32, 16)
    assert variant["optimizer_steps"] == 2 * defaults["optimizer_steps"]  # 96 inputs x 4 epochs / 16
    for row in report["rows"]:
        assert all(row[f"{phase}_s"] > 0 for phase in ("steps", "validation", "logging", "checkpoints"))
        assert row["wall_s"] > row["steps_s"] + row["validation_s"] and 0 < row["of_matmul"] < 10
        assert row["headline"] is not None
    assert "wta: trainer.batch_size=16 takes" in result.stdout and "wta: before HEAD takes" in result.stdout
    assert set(report["step_ms"]["wta"]) == {"fused", "default"} and min(report["step_ms"]["wta"].values()) > 0
