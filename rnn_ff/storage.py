"""Files that must never be seen half-written or trusted blindly: atomic saves, safe loads."""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import filelock
import torch

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """A file that cannot be written or read back as what it claims to be."""


def atomic_save(obj: dict, path: str | Path) -> None:
    """torch.save, atomically (see atomic_write)."""
    atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda file: file.write(text.encode()))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it: a reader sees the old
    file or the new one, never a partial one, even if we are killed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp's 0600 would hide shared caches and checkpoints
    except OSError as error:
        raise StorageError(f"cannot write to {path.parent}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # make the rename itself survive a power cut
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise StorageError(f"cannot write {path}: {error.strerror or error}") from error
        raise


def _umask() -> int:
    """The process's umask (read by setting it, and set back at once)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


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
    """One line from torch.load's error: the unpickler's own reason (the text after
    "WeightsUnpickler error:", which torch 2.13 puts on a line of its own), never its advice
    to retry with weights_only=False, which a user of a script cannot act on."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    reason = next((line for line in lines if line and "weights_only" not in line), type(error).__name__)
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip()
            reason = reason or next((rest for rest in lines[i + 1:] if rest), "unsupported content")
            break
    return reason.split(". Please use", 1)[0]


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock, so that parallel jobs generate one shared file once.

    An OS lock (flock), which the kernel releases when its holder dies. Where the file system has
    none (some NFS and Lustre mounts), a soft lock: the lock file's existence, which a job killed
    while holding it leaves behind; waiting on one is logged with the file to delete then."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"cannot write to {path.parent}: {error.strerror or error} "
                           f"(needed for the lock file {path.name})") from error
    lock = filelock.FileLock(path)
    try:
        lock.acquire()
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise StorageError(f"cannot lock {path}: {error.strerror or error}") from error
        log.warning("%s: this file system has no file locks; using a soft lock (if a job was killed while "
                    "holding it and nothing is running, delete %s)", path.parent, path.with_suffix(".softlock"))
        lock = filelock.SoftFileLock(path.with_suffix(".softlock"))
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
