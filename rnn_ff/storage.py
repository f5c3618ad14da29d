"""Files that must never be seen half-written or trusted blindly: atomic saves, safe loads."""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch


class StorageError(RuntimeError):
    """A file that cannot be written or read back as what it claims to be."""


def atomic_save(obj: dict, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, then rename over it: a reader
    sees the old file or the new one, never a partial one, even if we are killed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise StorageError(f"cannot write to {path.parent}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        raise


def safe_load(path: str | Path, what: str) -> dict:
    """torch.load with weights_only=True (no code runs while unpickling); errors say what
    the file was supposed to be and why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise StorageError(f"{what} {path} cannot be read (truncated, corrupt or not a plain "
                           f"tensor dict; untrusted pickles are refused): {error}") from error
    if not isinstance(obj, dict):
        raise StorageError(f"{what} {path} does not hold a dict")
    return obj


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock, so that parallel jobs generate one shared file once."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as error:
        raise StorageError(f"cannot create lock file {path}: {error.strerror or error}") from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
