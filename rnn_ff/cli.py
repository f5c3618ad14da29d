"""Command lines: how the scripts that act on what a run wrote (evaluate, export, summarize)
read theirs, and how every entry point answers a user's mistake.

They take Hydra's override grammar, as train.py does (key=value, typed by a dataclass schema,
so that a misspelt key or a wrong type fails and names the key), but not @hydra.main, which
would make a run folder and a log for every call of a command that writes only where it is
told (stdout, an export folder, a sweep's summary).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from pathlib import Path
from typing import Callable, NoReturn

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rnn_ff.config import PROJECT_ROOT


class CommandLineError(ValueError):
    """A command line that names an unknown key, a wrongly typed value, or misses a required one."""


def parse_overrides(schema: type, argv: list[str]) -> DictConfig:
    """`key=value` arguments over the schema's defaults; every required key (???) must be given."""
    malformed = [arg for arg in argv if "=" not in arg]
    if malformed:
        raise CommandLineError(f"arguments are key=value, got {malformed[0]!r}; keys: {', '.join(_keys(schema))}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
    except OmegaConfBaseException as error:
        raise CommandLineError(f"{str(error).splitlines()[0]}; keys: {', '.join(_keys(schema))}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise CommandLineError(f"{missing[0]}=... is required")
    return cfg


def _keys(schema: type) -> list[str]:
    return list(OmegaConf.structured(schema).keys())


def run(main: Callable[[list[str]], dict]) -> None:
    """Run a script's main on sys.argv: its report as one JSON line on stdout, or, for any error,
    one line `error: ...` on stderr and exit status 1 (no traceback)."""
    try:
        print(json.dumps(main(sys.argv[1:])))
    except SystemExit:
        raise
    except Exception as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def exit_on_user_error(error: Exception, run_dir: Path, logger: logging.Logger) -> NoReturn:
    """A Hydra app's answer to a user's mistake: one line `error: ...` on stderr, printed once, and
    exit status 1. The run folder keeps the line in its log, unless the run wrote nothing but
    Hydra's own files (.hydra/ and the log): then the folder goes, so no empty run is left behind."""
    _end_run(f"error: {error}", run_dir, logger, status=1)


def resolved_help(argv: list[str]) -> list[str]:
    """A Hydra app's argv with `--resolve` added to `--help`, so that the help shows the chosen
    task's own defaults (model.hidden: 256), not `${rnn_ff.task_default:...}`."""
    return [*argv, "--resolve"] if {"--help", "-h"} & set(argv) and "--resolve" not in argv else argv


def shown_path(path: Path) -> str:
    """A path as a user types it where they are: relative below the working folder, else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def command(script: str, *args: str) -> str:
    """`python <script> args...` that runs from the user's working folder, wherever that is."""
    return " ".join(["python", shown_path(PROJECT_ROOT / script), *args])


def exit_on_interrupt(run_dir: Path, logger: logging.Logger, script: str = "train.py") -> NoReturn:
    """Ctrl-C: one line saying what is kept and, where checkpoints/last.pt exists, the command that
    resumes this very run (its overrides, resume=auto and its folder, so that its TensorBoard curve
    goes on where it stopped); exit status 130, as for any program stopped by SIGINT."""
    last = run_dir / "checkpoints" / "last.pt"
    try:
        epoch = torch.load(last, weights_only=True, map_location="cpu")["epoch"] if last.is_file() else None
    except Exception:  # a checkpoint being written when the interrupt came: the previous one was replaced atomically
        epoch = None
    if epoch is None:
        line = ("interrupted (Ctrl-C) before the first checkpoint: nothing to resume; the same command starts over "
                "(a dataset is cached only once complete)")
    else:
        kept = [arg for arg in HydraConfig.get().overrides.task
                if not arg.lstrip("+~").startswith(("resume=", "hydra.run.dir="))]
        resume = command(script, *map(shlex.quote, kept), "resume=auto", shlex.quote(f"hydra.run.dir={run_dir}"))
        line = f"interrupted (Ctrl-C); {last} holds epoch {epoch}; resume with: {resume}"
    _end_run(line, run_dir, logger, status=130)


def _end_run(line: str, run_dir: Path, logger: logging.Logger, status: int) -> NoReturn:
    """Log `line` to the run's log file, print it once on stderr, drop a run folder that holds only
    Hydra's own files, and exit with `status`."""
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (line,), None)
    for handler in logging.getLogger().handlers:  # the run's log file; the console gets the line below
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    if run_dir.is_dir() and all(path.name == ".hydra" or path.suffix == ".log" for path in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
        if not any(run_dir.parent.iterdir()):  # outputs/runs/<task>/ made for this run alone
            run_dir.parent.rmdir()
    print(line, file=sys.stderr)
    sys.exit(status)


class SweepSummary(Callback):
    """Hydra callback (configs/hydra/default.yaml): when a multirun ends, say where its jobs are
    and the command that tabulates and plots them."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = sum(1 for path in sweep_dir.glob("*/metrics.json"))
        logging.getLogger("sweep").info(
            "sweep finished: %s (%d job(s) with metrics.json)\n"
            "  summarize %s\n"
            "  look      tensorboard --logdir %s", sweep_dir, jobs,
            command("scripts/summarize.py", f"sweep={shown_path(sweep_dir)}"), shown_path(sweep_dir))


class WritableOutput(Callback):
    """Hydra callback (configs/hydra/default.yaml): before Hydra makes the run (or sweep) folder,
    make it here, so that a folder that cannot be made is one `error:` line and exit status 1
    (Hydra's own answer is a chained traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _make_folder(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _make_folder(config.hydra.sweep.dir, "hydra.sweep.dir")


def _make_folder(folder: str, key: str) -> None:
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: cannot create the run folder {folder} ({key}): {error.strerror or error}; set paths.log_dir "
              "to a writable folder", file=sys.stderr)
        sys.exit(1)
