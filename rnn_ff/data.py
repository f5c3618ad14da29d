"""The dataset: (input, fixed-point rates) pairs, generated once and cached on disk.

The cache file is named by a hash of everything that determines its contents (the task
config, the network's tensors, the solver options that affect the targets, sizes and the
data seed), so a sweep over model or optimiser settings reuses it. Every sample is stored
with its status; only `converged` ones (verified stable fixed points) enter the splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rnn_ff.config import DTYPES, solver_options
from rnn_ff.solver import CONVERGED, SolverOptions, solve
from rnn_ff.storage import StorageError, atomic_save, file_lock, safe_load
from rnn_ff.tasks import Task

log = logging.getLogger(__name__)
DATA_FORMAT = 1
SPLITS = ("train", "val", "test")
# Solver options that change how fast, not what, the targets are.
_NOT_IN_KEY = {"chunk_size", "progress"}


@dataclass
class Split:
    inputs: torch.Tensor  # (n, D) float64
    rates: torch.Tensor  # (n, N) float64, verified stable fixed-point rates
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class FixedPointDataset:
    train: Split
    val: Split
    test: Split
    info: dict  # key, status counts, solver statistics, generation time
    nfe: torch.Tensor  # (n_total,) solve cost of every sample, for the histogram
    path: Path


def network_digest(task: Task) -> str:
    digest = hashlib.sha256()
    for name, value in task.network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.contiguous().numpy().tobytes() if isinstance(value, torch.Tensor) else str(value).encode())
    return digest.hexdigest()


def dataset_key(cfg, task: Task) -> dict:
    solver = {f.name: cfg.solver[f.name] for f in fields(SolverOptions) if f.name not in _NOT_IN_KEY}
    return {
        "format": DATA_FORMAT,
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "network_sha256": network_digest(task),
        "solver": {**solver, "dtype": cfg.solver.dtype},
        "sizes": {split: int(cfg.data[f"n_{split}"]) for split in SPLITS},
        "seed": int(cfg.data.seed),
    }


def cache_path(cfg, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.data.cache_dir) / f"{key['task']['name']}-{digest}.pt"


def load_or_generate(cfg, task: Task, device: torch.device) -> FixedPointDataset:
    """Return the cached dataset for this config, generating it (once, under a lock) if needed."""
    key = dataset_key(cfg, task)
    path = cache_path(cfg, key)
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            log.info("dataset: reusing %s", path)
            stored = safe_load(path, "dataset cache file")
            if stored.get("key") != key:
                raise StorageError(f"dataset cache file {path} holds data for another config than its name "
                                   "says; delete it to regenerate")
        else:
            stored = generate(cfg, task, key, device)
            atomic_save(stored, path)
            log.info("dataset: wrote %s", path)
    return _split(stored, path)


def generate(cfg, task: Task, key: dict, device: torch.device) -> dict:
    sizes = key["sizes"]
    total = sum(sizes.values())
    generator = torch.Generator().manual_seed(int(cfg.data.seed))
    inputs, labels = task.sample(total, generator)
    log.info("dataset: solving %d fixed points of %s (%d units) on %s", total, task.name, task.network.n_units, device)
    start = time.perf_counter()
    result = solve(task.network, inputs, solver_options(cfg.solver), device=device,
                   dtype=DTYPES[cfg.solver.dtype], progress=cfg.solver.progress)
    seconds = time.perf_counter() - start
    counts = result.counts()
    bad = {name: n for name, n in counts.items() if name != "converged" and n}
    if bad:
        log.warning("dataset: %d of %d samples did not converge and are excluded: %s", sum(bad.values()), total, bad)
    nfe = result.nfe.double()
    info = {
        "counts": counts,
        "generation_seconds": seconds,
        "device": str(device),
        "nfe_mean": nfe.mean().item(),
        "nfe_median": nfe.median().item(),
        "nfe_max": nfe.max().item(),
        "max_residual_converged": result.residual[result.converged].max().item() if result.converged.any() else None,
        **result.stats,
    }
    return {"key": key, "inputs": inputs, "labels": labels, "rates": result.rates, "states": result.states,
            "status_codes": result.status_codes, "nfe": result.nfe, "settle_time": result.settle_time, "info": info}


def _split(stored: dict, path: Path) -> FixedPointDataset:
    sizes = stored["key"]["sizes"]
    parts, start = {}, 0
    info = dict(stored["info"])
    for split in SPLITS:
        index = torch.arange(start, start + sizes[split])
        index = index[stored["status_codes"][index] == CONVERGED]
        if len(index) == 0:
            raise StorageError(f"dataset {path}: no converged samples in the {split} split; "
                               f"status counts {info['counts']}")
        parts[split] = Split(stored["inputs"][index], stored["rates"][index],
                             {name: value[index] for name, value in stored["labels"].items()})
        info[f"{split}_size"] = len(index)
        start += sizes[split]
    return FixedPointDataset(**parts, info=info, nfe=stored["nfe"], path=path)
