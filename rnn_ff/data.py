"""The dataset: (input, fixed-point rates) pairs, generated once and cached on disk.

The cache file is named by a hash of everything that determines its contents (the task
config, the network's tensors, the solver options that affect the targets, sizes and the
data seed), so a sweep over model or optimiser settings reuses it. Every sample is stored
with its status; only `converged` ones (verified stable fixed points) enter the splits.

Parallel jobs that need the same dataset generate it once: the first takes an exclusive
lock beside the cache file and writes it atomically (temporary file, fsync, rename); the
others wait on the lock and then read the finished file. A file that exists is always
complete, so it is read without the lock.

A large dataset can also be generated in shards by separate jobs (scripts/generate_data.py):
shard k of n solves a contiguous slice of the one seeded draw of all inputs and writes
`<cache>/<name>.shards/shard-k-of-n.pt`; once all n exist they are merged into the ordinary
cache file, which is then identical (inputs, status codes, rates) to a single-process
generation. The shard count is not part of the dataset key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rnn_ff.config import DTYPES, solver_options
from rnn_ff.solver import CONVERGED, SolverOptions, solve, start_dependent
from rnn_ff.storage import StorageError, atomic_save, file_lock, remove_stale_temporaries, safe_load
from rnn_ff.tasks import Task

log = logging.getLogger(__name__)
# The meaning of a target: bump whenever a change alters which samples are accepted or their
# values (tests/test_targets_fingerprint.py fails then), so that no cache of older code is reused.
TARGETS_VERSION = 3
SPLITS = ("train", "val", "test")
# Where each split sits in the one seeded draw of inputs: validation and test first, so that they
# stay the same inputs when n_train changes ("more data" is compared on the same test set).
LAYOUT = ("val", "test", "train")
# Solver options that change how fast, not what, the targets are (tests/test_solver.py shows
# that the chunk size does not change statuses or answers).
_NOT_IN_KEY = {"chunk_size", "progress"}
RECHECKED_TARGETS = 64  # converged targets of a cache file checked again when it is read


@dataclass
class Split:
    inputs: torch.Tensor  # (n, D) float64
    rates: torch.Tensor  # (n, N) float64, verified stable fixed-point rates
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.inputs)

    def to(self, device: torch.device) -> Split:
        """This split on `device`, labels included: moved once, so that every later step of a run
        (training, metrics, figures, timing) finds its tensors where the model is."""
        return Split(self.inputs.to(device), self.rates.to(device),
                     {name: value.to(device) for name, value in self.labels.items()})


@dataclass
class FixedPointDataset:
    train: Split
    val: Split
    test: Split
    info: dict  # key, status counts, solver statistics, generation time
    nfe: torch.Tensor  # (n_total,) solve cost of every sample, for the histogram
    path: Path

    def to(self, device: torch.device) -> FixedPointDataset:
        """The three splits on `device` (`nfe` only feeds a TensorBoard histogram: it stays on the CPU)."""
        return replace(self, **{split: getattr(self, split).to(device) for split in SPLITS})


def network_digest(task: Task) -> str:
    digest = hashlib.sha256()
    for name, value in task.network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.contiguous().numpy().tobytes() if isinstance(value, torch.Tensor) else str(value).encode())
    return digest.hexdigest()


def dataset_key(cfg, task: Task) -> dict:
    """Everything that determines the dataset, each setting in one canonical form (null and the
    default it stands for give one key; evaluation-only settings are left out)."""
    solver = {f.name: cfg.solver[f.name] for f in fields(SolverOptions) if f.name not in _NOT_IN_KEY}
    options, dtype = solver_options(cfg.solver), DTYPES[cfg.solver.dtype]
    solver |= {"residual_tol": options.residual_tolerance(dtype),
               "integration_dtype": options.integration_dtype or cfg.solver.dtype, "dtype": cfg.solver.dtype}
    return {
        "targets_version": TARGETS_VERSION,
        "task": task.key_config(OmegaConf.to_container(cfg.task, resolve=True)),
        "network_sha256": network_digest(task),
        "solver": solver,
        "sizes": {split: int(cfg.data[f"n_{split}"]) for split in SPLITS},
        "seed": int(cfg.data.seed),
    }


def cache_path(cfg, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.data.cache_dir) / f"{key['task']['name']}-{digest}.pt"


def load_or_generate(cfg, task: Task, device: torch.device) -> FixedPointDataset:
    """Return the cached dataset for this config, generating it (once, under a lock) if needed,
    or merging it from a complete set of shards; with data.multistability_inputs > 0, probe it."""
    dataset = _load_or_generate(cfg, task, device)
    if cfg.data.multistability_inputs > 0:
        dataset.info["multistability"] = probe_multistability(cfg, task, dataset.train, device)
    return dataset


def _load_or_generate(cfg, task: Task, device: torch.device) -> FixedPointDataset:
    key = dataset_key(cfg, task)
    path = cache_path(cfg, key)
    if path.exists():  # complete by construction (atomic rename): no need to queue on the lock
        return _split(_read(path, key, task), path)
    log.info("dataset: %s not cached; taking its lock (waits while another job generates it)", path.name)
    with file_lock(path.with_suffix(".lock")):
        if path.exists():  # another job generated it while we waited
            return _split(_read(path, key, task), path)
        remove_stale_temporaries(path)  # left by a job killed while saving
        stored = _merge_complete_shards(path, key, task)
        if stored is None:
            stored = generate(cfg, task, key, device)
        atomic_save(stored, path)
        log.info("dataset: wrote %s%s", path, f" (merged from {stored['info']['shards']} shards)"
                 if "shards" in stored["info"] else "")
        _remove_shards(path)
    return _split(stored, path)


def _read(path: Path, key: dict, task: Task) -> dict:
    log.info("dataset: reusing %s", path)
    stored = safe_load(path, "dataset cache file")
    if stored.get("key") != key:
        raise StorageError(f"dataset cache file {path} holds data for another config than its name "
                           "says; delete it to regenerate")
    _recheck(stored, key, task, path)
    return stored


def _recheck(stored: dict, key: dict, task: Task, path: Path) -> None:
    """Check a few converged targets again (residual and rates): a file that was altered, or
    written by code that accepted points it should not have, is refused, not trained on."""
    converged = (stored["status_codes"] == CONVERGED).nonzero().squeeze(1)
    chosen = converged[torch.randperm(len(converged), generator=torch.Generator().manual_seed(0))[:RECHECKED_TARGETS]]
    states = stored["states"][chosen]
    network = task.network.to(dtype=states.dtype)
    residual = network.residual(states, network.drive(stored["inputs"][chosen].to(states.dtype))).abs().amax(-1)
    tolerance = key["solver"]["residual_tol"] * (1.0 + states.abs().amax(-1))
    if not ((residual <= tolerance).all() and torch.equal(network.rate(states), stored["rates"][chosen])):
        raise StorageError(f"dataset cache file {path} holds targets that are not fixed points of this network "
                           "(altered, or written by other code); delete it to regenerate")


def generate(cfg, task: Task, key: dict, device: torch.device, part: slice = slice(None)) -> dict:
    """Solve the fixed points of the seeded inputs: all of them, or the slice `part` of the one
    full draw (a shard), so that the shards together hold exactly the single-process dataset."""
    sizes = key["sizes"]
    generator = torch.Generator().manual_seed(int(cfg.data.seed))
    inputs, labels = task.sample(sum(sizes.values()), generator)
    inputs, labels = inputs[part], {name: value[part] for name, value in labels.items()}
    total = len(inputs)
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


def probe_multistability(cfg, task: Task, split: Split, device: torch.device) -> dict[str, int]:
    """Re-solve the first `data.multistability_inputs` training inputs from random starts and count
    those whose response depends on where the network starts (evaluation only: not in the key)."""
    chosen = slice(0, cfg.data.multistability_inputs)
    inputs = split.inputs[chosen].cpu()
    states = solve(task.network, inputs, solver_options(cfg.solver), device=device,
                   dtype=DTYPES[cfg.solver.dtype]).states
    generator = torch.Generator().manual_seed(int(cfg.data.seed) + 1)
    differs = start_dependent(task.network, inputs, states, generator, n_starts=2,
                              options=solver_options(cfg.solver), device=device, dtype=DTYPES[cfg.solver.dtype])
    found = {"checked": len(inputs), "start_dependent": int(differs.sum())}
    if found["start_dependent"]:
        log.warning("dataset: %d of %d probed inputs settle elsewhere from other starts (multistable network): "
                    "the targets are the responses from rest", found["start_dependent"], found["checked"])
    return found


# ---- Sharded generation: separate jobs each solve a slice, then one merge. ----
_SHARD_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.pt")
_PER_SAMPLE = ("inputs", "rates", "states", "status_codes", "nfe", "settle_time")


def shard_dir(path: Path) -> Path:
    """`<cache>/<name>.shards/`, beside the dataset file `<cache>/<name>.pt`."""
    return path.with_name(f"{path.stem}.shards")


def shard_path(path: Path, shard: int, n_shards: int) -> Path:
    return shard_dir(path) / f"shard-{shard}-of-{n_shards}.pt"


def shard_slice(total: int, shard: int, n_shards: int) -> slice:
    """Contiguous, near-equal slices that cover 0..total-1 in order."""
    return slice(shard * total // n_shards, (shard + 1) * total // n_shards)


def generate_shard(cfg, task: Task, device: torch.device, shard: int, n_shards: int) -> Path:
    """Generate shard `shard` of `n_shards` of this config's dataset (unless it, or the whole
    dataset, exists already); merge the set if it is now complete. Returns the path written."""
    key = dataset_key(cfg, task)
    path = cache_path(cfg, key)
    total = sum(key["sizes"].values())
    if not 1 <= n_shards <= total:
        raise StorageError(f"data.n_shards={n_shards} is invalid: must be between 1 and the dataset size {total}")
    if not 0 <= shard < n_shards:
        raise StorageError(f"data.shard={shard} is invalid: must be between 0 and data.n_shards - 1 = {n_shards - 1}")
    target = shard_path(path, shard, n_shards)
    with file_lock(target.with_suffix(".lock")):
        if path.exists():  # checked under the lock: a merge may just have removed the shards
            log.info("dataset: %s exists already; shard %d of %d not needed", path, shard, n_shards)
            return path
        if target.exists():
            log.info("dataset: reusing shard %s", target)
        else:
            remove_stale_temporaries(target)
            part = shard_slice(total, shard, n_shards)
            stored = generate(cfg, task, key, device, part)
            stored["shard"] = {"index": shard, "count": n_shards, "start": part.start, "stop": part.stop}
            atomic_save(stored, target)
            log.info("dataset: wrote shard %s (samples %d..%d)", target, part.start, part.stop - 1)
    if all(shard_path(path, k, n_shards).exists() for k in range(n_shards)):
        return merge_shards(cfg, task)  # the last shard to finish merges
    return target


def merge_shards(cfg, task: Task) -> Path:
    """Merge a complete set of shards into the ordinary cache file, under the dataset lock.
    Raises StorageError naming the missing shards when no set is complete."""
    key = dataset_key(cfg, task)
    path = cache_path(cfg, key)
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            log.info("dataset: %s exists already", path)
            return path
        remove_stale_temporaries(path)
        stored = _merge_complete_shards(path, key, task)
        if stored is None:
            found = sorted(p.name for p in shard_dir(path).glob("shard-*-of-*.pt"))
            raise StorageError(f"dataset {path.name}: no complete set of shards in {shard_dir(path)} "
                               f"(found: {found or 'none'}); generate the missing ones with "
                               "scripts/generate_data.py data.n_shards=N data.shard=K")
        atomic_save(stored, path)
        log.info("dataset: wrote %s (merged from %d shards)", path, stored["info"]["shards"])
        _remove_shards(path)
    return path


def _merge_complete_shards(path: Path, key: dict, task: Task) -> dict | None:
    """The merged dataset if some n has all n shards on disk, else None. Call under the dataset lock."""
    sets = defaultdict(set)
    for file in shard_dir(path).glob("shard-*-of-*.pt"):
        match = _SHARD_NAME.fullmatch(file.name)
        if match:
            sets[int(match[2])].add(int(match[1]))
    complete = [n for n, found in sets.items() if found == set(range(n))]
    if not complete:
        return None
    n_shards = min(complete)
    shards = [safe_load(shard_path(path, k, n_shards), "dataset shard") for k in range(n_shards)]
    total = sum(key["sizes"].values())
    for k, shard in enumerate(shards):
        if shard.get("key") != key or shard.get("shard", {}).get("start") != shard_slice(total, k, n_shards).start:
            raise StorageError(f"dataset shard {shard_path(path, k, n_shards)} holds data for another config or "
                               "slice than its name says; delete it to regenerate")
    merged = {name: torch.cat([shard[name] for shard in shards]) for name in _PER_SAMPLE}
    merged["labels"] = {name: torch.cat([shard["labels"][name] for shard in shards]) for name in shards[0]["labels"]}
    expected, _ = task.sample(total, torch.Generator().manual_seed(key["seed"]))  # cheap next to the solves
    if not torch.equal(merged["inputs"], expected):
        raise StorageError(f"dataset shards in {shard_dir(path)} do not hold this config's inputs (written by "
                           "another version of the code?); delete them to regenerate")
    infos = [shard["info"] for shard in shards]
    nfe = merged["nfe"].double()
    residuals = [i["max_residual_converged"] for i in infos if i["max_residual_converged"] is not None]
    counts = {name: sum(i["counts"][name] for i in infos) for name in infos[0]["counts"]}
    merged["info"] = {
        "counts": counts,
        "generation_seconds": sum(i["generation_seconds"] for i in infos),  # total compute, not wall time
        "device": ",".join(sorted({i["device"] for i in infos})),
        "nfe_mean": nfe.mean().item(),
        "nfe_median": nfe.median().item(),
        "nfe_max": nfe.max().item(),
        "max_residual_converged": max(residuals) if residuals else None,
        "distinct_active_sets": max(i.get("distinct_active_sets", 0) for i in infos),  # a lower bound
        "nfe_total": int(merged["nfe"].sum()),
        "shards": n_shards,
    }
    merged["key"] = key
    log.info("dataset: merging %d shards from %s", n_shards, shard_dir(path))
    return merged


def _remove_shards(path: Path) -> None:
    """After a merge the shards are redundant (the merged file holds all of them)."""
    if shard_dir(path).exists():
        shutil.rmtree(shard_dir(path), ignore_errors=True)


def split_slices(sizes: dict[str, int]) -> dict[str, slice]:
    """Where each split lies in a dataset's one seeded draw of inputs (see LAYOUT)."""
    slices, start = {}, 0
    for split in LAYOUT:
        slices[split] = slice(start, start + sizes[split])
        start += sizes[split]
    return slices


def _split(stored: dict, path: Path) -> FixedPointDataset:
    parts = {}
    info = dict(stored["info"])
    for split, where in split_slices(stored["key"]["sizes"]).items():
        index = torch.arange(where.start, where.stop)
        index = index[stored["status_codes"][index] == CONVERGED]
        if len(index) == 0:
            raise StorageError(f"dataset {path}: no converged samples in the {split} split; "
                               f"status counts {info['counts']}")
        parts[split] = Split(stored["inputs"][index], stored["rates"][index],
                             {name: value[index] for name, value in stored["labels"].items()})
        info[f"{split}_size"] = len(index)
    return FixedPointDataset(**parts, info=info, nfe=stored["nfe"], path=path)
