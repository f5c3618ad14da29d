"""Reusing a sweep's results: summary table and plot, loading and exporting a checkpoint, experiment configs.

One tiny real sweep (2 widths x 2 seeds of the wta_width_sweep experiment, shrunk on the command
line) is trained once per module and shared by the tests.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from rnn_ff import load_approximator
from rnn_ff.data import split_slices
from rnn_ff.config import PROJECT_ROOT, validate
from rnn_ff.tasks.wta import WTATask
from tests.conftest import TINY, TINY_RUN, compose_config, run_script

WIDTHS, SEEDS = (8, 16), (0, 1)
EXPERIMENTS = sorted(path.stem for path in (PROJECT_ROOT / "configs" / "experiment").glob("*.yaml"))


def tiny_multirun(root: Path) -> Path:
    """Run `train.py -m experiment=wta_width_sweep` shrunk to 2 widths x 2 seeds on tiny data; its sweep folder."""
    overrides = [o for o in TINY_RUN if not o.startswith("model.hidden=")]
    run_script(["train.py", "-m", "experiment=wta_width_sweep", *TINY["wta"], *overrides,
                f"model.hidden={','.join(map(str, WIDTHS))}", f"seed={','.join(map(str, SEEDS))}",
                f"paths.log_dir={root / 'outputs'}"], timeout=120)
    (sweep,) = (root / "outputs" / "multiruns" / "wta").iterdir()
    return sweep


def load_script(name: str):
    """A script as a module (registered in sys.modules, as dataclasses need)."""
    module_name = f"rnn_ff_script_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, PROJECT_ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def job_config(job: Path):
    return OmegaConf.load(job / ".hydra" / "config.yaml")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return tiny_multirun(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def exported(sweep, tmp_path_factory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("exported")
    formats = "all" if importlib.util.find_spec("onnx") else "torchscript"  # without the export extra: no ONNX
    result = run_script(["scripts/export.py", f"checkpoint={sweep / '0' / 'checkpoints' / 'best.pt'}",
                         f"out_dir={out_dir}", f"format={formats}", "n_check=64"], timeout=120)
    return out_dir, json.loads(result.stdout.strip().splitlines()[-1])


# --- sweep summary -----------------------------------------------------------------------------------------------

def test_summarize_writes_table_csv_and_plot_and_skips_unfinished_jobs(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    crashed = copy / "4"  # a job that died before writing metrics.json
    (crashed / ".hydra").mkdir(parents=True)
    shutil.copy(copy / "0" / ".hydra" / "config.yaml", crashed / ".hydra" / "config.yaml")

    result = run_script(["scripts/summarize.py", f"sweep={copy}"], timeout=60)
    assert "warning: skipping" in result.stderr and str(crashed) in result.stderr
    assert "4 jobs summarised, 1 skipped" in result.stdout

    with (copy / "summary.csv").open() as file:
        reader = csv.DictReader(file)
        columns, rows = reader.fieldnames, list(reader)
    assert len(rows) == len(WIDTHS) * len(SEEDS)
    assert columns[:4] == ["job", "task.name", "model.hidden", "seed"]
    assert not any(column.startswith(("paths.", "hydra")) for column in columns)
    assert {"test/rel_error", "val/rel_error", "test/r2", "speed/speedup", "data/converged"} <= set(columns)
    assert {(int(r["model.hidden"]), int(r["seed"])) for r in rows} == {(w, s) for w in WIDTHS for s in SEEDS}
    for row in rows:
        job = copy / row["job"]
        metrics = json.loads((job / "metrics.json").read_text())
        assert float(row["test/rel_error"]) == pytest.approx(metrics["test/rel_error"], rel=1e-12)
        assert row["task.name"] == "wta" and int(row["model.hidden"]) == job_config(job).model.hidden

    table = (copy / "summary.md").read_text()
    header = "| job | task.name | model.hidden | seed | val/rel_error | test/rel_error |"
    assert header in table and header in result.stdout
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| job")]
    assert len(body) == len(rows)

    png = copy / "rel_error_vs_hidden.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0  # a drawn figure, not a blank


def test_summarize_adds_the_keys_that_vary_and_one_line_per_task(sweep, tmp_path):
    summarize = load_script("summarize")
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    config = job_config(copy / "3")  # as if job 3 had been run with another learning rate and task
    config.trainer.lr = 1.0e-3
    config.task.name = "ssn"  # whose own default model.hidden_layers (resolved: 1, not wta's 2) differs too
    OmegaConf.save(config, copy / "3" / ".hydra" / "config.yaml")

    rows, config_columns, metric_columns, skipped = summarize.collect(copy)
    assert config_columns == ["task.name", "model.hidden", "seed", "model.hidden_layers", "trainer.lr"]
    assert [row["model.hidden_layers"] for row in rows] == [2, 2, 2, 1]
    assert [row["trainer.lr"] for row in rows] == [WTATask.lr] * 3 + [1e-3]
    assert metric_columns[:2] == ["val/rel_error", "test/rel_error"] and skipped == []
    assert summarize.plot_axis(rows, config_columns) == "model.hidden"
    assert summarize.plot_metric(tmp_path / "plot.png", rows, "model.hidden", config_columns) == 2


def test_summarize_resolves_the_task_defaults_plots_against_what_varied_and_tables_each_population(sweep, tmp_path):
    """A sweep over seeds alone that leaves model.hidden to the task (`${rnn_ff.task_default:...}` in
    each job's config): the table shows the width (wta: 256) and each population's error, the plot
    the error against the seed."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    for job in copy.iterdir():
        if (job / ".hydra").is_dir():
            text = (job / ".hydra" / "config.yaml").read_text()
            hidden = f"hidden: {job_config(job).model.hidden}\n"
            (job / ".hydra" / "config.yaml").write_text(text.replace(hidden, "hidden: ${rnn_ff.task_default:${task.name},hidden}\n", 1))
    result = run_script(["scripts/summarize.py", f"sweep={copy}"], timeout=60)
    assert "${" not in result.stdout
    header = ("| job | task.name | model.hidden | seed | val/rel_error | test/rel_error | test/rel_error_excitatory | "
              "test/rel_error_inhibitory | test/r2 |")
    assert header in result.stdout
    assert all(line.split(" | ")[2] == "256" for line in result.stdout.splitlines() if line.startswith("| 0 ") or
               line.startswith("| 1 "))
    assert f"{copy / 'rel_error_vs_seed.png'} (test/rel_error against seed, 1 line(s))" in result.stdout
    assert (copy / "rel_error_vs_seed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summarize_fails_clearly_without_finished_jobs(tmp_path):
    result = run_script(["scripts/summarize.py", f"sweep={tmp_path}"], check=False, timeout=60)
    assert result.returncode != 0 and "no job with metrics.json" in result.stderr


# --- load and export -----------------------------------------------------------------------------------------------

def test_load_approximator_maps_raw_inputs_to_rates(sweep):
    model = load_approximator(sweep / "0" / "checkpoints" / "best.pt")
    n_excitatory = job_config(sweep / "0").task.n_excitatory
    inputs = torch.rand(7, n_excitatory)  # the task's raw input range, uniform [0, 1]
    with torch.no_grad():
        rates = model(inputs)
    assert not model.training
    assert rates.shape == (7, n_excitatory + 1)  # the E units and the inhibitory unit
    assert torch.isfinite(rates).all() and (rates >= 0).all()
    cache = torch.load(next((sweep.parent.parent.parent / "cache").glob("wta-*.pt")), weights_only=True)
    test = split_slices(cache["key"]["sizes"])["test"]
    with torch.no_grad():
        predicted = model(cache["inputs"][test].float())
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    error = (predicted.double() - cache["rates"][test]).norm() / cache["rates"][test].norm()
    assert error.item() == pytest.approx(metrics["test/rel_error"], rel=1e-4)


def test_export_torchscript_matches_pytorch(sweep, exported):
    out_dir, report = exported
    path = out_dir / "best.torchscript.pt"
    assert report["torchscript"] == str(path) and report["torchscript_max_abs_diff"] < 1e-5
    assert report["n_check"] == 64
    extra = {"rnn_ff.json": ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["rnn_ff.json"])["task"] == "wta"
    model = load_approximator(sweep / "0" / "checkpoints" / "best.pt")
    inputs = torch.rand(13, model.hparams["n_inputs"])  # a batch size other than the one traced
    with torch.no_grad():
        assert (scripted(inputs) - model(inputs)).abs().max().item() < 1e-5


def test_export_onnx_matches_pytorch(sweep, exported):
    onnx = pytest.importorskip("onnx")
    out_dir, report = exported
    path = out_dir / "best.onnx"
    assert report["onnx"] == str(path)
    onnx.checker.check_model(onnx.load(str(path)))
    onnxruntime = pytest.importorskip("onnxruntime")
    assert report["onnx_max_abs_diff"] < 1e-5
    model = load_approximator(sweep / "0" / "checkpoints" / "best.pt")
    inputs = torch.rand(13, model.hparams["n_inputs"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (rates,) = session.run(None, {"inputs": inputs.numpy()})
    with torch.no_grad():
        assert abs(torch.from_numpy(rates) - model(inputs)).max().item() < 1e-5


def test_export_without_onnx_names_the_extra(sweep, tmp_path, monkeypatch):
    export = load_script("export")
    monkeypatch.setattr(export, "available", lambda module: module not in ("onnx", "onnxruntime"))
    checkpoint = sweep / "0" / "checkpoints" / "best.pt"
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[export\]"'):
        export.main([f"checkpoint={checkpoint}", f"out_dir={tmp_path}", "format=onnx"])
    with pytest.raises(SystemExit, match=rf'format=all wrote only {tmp_path / "model.torchscript.pt"}: ONNX export '
                                         r'needs the `onnx` package, .*pip install -e "\.\[export\]"'):
        export.main([f"checkpoint={checkpoint}", f"out_dir={tmp_path}", "format=all", "n_check=8", "name=model"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.torchscript.pt"]
    report = export.main([f"checkpoint={checkpoint}", f"out_dir={tmp_path}", "format=torchscript", "n_check=8",
                          "name=model"])
    assert report["torchscript_max_abs_diff"] < 1e-5 and "onnx" not in report
    assert zipfile.is_zipfile(tmp_path / "model.torchscript.pt")
    with pytest.raises(SystemExit, match="format='pickle' is invalid"):
        export.main([f"checkpoint={checkpoint}", "format=pickle"])


# --- experiment configs --------------------------------------------------------------------------------------------

def test_there_is_a_width_sweep_per_task():
    assert {"wta_width_sweep", "denoising_width_sweep", "transformation_width_sweep"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_config_composes_and_its_sweep_parses(tmp_path, name):
    path = PROJECT_ROOT / "configs" / "experiment" / f"{name}.yaml"
    assert path.read_text().startswith("# @package _global_")
    (task,) = [entry["override /task"] for entry in OmegaConf.load(path).defaults if "override /task" in entry]
    if not (PROJECT_ROOT / "configs" / "task" / f"{task}.yaml").is_file():
        pytest.skip(f"configs/task/{task}.yaml does not exist yet")

    cfg = compose_config(tmp_path, [f"experiment={name}"])
    assert cfg.task.name == task
    params = HydraConfig.get().sweeper.params
    sweeps = {o.key_or_group: list(o.sweep_iterator())
              for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])}
    assert sweeps == {"model.hidden": [16, 64, 256, 1024, 4096], "seed": [0, 1, 2]}

    widest = compose_config(tmp_path, [f"experiment={name}", "model.hidden=4096", "seed=2"])
    assert (widest.model.hidden, widest.seed, widest.task.name) == (4096, 2, task)
    validate(widest)


def test_sweep_ran_every_job_with_its_own_width_and_seed(sweep):
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == [str(i) for i in range(len(WIDTHS) * len(SEEDS))]
    runs = {(job_config(job).model.hidden, job_config(job).seed) for job in jobs}
    assert runs == {(w, s) for w in WIDTHS for s in SEEDS}
    assert all((job / "metrics.json").is_file() and (job / "checkpoints" / "best.pt").is_file() for job in jobs)
