"""Every GPU check and measurement of rnn_ff in one run, with a short summary.

    bash scripts/gpu_check.sh                  # on a GPU machine (installs .whl/ first): at most ~8 minutes
    bash scripts/gpu_check.sh --cpu-dry-run    # every stage on the CPU at tiny sizes: checks the plumbing only

Stages, in order, each in its own process group with its own timeout, all inside --budget
seconds: a stage that hangs costs only its own timeout, and one that fails is recorded while
the next one runs. Stages that no longer fit the budget are skipped and say so.
  environment    Python, torch, CUDA, GPU name and memory; nvidia-smi
  tests          python -m pytest -m cuda tests/test_cuda.py (+ tests/test_device.py): pass/fail counts
  train_<task>   python train.py task=<task> device=cuda, default settings, for wta, transformation and
                 denoising (solving their datasets on the GPU): training time (wall less the data phase)
                 beside the README's 2-core CPU time (the target: at least 3x faster), the checkpoints'
                 share, test/rel_error, data statuses, speed
  cpu_<task>     the same run with device=cpu, on this machine's own CPU cores, reading the datasets
                 the GPU runs cached (the target: the GPU faster than these too)
  throughput     scripts/benchmark_solver.py --device cuda: verified fixed points per minute at batches
                 2^14..2^20 beside the fixed-horizon integration and the FF pass
  task_<task>    scripts/benchmark_solver.py --task <task> --device cuda, while time is left
Writes outputs/gpu_check/summary.md, summary.json and logs/<stage>.log after every stage, and
copies them to $OUT when that is set. Exit status 1 when a stage failed or timed out.

Command line: --flags (argparse), not the key=value overrides of train.py and of the tools that
act on a run (evaluate, export, summarize: rnn_ff/cli.py): a measurement tool with stages
and budgets that composes no run config (its train stages call train.py with Hydra overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
CHECK_DIR = ROOT / "outputs" / "gpu_check"
PYTHON = sys.executable
TASKS = ("wta", "transformation", "denoising")
# Training time (wall less the data phase) of `python train.py task=<task>` on the 2-core CPU: the README's
# "Training time" table (scripts/benchmark_training.py, mean over seeds 0-2).
CPU_SECONDS = {"wta": 51.5, "transformation": 17.6, "denoising": 29.1}
GPU_SPEEDUP_TARGET = 3.0  # the GPU's training time at most a third of the 2-core CPU's
STATUSES = ("converged", "unstable", "oscillating", "diverged", "timeout", "nonfinite")  # rnn_ff.solver.STATUSES
MIN_STAGE_SECONDS = 20.0  # a stage with less time than this left is skipped, not started
STARTUP_SECONDS = 40.0  # of a benchmark stage's timeout, kept for its start, warm-up and report
# --cpu-dry-run: tiny training runs (as tests/conftest.py's TINY_RUN) and benchmark sizes.
DRY_TRAIN = ["data.n_train=96", "data.n_val=32", "data.n_test=32", "model.hidden=16", "trainer.max_epochs=4",
             "trainer.batch_size=32", "trainer.warmup_epochs=1", "trainer.n_figure_examples=2"]
ENVIRONMENT_PROBE = """
import importlib, json, platform, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    properties = torch.cuda.get_device_properties(0)
    info |= {"gpu": properties.name, "gpu_count": torch.cuda.device_count(),
             "gpu_memory_gib": round(properties.total_memory / 2**30, 1)}
for name in ("hydra", "omegaconf", "antlr4", "torchdiffeq", "scipy", "tensorboard", "torchdeq"):
    try:
        info[name] = getattr(importlib.import_module(name), "__version__", "installed")
    except ImportError:
        info[name] = None
print(json.dumps(info))
"""


@dataclass
class Stage:
    """One command with the longest time it may take; `details` reads its results afterwards."""

    name: str
    command: list[str]
    cap: float
    details: Optional[Callable[[Path], dict]] = None  # log path -> facts for the summary
    time_budget_flag: Optional[str] = None  # pass the stage's own timeout, less STARTUP_SECONDS, as this flag
    result: dict = field(default_factory=dict)


class Interrupted(Exception):
    """SIGTERM or SIGINT: stop the running stage, write the summary, exit."""


def _interrupt(signum, frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def stop_group(process: subprocess.Popen) -> None:
    """End the stage's whole process group (pytest's and train.py's children too): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_stage(stage: Stage, deadline: float) -> dict:
    remaining = deadline - time.monotonic()
    timeout = min(stage.cap, remaining)
    if timeout < MIN_STAGE_SECONDS:
        return {"status": "skipped", "seconds": 0.0, "note": f"time budget spent ({max(remaining, 0):.0f} s left)"}
    command = list(stage.command)
    if stage.time_budget_flag:
        command += [stage.time_budget_flag, f"{max(timeout - STARTUP_SECONDS, MIN_STAGE_SECONDS):.0f}"]
    log = CHECK_DIR / "logs" / f"{stage.name}.log"
    start = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            returncode: Optional[int] = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            if process.poll() is None:
                stop_group(process)
    result = {"status": "timeout" if returncode is None else "passed" if returncode == 0 else "failed",
              "seconds": round(time.monotonic() - start, 1), "returncode": returncode, "timeout": round(timeout),
              "log": str(log.relative_to(CHECK_DIR))}
    if result["status"] != "passed":
        result["log_tail"] = log.read_text(errors="replace").splitlines()[-15:]
    if stage.details is not None:
        try:
            result["details"] = stage.details(log)
        except Exception as error:  # noqa: BLE001 - a missing or odd output must not cost the summary
            result["details_error"] = f"{type(error).__name__}: {error}"
    return result


# --- what each stage produced -------------------------------------------------------------------------------

def environment_details(log: Path) -> dict:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def nvidia_smi_details(log: Path) -> dict:
    return {"nvidia_smi": [line for line in log.read_text().splitlines()[1:] if line.strip()]}


def pytest_details(log: Path) -> dict:
    text = log.read_text(errors="replace")
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    counts = {}
    if summary:  # e.g. "11 passed, 3 skipped, 2 deselected in 52.04s"
        pairs = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", summary[-1])
        counts = {kind.rstrip("s"): int(n) for n, kind in pairs}
    problems = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"counts": counts, "problems": problems}


def train_details(run_name: str) -> Callable[[Path], dict]:
    def details(log: Path) -> dict:
        run_dir = CHECK_DIR / "runs" / run_name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        epochs = re.findall(r"training done after (\d+) epochs", (run_dir / "train.log").read_text())
        keep = ("test/rel_error", "train/rel_error", "speed/ode_seconds_per_sample", "speed/ff_seconds_per_sample",
                "speed/speedup", "data/generation_seconds", "data/seconds", "data/reused", "time/steps_seconds",
                "time/validation_seconds", "time/checkpoints_seconds")
        return {"metrics": {key: metrics[key] for key in keep if key in metrics},
                "statuses": {status: metrics[f"data/{status}"] for status in STATUSES if f"data/{status}" in metrics},
                "epochs": int(epochs[-1]) if epochs else None}
    return details


def json_details(path: Path) -> Callable[[Path], dict]:
    return lambda log: json.loads(path.read_text())


# --- the plan ------------------------------------------------------------------------------------------------

def plan(dry_run: bool) -> list[Stage]:
    device = "cpu" if dry_run else "cuda"
    stages = [Stage("environment", [PYTHON, "-c", ENVIRONMENT_PROBE], 60, environment_details)]
    if shutil.which("nvidia-smi"):
        stages.append(Stage("nvidia_smi", ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used",
                                           "--format=csv"], 20, nvidia_smi_details))
    test_files = ["tests/test_cuda.py"] + (["tests/test_device.py"] if (ROOT / "tests/test_device.py").exists() else [])
    # One file that fails to import must not keep the other's tests from running.
    stages.append(Stage("tests", [PYTHON, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                                  "--continue-on-collection-errors", *test_files], 200, pytest_details))
    for prefix, run_device in (("train", device), ("cpu", "cpu")):  # the GPU's runs first: they solve the data
        for task in TASKS:
            run_name = f"{prefix}_{task}"
            command = [PYTHON, "train.py", f"task={task}", f"device={run_device}", "trainer.progress=false",
                       "solver.progress=false", f"paths.log_dir={CHECK_DIR / 'runs'}",
                       f"hydra.run.dir={CHECK_DIR / 'runs' / run_name}", *(DRY_TRAIN if dry_run else [])]
            stages.append(Stage(run_name, command, 120, train_details(run_name)))
    benchmark = [PYTHON, "scripts/benchmark_solver.py", "--device", device]
    throughput_json = CHECK_DIR / "throughput.json"
    sizes = ["--batches", "64,128", "--horizon-max-batch", "64"] if dry_run else []
    horizon = [] if dry_run else ["--horizon-max-batch", str(2**20)]  # the ratio at every batch, same run
    stages.append(Stage("throughput", [*benchmark, *sizes, *horizon, "--row-budget", "90", "--json",
                                       str(throughput_json)],
                        200, json_details(throughput_json), time_budget_flag="--time-budget"))
    for task in TASKS:
        task_json = CHECK_DIR / f"task_{task}.json"
        sizes = ["--batch", "64", "--root-samples", "16"] if dry_run else ["--batch", "2048"]
        stages.append(Stage(f"task_{task}", [*benchmark, "--task", task, *sizes, "--repeats", "1",
                                             "--json", str(task_json)], 90, json_details(task_json)))
    return stages


# --- summary -------------------------------------------------------------------------------------------------

def fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, (int, float)) else str(value)


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows)]


def stage_named(stages: list[Stage], name: str) -> Stage:
    return next(stage for stage in stages if stage.name == name)


def training_seconds(result: dict) -> Optional[float]:
    """A passed train stage's wall seconds less its data phase (solving or reading the dataset)."""
    if result.get("status") != "passed":
        return None
    return result["seconds"] - result.get("details", {}).get("metrics", {}).get("data/seconds", 0.0)


def gpu_against_cpu(stages: list[Stage], dry_run: bool) -> dict[str, dict]:
    """The issue's targets per task: the default run's training time on the GPU at most a third of
    the README's 2-core CPU time, and below this machine's own CPU's."""
    verdicts = {}
    for task in TASKS:
        gpu = training_seconds(stage_named(stages, f"train_{task}").result)
        own_cpu = training_seconds(stage_named(stages, f"cpu_{task}").result)
        verdicts[task] = {"gpu_seconds": gpu, "cpu_seconds": CPU_SECONDS[task], "own_cpu_seconds": own_cpu,
                          "speedup": None if dry_run or not gpu else CPU_SECONDS[task] / gpu,
                          "speedup_own_cpu": None if dry_run or not gpu or own_cpu is None else own_cpu / gpu}
        verdicts[task]["met"] = (None if verdicts[task]["speedup"] is None else
                                 verdicts[task]["speedup"] >= GPU_SPEEDUP_TARGET
                                 and (verdicts[task]["speedup_own_cpu"] or 0) > 1)
    return verdicts


def training_rows(stages: list[Stage], verdicts: dict[str, dict], dry_run: bool) -> list[list]:
    rows = []
    for task in TASKS:
        result, verdict = stage_named(stages, f"train_{task}").result, verdicts[task]
        details = result.get("details", {})
        metrics = details.get("metrics", {})
        met = "n/a (dry run)" if dry_run else {True: "yes", False: "no", None: "-"}[verdict["met"]]
        statuses = ", ".join(f"{k} {v}" for k, v in details.get("statuses", {}).items() if v) or "-"
        checkpoints = (metrics["time/checkpoints_seconds"] / verdict["gpu_seconds"]
                       if verdict["gpu_seconds"] and "time/checkpoints_seconds" in metrics else None)
        rows.append([task, result.get("status", "not run"), verdict["gpu_seconds"], metrics.get("data/seconds"),
                     verdict["cpu_seconds"], verdict["speedup"], verdict["own_cpu_seconds"],
                     verdict["speedup_own_cpu"], met, checkpoints, details.get("epochs"),
                     metrics.get("test/rel_error"), statuses, metrics.get("speed/speedup")])
    return rows


def summary_markdown(stages: list[Stage], report: dict) -> str:
    env = stage_named(stages, "environment").result.get("details", {})
    lines = [f"# GPU check, {report['started']}", ""]
    if report["dry_run"]:
        lines += ["**CPU dry run**: every stage on the CPU at tiny sizes; the times say nothing about a GPU.", ""]
    lines += [f"GPU: {env.get('gpu', 'none')} ({env.get('gpu_memory_gib', '-')} GiB); torch {env.get('torch')} "
              f"(CUDA {env.get('cuda_build')}), Python {env.get('python')}; budget {report['budget']:.0f} s, "
              f"took {report['total_seconds']:.0f} s.", "", "## Stages", ""]
    lines += table(["stage", "status", "seconds", "note"],
                   [[s.name, s.result.get("status", "not run"), s.result.get("seconds"),
                     s.result.get("note") or s.result.get("details_error") or ""] for s in stages])

    tests = stage_named(stages, "tests").result.get("details", {})
    counts = ", ".join(f"{n} {kind}" for kind, n in tests.get("counts", {}).items()) or "no counts"
    lines += ["", "## Tests (pytest -m cuda)", "", counts, *(f"- {p}" for p in tests.get("problems", []))]

    verdicts = report["gpu_against_cpu"]
    lines += ["", "## Default training runs (`python train.py task=<task> device=cuda`)", "",
              "Training s: the run's wall time less its data phase (the GPU runs solve the datasets, "
              "this machine's CPU runs read them).", ""]
    lines += table(["task", "status", "GPU training s", "GPU data s", "2-core CPU s (README)", "x 2-core CPU",
                    "own CPU s", "x own CPU", "target met", "checkpoints share", "epochs", "test/rel_error",
                    "data statuses", "speed/speedup"],
                   training_rows(stages, verdicts, report["dry_run"]))
    if not report["dry_run"]:
        met = sum(verdict["met"] is True for verdict in verdicts.values())
        lines += ["", f"Target (each default run's training at least {GPU_SPEEDUP_TARGET:.0f}x faster on the GPU than "
                      f"on the 2-core CPU, and faster than on this machine's own CPU): met for {met} of {len(TASKS)}."]

    throughput = stage_named(stages, "throughput").result.get("details", {})
    lines += ["", "## Solver throughput (reference WTA, 65 units, float64, rnn_ff defaults)", ""]
    lines += table(["batch", "verified fp/min", "ms per fp", "converged", "float32-integration fp/min",
                    "fixed horizon fp/min", "vs fixed horizon", "FF fp/min", "FF speedup", "peak MB"],
                   [[r["batch"], r["verified_per_minute"], r["ms_per_fp"], r["converged"],
                     r.get("float32_integration_per_minute"), r.get("fixed_horizon_per_minute"),
                     r.get("speedup_vs_fixed_horizon"), r["ff_per_minute"], r["ff_speedup"], r["peak_memory_mb"]]
                    for r in throughput.get("rows", [])])
    lines += [f"- skipped batch {s['batch']}: {s['reason']}" for s in throughput.get("skipped", [])]

    lines += ["", "## Per task: rnn_ff beside other fixed-point methods", ""]
    for task in TASKS:
        details = stage_named(stages, f"task_{task}").result.get("details")
        if not details:
            continue
        statuses = ", ".join(f"{k} {v}" for k, v in details["statuses"].items() if v)
        lines += [f"**{task}** ({details['units']} units, {details['batch']} inputs; rnn_ff: {statuses})", ""]
        lines += table(["method", "ms per fp", "x rnn_ff", "residual max", "residual median", "right"],
                       [[name, r.get("ms_per_fp"), r.get("vs_rnn_ff"), r.get("residual_max"), r.get("residual_median"),
                         f"{r['right']}/{r['of_converged']}" if "right" in r else r.get("skipped")]
                        for name, r in details["rows"].items()])
        lines.append("")
    return "\n".join(lines) + "\n"


def write_summary(stages: list[Stage], settings: dict, start: float) -> str:
    report = {**settings, "total_seconds": round(time.monotonic() - start, 1),
              "gpu_against_cpu": gpu_against_cpu(stages, settings["dry_run"]),
              "stages": {stage.name: stage.result for stage in stages}}
    markdown = summary_markdown(stages, report)
    (CHECK_DIR / "summary.json").write_text(json.dumps(report, indent=2, default=str))
    (CHECK_DIR / "summary.md").write_text(markdown)
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in ("summary.md", "summary.json"):
            shutil.copy(CHECK_DIR / name, Path(out) / name)
        shutil.copytree(CHECK_DIR / "logs", Path(out) / "gpu_check_logs", dirs_exist_ok=True)
    return markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-dry-run", action="store_true", help="every stage on the CPU at tiny sizes")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all stages together")
    args = parser.parse_args()

    start = time.monotonic()
    shutil.rmtree(CHECK_DIR, ignore_errors=True)  # a fresh dataset cache: the GPU runs must solve their data
    (CHECK_DIR / "logs").mkdir(parents=True)
    settings = {"started": datetime.now().isoformat(timespec="seconds"), "dry_run": args.cpu_dry_run,
                "budget": args.budget, "python": PYTHON}
    stages = plan(args.cpu_dry_run)
    signal.signal(signal.SIGTERM, _interrupt)
    deadline = start + args.budget
    try:
        for stage in stages:
            print(f"[{time.monotonic() - start:5.0f} s] {stage.name} ...", flush=True)
            stage.result = run_stage(stage, deadline)
            print(f"[{time.monotonic() - start:5.0f} s] {stage.name}: {stage.result['status']} "
                  f"({stage.result['seconds']} s)", flush=True)
            for line in stage.result.get("log_tail", []):
                print(f"    {line}")
            write_summary(stages, settings, start)
    except (Interrupted, KeyboardInterrupt) as reason:
        print(f"interrupted ({reason}); writing the summary", flush=True)
        if not stage.result:  # the stage that was running
            stage.result = {"status": "interrupted", "seconds": None, "note": str(reason)}
    markdown = write_summary(stages, settings, start)
    print("\n" + markdown)
    return 1 if any(s.result.get("status") in ("failed", "timeout", "interrupted") for s in stages) else 0


if __name__ == "__main__":
    sys.exit(main())
