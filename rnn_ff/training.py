"""The training loop, in one function that reads top to bottom (as in nanoGPT)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator

import torch
from omegaconf import OmegaConf, open_dict
from torch.utils._pytree import tree_flatten, tree_unflatten
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm.auto import tqdm

from rnn_ff.activations import ACTIVATIONS
from rnn_ff.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnn_ff.cli import command, shown_path
from rnn_ff.config import DTYPES, ConfigError, resolve_device, solver_options, validate
from rnn_ff.data import FixedPointDataset, Split, load_or_generate
from rnn_ff.evaluation import evaluate, measure_speed, numbers, predict, regression_metrics
from rnn_ff.figures import MAX_CURVE_INPUTS, plot_examples, plot_response_curves, render, response_curve_inputs
from rnn_ff.model import FeedForwardApproximator
from rnn_ff.network import NetworkError
from rnn_ff.solver import SolverError, solve
from rnn_ff.storage import StorageError, atomic_write_text, writable_directory
from rnn_ff.tasks import Task, TaskConfigError, build_task
from rnn_ff.tasks.base import population_errors
from rnn_ff.training_steps import CaptureError, EpochSteps, epoch_order

log = logging.getLogger(__name__)
# Config keys that do not change what a run computes: ignored when matching runs to resume.
_INCIDENTAL = ("paths", "resume", "trainer.progress", "trainer.checkpoint_every", "trainer.cuda_graphs",
               "solver.progress", "device")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what was kept."""


# Errors that describe a user's mistake or a damaged file: reported as one line.
USER_ERRORS = (ConfigError, TaskConfigError, NetworkError, StorageError, TrainingError, SolverError, CaptureError)


def train(cfg, task: Task | None = None) -> dict[str, float]:
    """Generate (or reuse) the dataset, fit the MLP, evaluate the best model; returns metrics.
    Called from Python it logs as train.py does (train.log in the run folder, the summary on the
    console where logging is not configured) and refuses a folder that holds a finished run.

    `task`: one built in Python (e.g. CustomTask.from_network around a RecurrentNetwork), used
    instead of cfg.task, whose place its config takes (the dataset key holds its network's hash)."""
    run_dir = Path(cfg.paths.output_dir)
    writable_directory(run_dir)  # before the dataset, which may take hours; so is the checkpoint to resume
    if (run_dir / "metrics.json").is_file() and not cfg.get("resume"):
        raise ConfigError(f"paths.output_dir={run_dir} holds a finished run (metrics.json): give another folder, "
                          "or resume=auto to continue this one")
    with run_log(run_dir / "train.log"):
        return _train(cfg, task)


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """While a run lasts: its INFO lines in `path` and, where logging is not configured at all, on the
    console, as Hydra's job logging gives train.py (nothing added where a handler writes there already)."""
    root, package = logging.getLogger(), logging.getLogger("rnn_ff")
    added: list[logging.Handler] = []
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in root.handlers):
        path.parent.mkdir(parents=True, exist_ok=True)
        added.append(logging.FileHandler(path))
    if not root.handlers:
        added.append(logging.StreamHandler())
    level = package.level
    for handler in added:
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        package.addHandler(handler)
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.setLevel(level)
        for handler in added:
            package.removeHandler(handler)
            handler.close()


def _train(cfg, task: Task | None) -> dict[str, float]:
    """train(), inside the run's logging.

    Device rule: the splits and the model go to the run's device once, here; every later step
    computes there, and only Python numbers come back (at epoch boundaries and at the end)."""
    started = time.perf_counter()
    if task is not None:
        with open_dict(cfg):
            cfg.task = OmegaConf.structured(task.cfg)
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    checkpoint_dir = run_dir / "checkpoints"
    device = resolve_device(cfg.device)
    task = task or build_task(cfg.task)
    torch.manual_seed(cfg.seed)
    model = FeedForwardApproximator(task.network.n_inputs, task.network.n_units,
                                    **{**cfg.model, "output_activation": output_activation(cfg.model, task)}).to(device)
    resume_path = find_resume_checkpoint(cfg, run_dir, task.name)
    checkpoint = None if resume_path is None else load_checkpoint(resume_path, task=task.name,
                                                                   model_hparams=model.hparams, network=task.network)
    data = load_or_generate(cfg, task, device).to(device)

    train_x, train_y = data.train.inputs.float(), data.train.rates.float()
    model.fit_normalisation(train_x, train_y)
    # The step is overhead-bound (a small MLP): the fused AdamW kernel replaces a dozen small ones per
    # step, on a GPU and on a CPU (2.10 against 2.28 ms per default WTA step on this 2-core CPU).
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay,
                                  fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(lr_factor, **_schedule(cfg.trainer)))
    shuffle = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "best_val_rel_error": math.inf, "best_epoch": -1, "stale_epochs": 0, "finished": False,
             "best_model": copy.deepcopy(model.state_dict())}
    config = OmegaConf.to_container(cfg, resolve=True)

    copies, best_copies = StateCopies(), StateCopies()

    def snapshot() -> dict:
        """What last.pt holds, as of now (an epoch's end), copied: kept each epoch, written at the
        checkpoint cadence, at the end, and when training stops early (Ctrl-C, a non-finite loss)."""
        return {**copies({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scheduler": scheduler.state_dict()}),
                "rng": {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}, **state}

    def save(path: Path, contents: dict) -> None:
        save_checkpoint(path, task=task.name, model_hparams=model.hparams, config=config,
                        network=task.network.state_dict(), task_files=task.file_contents(), dataset=str(data.path),
                        **contents)

    if checkpoint is not None:
        if Path(checkpoint["dataset"]).name != data.path.name:  # the name holds the dataset's key hash
            raise CheckpointError(f"resume={resume_path}: the checkpoint was trained on the dataset "
                                  f"{Path(checkpoint['dataset']).name}, this config builds {data.path.name} "
                                  "(a data.* or solver.* value differs)")
        restore(checkpoint, model, optimizer, scheduler)
        torch.set_rng_state(checkpoint["rng"]["torch"])
        shuffle.set_state(checkpoint["rng"]["shuffle"])
        state = {name: checkpoint[name] for name in state}
        apply_changed_trainer_settings(checkpoint["config"]["trainer"], cfg.trainer, optimizer, scheduler)
        # A run that ended at its epoch limit trains on when the limit is raised.
        state["finished"] = (state["stale_epochs"] >= cfg.trainer.patience
                             or state["epoch"] >= cfg.trainer.max_epochs)
        log.info("resumed from %s after epoch %d", resume_path, state["epoch"])

    last = checkpoint_dir / "last.pt"
    cadence = CheckpointCadence(cfg.trainer.checkpoint_every)
    # The state at the last finished epoch, and the epoch that last.pt holds (None: not written by this run).
    latest, saved_epoch = None, state["epoch"] if resume_path == last else None

    def keep_latest() -> None:
        """last.pt gets the last finished epoch's state, unless it holds it already."""
        nonlocal saved_epoch
        if latest is not None and latest["epoch"] != saved_epoch:
            save(last, latest)
            saved_epoch = latest["epoch"]

    def stop(epoch: int, what: str) -> None:
        keep_latest()  # the last finite state, so that a run with a lower lr can resume from it
        kept = (f"The last good checkpoint is {last} (epoch {saved_epoch})" if saved_epoch is not None
                else "No checkpoint was written")
        raise TrainingError(f"non-finite {what} at epoch {epoch}; stopped. {kept}; "
                            "try a lower trainer.lr or trainer.grad_clip")

    writable_directory(run_dir / "tb")  # a clear StorageError rather than a bare OSError from SummaryWriter
    writer = SummaryWriter(str(run_dir / "tb"), purge_step=state["epoch"] if resume_path else None)
    if resume_path is None:
        log_dataset(writer, data)
    steps = EpochSteps(model, optimizer, train_x, train_y, cfg.trainer.batch_size, cfg.trainer.grad_clip,
                       cfg.trainer.loss, cuda_graphs=device.type == "cuda" and cfg.trainer.cuda_graphs)
    epochs = range(state["epoch"], 0 if state["finished"] else cfg.trainer.max_epochs)
    # disable=None: tqdm draws on a terminal only (a redirected stderr gets no bars)
    bar = tqdm(epochs, desc="training", unit="epoch", disable=None if cfg.trainer.progress else True, leave=False)
    timer = PhaseTimer()
    try:
        for epoch in bar:
            with timer("steps"):
                model.train()
                train_loss = steps.run(epoch_order(len(train_x), shuffle, device))
            scheduler.step()
            with timer("validation"):  # on a GPU, where the steps' device time is waited for
                model.eval()
                # the epoch's one wait for the device: the training loss comes back with the validation metrics
                val = numbers({"train_loss": train_loss, **validation_metrics(model, task, data.val, cfg.trainer.loss)})
            if not math.isfinite(val["train_loss"]):  # the weights are broken: stop before anything saves them
                stop(epoch, "training loss")
            if not math.isfinite(val["loss"]):  # the last step broke the weights: do not save them
                stop(epoch, "validation loss")
            with timer("logging"):
                writer.add_scalar("lr", current_lr(scheduler), epoch)
                writer.add_scalar("train/loss", val["train_loss"], epoch)
                writer.add_scalar("val/loss", val["loss"], epoch)
                for name, value in val.items():
                    if name.startswith("rel_error"):
                        writer.add_scalar(f"val/{name}", value, epoch)
                bar.set_postfix(loss=f"{val['train_loss']:.2e}", val_rel_error=f"{val['rel_error']:.4f}")

            with timer("checkpoints"):
                state["epoch"] = epoch + 1
                if val["rel_error"] < state["best_val_rel_error"]:
                    state.update(best_val_rel_error=val["rel_error"], best_epoch=epoch, stale_epochs=0,
                                 best_model=best_copies(model.state_dict()))
                else:
                    state["stale_epochs"] += 1
                state["finished"] = (state["stale_epochs"] >= cfg.trainer.patience
                                     or state["epoch"] == cfg.trainer.max_epochs)
                latest = snapshot()
                if cadence.due(state["epoch"]) or state["finished"]:
                    with cadence.writing():
                        save(last, latest)
                    saved_epoch = state["epoch"]
            if state["finished"]:
                break
    except KeyboardInterrupt:  # keep the last finished epoch, so that the resume command goes on from it
        keep_latest()
        raise
    bar.close()
    early = state["stale_epochs"] >= cfg.trainer.patience
    log.info("training done after %d epochs (%s); best val/rel_error %.4f at epoch %d", state["epoch"],
             f"early stop: val/rel_error did not improve for {cfg.trainer.patience} epochs (trainer.patience)"
             if early else "trainer.max_epochs", state["best_val_rel_error"], state["best_epoch"] + 1)

    model.load_state_dict(state["best_model"])
    save(checkpoint_dir / "best.pt", {**snapshot(), "model": state["best_model"]})
    metrics = final_metrics(cfg, model, task, data, state) | timer.seconds(prefix="time/")
    write_json(run_dir / "metrics.json", metrics)
    log_results(writer, cfg, metrics, model, task, data, state["epoch"])
    writer.close()
    log.info("%s", run_summary(task, metrics, run_dir, data, time.perf_counter() - started))
    return metrics


class CheckpointCadence:
    """When the loop writes checkpoints/last.pt: every `every` epochs or, with every = 0, whenever
    the time since the last write is at least 49 times what that write took, so that writing costs
    at most 2% of the run on any machine (every epoch or two where epochs are slow, every second or
    so on a GPU, whose epochs take milliseconds), and a kill loses at most that much training."""

    COST = 0.02

    def __init__(self, every: int) -> None:
        self.every = every
        self.write_seconds = 0.0
        self.written_at = -math.inf

    def due(self, epoch: int) -> bool:
        if self.every:
            return epoch % self.every == 0
        return time.perf_counter() - self.written_at >= self.write_seconds * (1 - self.COST) / self.COST

    @contextmanager
    def writing(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.written_at = time.perf_counter()
        self.write_seconds = self.written_at - start


class StateCopies:
    """Copies of a nested training state (dicts, lists, tensors, numbers), refreshed in place at
    each call: after the first, one foreach copy per device and dtype and no allocation (a deepcopy
    each epoch cost about 1 ms, as much as a GPU epoch's replayed steps). Each call returns the same
    tensors with new values: the state of the latest call."""

    def __init__(self) -> None:
        self.buffers: list[torch.Tensor] = []

    def __call__(self, state: dict) -> dict:
        leaves, spec = tree_flatten(state)
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        if [(t.shape, t.dtype, t.device) for t in tensors] != [(b.shape, b.dtype, b.device) for b in self.buffers]:
            # the first call, or a changed state (AdamW's lr made a tensor for a CUDA graph)
            self.buffers = [tensor.detach().clone() for tensor in tensors]
        else:
            torch._foreach_copy_(self.buffers, tensors)
        copied = iter(self.buffers)
        return tree_unflatten([next(copied) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves], spec)


class PhaseTimer:
    """Wall seconds per phase of the training loop (steps, validation, logging, checkpoints), in
    metrics.json as time/<phase>_seconds: where a run's time goes (scripts/benchmark_training.py)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[phase] = self.totals.get(phase, 0.0) + time.perf_counter() - start

    def seconds(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{phase}_seconds": value for phase, value in self.totals.items()}


def output_activation(model_cfg, task: Task) -> str:
    """model.output_activation, with auto resolved: relu where the rates are never negative."""
    if model_cfg.output_activation != "auto":
        return model_cfg.output_activation
    return "relu" if ACTIVATIONS[task.network.activation].nonnegative else "none"


def validation_metrics(model: FeedForwardApproximator, task: Task, split: Split,
                       loss_kind: str = "rectified") -> dict[str, torch.Tensor]:
    """The training loss (in float32, as in training), rel_error and each population's rel_error
    (in float64) of a split, as 0-dim tensors on the split's device, where the model is."""
    predicted = predict(model, split.inputs)
    with torch.no_grad():
        loss = model.loss(split.inputs.float(), split.rates.float(), loss_kind)
    return {"loss": loss, "rel_error": regression_metrics(predicted, split.rates)["rel_error"],
            **population_errors(task.populations(), predicted, split.rates)}


def restore(checkpoint: dict, model: FeedForwardApproximator, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Resume a checkpoint's weights and optimiser state into a model already on the run's device:
    load_state_dict copies the (CPU) weights into the model's tensors and moves the optimiser's
    state beside its parameters, so a checkpoint from any device resumes on any other."""
    model.load_state_dict(checkpoint["model"])
    # The kernel choice belongs to this run, not to the checkpoint (one written before AdamW was fused
    # on a CPU, or by a run whose CUDA graphs held the lr as a tensor: training_steps.prepare_for_capture).
    kernels = [{key: group[key] for key in ("fused", "foreach", "capturable") if key in group}
               for group in optimizer.param_groups]
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group, kept in zip(optimizer.param_groups, kernels):
        group.update(kept, lr=float(group["lr"]))
    scheduler.load_state_dict(checkpoint["scheduler"])


def apply_changed_trainer_settings(saved: dict, trainer, optimizer: torch.optim.Optimizer,
                                   scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """A resumed run follows this config's trainer settings, not the checkpoint's: each change is
    logged; lr and weight decay, which the optimiser and scheduler states carry, are set here (the
    schedule's shape, patience, clipping and batch size are read from the config every epoch)."""
    for key, value in saved.items():
        now = trainer[key]
        if key == "progress" or now == value:
            continue
        log.info("resume: trainer.%s %s -> %s (applied)", key, value, now)
        if key == "lr":
            scheduler.base_lrs = [now] * len(optimizer.param_groups)
            for group in optimizer.param_groups:
                group["initial_lr"] = now
                group["lr"] = now * scheduler.lr_lambdas[0](scheduler.last_epoch)
        if key == "weight_decay":
            for group in optimizer.param_groups:
                group["weight_decay"] = now


def current_lr(scheduler: torch.optim.lr_scheduler.LambdaLR) -> float:
    """The first group's learning rate as a Python number, computed rather than read: where the
    optimiser holds it as a tensor on a GPU (a CUDA graph reads it there), reading would wait."""
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](scheduler.last_epoch)


def lr_factor(epoch: int, warmup_epochs: int, max_epochs: int, min_lr_ratio: float) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio at max_epochs."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    progress = (epoch - warmup_epochs) / max(1, max_epochs - warmup_epochs)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _schedule(trainer) -> dict:
    return {"warmup_epochs": trainer.warmup_epochs, "max_epochs": trainer.max_epochs,
            "min_lr_ratio": trainer.min_lr_ratio}


def find_resume_checkpoint(cfg, run_dir: Path, task_name: str) -> Path | None:
    """resume=<path>: that file. resume=auto: this run dir's last.pt, else the newest
    last.pt of an earlier run of the same task whose config matches this one."""
    if cfg.resume is None:
        return None
    if cfg.resume != "auto":
        path = Path(cfg.resume)
        if not path.is_file():
            raise CheckpointError(f"resume={cfg.resume!r}: no such checkpoint file")
        return path
    own = run_dir / "checkpoints" / "last.pt"
    if own.is_file():
        return own
    wanted = _essential(OmegaConf.to_container(cfg, resolve=True))
    runs = Path(cfg.paths.log_dir).glob("**/checkpoints/last.pt")
    for path in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            if _essential(load_checkpoint(path, task=task_name)["config"]) == wanted:
                return path
        except CheckpointError:
            continue
        except StorageError as error:  # a damaged file of another run must not block this one
            log.warning("resume=auto: skipping %s", error)
    log.warning("resume=auto: no earlier run with this config under %s; starting fresh", cfg.paths.log_dir)
    return None


def _essential(config: dict) -> dict:
    config = copy.deepcopy(config)
    for dotted in _INCIDENTAL:
        *parents, leaf = dotted.split(".")
        node = config
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return config


def final_metrics(cfg, model, task, data: FixedPointDataset, state: dict) -> dict[str, float]:
    metrics = evaluate(model, task, data.test, "test")
    # Far below test/rel_error: the model memorises, more data helps; about equal: it underfits.
    metrics["train/rel_error"] = regression_metrics(predict(model, data.train.inputs), data.train.rates)["rel_error"]
    metrics = numbers(metrics)
    # Epochs are counted from 1 wherever a person reads them (logs, summary, metrics.json).
    metrics |= {"val/rel_error": state["best_val_rel_error"], "train/epochs": state["epoch"],
                "train/best_epoch": state["best_epoch"] + 1, "model/flops_per_input": model.flops()}
    metrics |= {f"data/{status}": count for status, count in data.info["counts"].items()}
    metrics |= {f"data/{split}_size": data.info[f"{split}_size"] for split in ("train", "val", "test")}
    # generation_seconds: what solving the dataset took when it was made (by this run or an earlier
    # one); seconds: what getting it took this run (reused: reading and rechecking the cache).
    metrics |= {"data/generation_seconds": data.info["generation_seconds"], "data/seconds": data.seconds,
                "data/reused": int(data.reused), "data/nfe_mean": data.info["nfe_mean"]}
    # Which certificate accepted the targets (the words are in train.log and the summary): 1 and the
    # proof's margin where one proof covers the whole network, 0 where each sample was certified alone.
    proof = data.info["global_proof"]
    metrics |= {"data/globally_stable": int(proof["proved"]), "data/global_margin": proof["margin"]}
    if "multistability" in data.info:
        metrics |= {f"data/multistability_{name}": count for name, count in data.info["multistability"].items()}
    metrics |= measure_speed(model, task, data.test.inputs, solver_options(cfg.solver), DTYPES[cfg.solver.dtype])
    return metrics


def log_dataset(writer: SummaryWriter, data: FixedPointDataset) -> None:
    for status, count in data.info["counts"].items():
        writer.add_scalar(f"data/{status}", count, 0)
    writer.add_scalar("data/generation_seconds", data.info["generation_seconds"], 0)
    writer.add_histogram("data/nfe_per_sample", data.nfe.double(), 0)


def run_summary(task, metrics: dict, run_dir: Path, data: FixedPointDataset, seconds: float) -> str:
    """What a user wants to see when a run ends: where it is, how good it is, and what to do next."""
    quality = " · ".join(f"{name} {metrics[f'test/{name}']:.4g}" for name in ("rel_error", *task.headline_metrics, "r2"))
    counts = {name[len("data/"):]: int(value) for name, value in metrics.items()
              if name[len("data/"):] in data.info["counts"]}
    others = ", ".join(f"{name} {count:,}" for name, count in counts.items() if name != "converged" and count)
    by = (f"another job, whose lock this run waited {data.waited:.1f} s for" if data.waited else "an earlier run")
    origin = (f"reused from the cache ({data.info['generation_seconds']:.1f} s to generate, by {by}; "
              f"{data.seconds - data.waited:.2g} s to read)" if data.reused
              else f"generated by this run in {data.seconds:.1f} s")
    best = run_dir / "checkpoints" / "best.pt"
    return "\n".join([
        f"run finished in {seconds:.0f} s: {shown_path(run_dir)}",
        f"  test     {quality}",
        f"  data     {counts['converged']:,} of {sum(counts.values()):,} inputs converged"
        f"{f' ({others})' if others else ''}; {origin}",
        f"  targets  certified {data.info['certificate']}",
        f"  speed    the FF is {metrics['speed/speedup']:,.0f}x faster than the recurrent solve "
        f"({1e6 * metrics['speed/ff_seconds_per_sample']:.3g} µs vs {1e3 * metrics['speed/ode_seconds_per_sample']:.3g}"
        " ms per input)",
        f"  best     {shown_path(best)} (epoch {metrics['train/best_epoch']} of {metrics['train/epochs']}, "
        f"val/rel_error {metrics['val/rel_error']:.4g}); all metrics: {shown_path(run_dir / 'metrics.json')}",
        f"  look     tensorboard --logdir {shown_path(run_dir / 'tb')}",
        f"  evaluate {command('scripts/evaluate.py', f'checkpoint={shown_path(best)}')}",
    ])


def log_results(writer: SummaryWriter, cfg, metrics: dict, model, task, data: FixedPointDataset,
                step: int) -> None:
    """Final metrics as scalars, example figures, and hparams in this same run. The best validation
    error is its own tag, val/best_rel_error: written at the last step of the per-epoch val/rel_error
    curve it would read as a final dip."""
    metrics = {("val/best_rel_error" if name == "val/rel_error" else name): value for name, value in metrics.items()}
    for name, value in metrics.items():
        writer.add_scalar(name, value, step)
    n = cfg.trainer.n_figure_examples
    if n > 0:
        predicted = predict(model, data.test.inputs[:n])
        figure = plot_examples(data.test.inputs[:n], data.test.rates[:n], predicted, n, task.populations())
        writer.add_image("test/examples", render(figure, Path(cfg.paths.output_dir) / "examples.png"), step,
                         dataformats="HWC")
        if task.network.n_inputs <= MAX_CURVE_INPUTS:
            figure = response_curves(cfg, model, task, data.test.inputs)
            writer.add_image("test/response_curves", render(figure, Path(cfg.paths.output_dir) / "response_curves.png"),
                             step, dataformats="HWC")
    hparam_values = {k: v for k, v in _flatten(OmegaConf.to_container(cfg, resolve=True)).items()
                     if k.split(".")[0] in ("task", "model", "trainer", "data", "solver") or k == "seed"}
    hparam_values = {k: v for k, v in hparam_values.items() if isinstance(v, (int, float, str, bool))}
    finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    for summary in hparams(hparam_values, finite):
        writer.file_writer.add_summary(summary)


def response_curves(cfg, model, task, test_inputs: torch.Tensor):
    """Each unit's rate against each input over the test inputs' range, recurrent (solved here, with
    the run's solver; inputs that do not settle are marked) against the FF."""
    curves = response_curve_inputs(test_inputs.cpu().double())
    flat = curves.reshape(-1, curves.shape[-1])
    device = next(model.parameters()).device
    result = solve(task.network, flat, solver_options(cfg.solver), device=device, dtype=DTYPES[cfg.solver.dtype])
    predicted = predict(model, flat.to(device))
    return plot_response_curves(curves, result.rates, predicted, result.status, task.populations())


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
