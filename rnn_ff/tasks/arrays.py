"""Arrays from the files users bring: .npy, .npz and .pt (a tensor, or a state_dict and one of its keys).

A source is `file` or `file:name`, where `name` is a key of the .npz or of the dict a .pt holds
(a state_dict written by `torch.save(model.state_dict(), ...)`: `model.pt:rnn.weight_hh_l0`);
`a/b` reaches into nested dicts (`checkpoint.pt:state_dict/rnn.weight_hh_l0`). Every error
names the config key (`key`, in full: task.weights) and the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from rnn_ff.tasks.base import TaskConfigError

SUFFIXES = (".npy", ".npz", ".pt", ".pth")
_NUMERIC = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


def split_source(source: str) -> tuple[Path, str | None]:
    """(file, name) of `file` or `file:name`; a path that exists as given is never split."""
    path = Path(source).expanduser()
    if path.is_file() or ":" not in source:
        return path, None
    file, name = source.rsplit(":", 1)
    return Path(file).expanduser(), name or None


def read_source(source: str, key: str) -> torch.Tensor | dict:
    """What `source` names: a tensor, or (a file or entry holding several arrays) a dict of them."""
    path, name = split_source(str(source))
    if not path.is_file():
        raise TaskConfigError(f"{key}: file not found: {path.resolve()}")
    if path.suffix not in SUFFIXES:
        raise TaskConfigError(f"{key}: {path} must be a {', '.join(SUFFIXES)} file")
    try:
        if path.suffix == ".npy":
            content = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                content = {entry: torch.from_numpy(archive[entry]) for entry in archive.files}
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, pickled objects, or not an array file at all
        raise TaskConfigError(f"{key}: cannot read {path}: {str(error).splitlines()[0]}") from error
    if name is None:
        return content
    if not isinstance(content, Mapping):
        raise TaskConfigError(f"{key}: {path} holds one array, not named ones: give it as {path}, "
                              f"without ':{name}'")
    return _entry(content, name, path, key)


def _entry(content: Mapping, name: str, path: Path, key: str):
    """content[name], or the nested entry that `a/b/c` names."""
    if name in content:
        return content[name]
    node = content
    for part in name.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise TaskConfigError(f"{key}: {path} has no entry {name!r}; it holds {entry_names(content)}")
        node = node[part]
    return node


def entry_names(content: Mapping, limit: int = 12) -> str:
    """The array entries of a (nested) dict as `a/b` names, the first `limit` of them."""
    names: list[str] = []

    def walk(node: Mapping, prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{name}/")
            elif isinstance(value, (torch.Tensor, np.ndarray)):
                names.append(f"{prefix}{name}")

    walk(content, "")
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return shown or "no arrays"


def as_float64(array, source: str, key: str) -> torch.Tensor:
    """A numeric, finite float64 tensor, or an error that names the key and the file."""
    if isinstance(array, Mapping):
        path = split_source(str(source))[0]
        raise TaskConfigError(f"{key}: {source} holds several arrays ({entry_names(array)}); name one as "
                              f"{path}:<name>")
    if not isinstance(array, torch.Tensor) or not (array.is_floating_point() or array.dtype in _NUMERIC):
        raise TaskConfigError(f"{key}: {source} must hold a numeric array, not {type(array).__name__}")
    array = array.to(torch.float64)
    if not torch.isfinite(array).all():
        raise TaskConfigError(f"{key}: {source} has non-finite entries (nan or inf), "
                              f"{int((~torch.isfinite(array)).sum())} of {array.numel()}")
    return array


def read_array(source: str, key: str) -> torch.Tensor:
    """The one numeric array `source` names, as float64."""
    return as_float64(read_source(source, key), source, key)


def array_digest(arrays: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of named arrays' names, shapes and float64 bytes: an edited input file is a new dataset."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name].to(torch.float64).contiguous()
        digest.update(f"{name}{tuple(array.shape)}".encode())
        digest.update(array.numpy().tobytes())
    return digest.hexdigest()
