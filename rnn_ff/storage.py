"""Files that must never be seen half-written or trusted blindly: atomic saves, safe loads."""

from __future__ import annotations

import fcntl
import glob
import os
import re
import tempfile
from contextlib import contextmanager, suppress
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
        _fsync_directory(path.parent)  # make the rename itself survive a power cut
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        raise


def _fsync_directory(folder: Path) -> None:
    with suppress(OSError):  # some filesystems cannot fsync a directory; the rename is still atomic
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def writable_directory(folder: str | Path) -> None:
    """Create `folder` and check that a file can be written in it, so that a run fails at the
    start with one clear line rather than after hours of work, deep inside a library."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise StorageError(f"cannot write to {folder}: {error.strerror or error}") from error


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete temporary files that a killed atomic_save of `path` left behind. Call only while
    holding the lock that serialises writers of `path`."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def safe_load(path: str | Path, what: str) -> dict:
    """torch.load with weights_only=True (no code runs while unpickling); errors say what
    the file was supposed to be and why it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"{what} not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise StorageError(f"{what} {path} cannot be read (truncated, corrupt, or it holds objects other than "
                           f"tensors and plain data, which are refused unrun): {_reason(error)}") from error
    if not isinstance(obj, dict):
        raise StorageError(f"{what} {path} does not hold a dict")
    return obj


def _reason(error: Exception) -> str:
    """One line from torch.load's error: the unpickler's own reason, not its advice to trust the file."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    reason = next((line for line in lines if line.startswith("WeightsUnpickler error:")),
                  next((line for line in lines if line), type(error).__name__))
    return reason.split(". Please use", 1)[0]


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock, so that parallel jobs generate one shared file once."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as error:
        raise StorageError(f"cannot write to {path.parent}: {error.strerror or error} "
                           f"(needed for the lock file {path.name})") from error
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
