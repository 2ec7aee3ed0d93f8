"""Small file helpers every stage shares: atomic writes, disk faults as user errors, a file's SHA-256, an
error as one line, and the named kill points the fault tests use.

Atomic writes go to a temp file in the target's folder, then os.replace, so a reader (or a re-run after
a crash) sees either the old file or the new one, never half of one. Stdlib only: the device imports it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_with(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], object],
    what: str = "a file",
    durable: bool = True,
    needed: int | None = None,
) -> Path:
    """`write(f)` into a temp file beside `path`, then rename it over `path`: a reader sees the old file or the
    new one; a disk fault is a DiskError naming `path` and `what` (`needed`: the size, when known).

    Streams straight to disk, for a writer that would otherwise build the whole file in memory first.
    `durable=False` skips the fsync, for files that check themselves (a digest) and can be made again."""
    path = Path(path)
    with writing(path, what, needed):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                if durable:
                    os.fsync(f.fileno())  # the rename must not land before the bytes do
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make shared caches and runs private
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "a file", durable: bool = True) -> Path:
    """Write `data` to `path` atomically (`atomic_write_with`)."""
    return atomic_write_with(path, lambda f: f.write(data), what, durable, len(data))


def atomic_write_text(path: str | os.PathLike, text: str, what: str = "a file") -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), what)


def atomic_write_json(path: str | os.PathLike, obj, what: str = "a file") -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n", what)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (weights files are tens of MB)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def one_line(e: BaseException, limit: int = 500) -> str:
    """An exception as one line for a status or an error message: whitespace folded, at most `limit` chars.

    Falls back to the exception's type name when it has no message (e.g. a bare KeyError()).
    """
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------
# Disk faults as user errors


class DiskError(Exception):
    """A write failed because of the disk (full, read-only, no permission, over quota): the message names the
    path, what was being written and, when known, how much space it needed. The CLI prints it and exits 2."""


_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
# What TensorFlow's and onnxruntime's wrappers say when the OS said one of the above.
_DISK_MESSAGES = (
    "no space left on device",
    "read-only file system",
    "permission denied",
    "disk quota exceeded",
    "file too large",
)


def disk_reason(e: BaseException | None) -> str | None:
    """Why `e` (or an exception it was raised from) is a disk fault, e.g. "no space left on device"; else None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            return os.strerror(e.errno).lower()
        text = str(e).lower()
        for message in _DISK_MESSAGES:
            if message in text:
                return message
        e = e.__cause__ or e.__context__
    return None


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free space of the file system `path` is (or would be) on: its nearest existing folder's; None if unknown."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _free_space_note(path: str | os.PathLike) -> str:
    free = free_bytes(path)
    return "" if free is None else f"; {free / 1e6:.1f} MB free there"


def describe_disk_error(e: BaseException, path: str | os.PathLike, what: str, needed: int | None = None) -> DiskError:
    reason = disk_reason(e)
    note = "; a file-size limit (ulimit -f) is in force" if reason == "file too large" else _free_space_note(path)
    size = f" ({needed / 1e6:.1f} MB)" if needed else ""
    return DiskError(
        f"cannot write {what}{size} to {path}: {reason}{note}. Everything finished before is "
        "kept; free some space or choose a writable directory, then run the same command again"
    )


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str, needed: int | None = None, cleanup: tuple = ()) -> Iterator[None]:
    """Run a write; on any failure remove the `cleanup` paths (temp files and folders of this write), and turn a
    disk fault into a DiskError naming `path` and `what`."""
    try:
        yield
    except BaseException as e:
        for temp in cleanup:
            shutil.rmtree(temp, ignore_errors=True) if Path(temp).is_dir() else Path(temp).unlink(missing_ok=True)
        if isinstance(e, DiskError) or disk_reason(e) is None:
            raise
        raise describe_disk_error(e, path, what, needed) from e
