"""Writes that a kill or a full disk cannot tear: every file densekit writes (checkpoints, status,
metrics, plots, reports) goes through ``atomic_write``.

The bytes go to a temporary file beside the target, are flushed to disk, and replace the target
in one ``os.replace``: a reader sees the old file or the new one, never half of either. A write
that fails (ENOSPC, a read-only folder) removes its temporary file and raises one line that
says the previous file is intact; a write killed mid-way leaves an orphan ``.NAME.*.tmp`` that
``remove_orphans`` deletes the next time the folder is opened for writing. Checkpoints are
serialised to memory first so a full disk surfaces as the OS's own error, not torch's
misleading "file write failed".

``check_target`` refuses, before any work, a target that could never be written: a folder, a
path under a file, a read-only folder, or (given the suffixes a format takes) a suffix that
contradicts the format. ``replacing`` gives writers that need a file name of their own (numpy
memmaps, streamed CSV rows) the same temporary-file-then-rename guarantee.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

from .errors import DensekitError

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)             # read once: mkstemp's 0600 would hide run folders from their group
_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied"}


class WriteError(DensekitError):
    """A write the OS refused (full disk, read-only folder...); ``why`` says which in a few words."""

    def __init__(self, message: str, path: Path, why: str):
        super().__init__(message)
        self.path, self.why = path, why


def check_target(path: str | Path, suffixes: tuple[str, ...] = (), flag: str = "--out") -> Path:
    """``path`` if densekit can write a file there, else one line naming what to change.

    ``suffixes``: the suffixes the format takes (the first is named in the error); ``flag``: the
    option the path came from, for the message. A missing parent folder is fine (it is created)."""
    path = Path(path)
    if path.is_dir():
        raise DensekitError(f"{flag} {path} is a folder; give a file name inside it "
                            f"({path / ('out' + (suffixes[0] if suffixes else ''))})")
    if suffixes and path.suffix.lower() not in suffixes:
        raise DensekitError(f"{flag} {path}: a {suffixes[0]} file is written here, but the name ends in "
                            f"{path.suffix or 'no suffix'}; name it {path.with_suffix(suffixes[0]).name} "
                            "(or choose the format that its suffix names)")
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists() or p == p.parent)
    if not folder.is_dir():
        raise DensekitError(f"{flag} {path}: {folder} is a file, not a folder; choose another {flag}")
    if not os.access(folder, os.W_OK):
        why = "the file system is read-only" if _read_only(folder) else "permission denied"
        raise WriteError(f"could not write {path}: {why}; no {path.name} was written. Choose a writable {flag}",
                         path, why)
    return path


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)


def write_error(path: Path, err: OSError, fix: str = "Free space or choose a writable --out") -> WriteError:
    """The one line for an ``OSError`` while writing ``path``: why in a few words, and what is left."""
    why = os_reason(err)
    kept = f"the previous {path.name} is intact" if path.is_file() else f"no {path.name} was written"
    return WriteError(f"could not write {path}: {why}; {kept}. {fix}", path, why)


@contextmanager
def replacing(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write; it replaces ``path`` when the block
    ends without an error and is removed otherwise, so ``path`` is never half written. An
    ``OSError`` inside the block (a full disk) becomes one ``WriteError`` line."""
    path = check_target(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.fchmod(fd, 0o666 & ~_UMASK)
        os.close(fd)
        yield Path(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, data: bytes | str | Callable[[], bytes], durable: bool = True) -> Path:
    """Replace ``path`` with ``data`` (bytes, text, or a function returning bytes) atomically."""
    path = check_target(path)
    if callable(data):
        data = data()
    if isinstance(data, str):
        data = data.encode()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        if durable:   # the rename itself must survive a power loss
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_figure(fig, path: str | Path) -> Path:
    """A matplotlib figure as a PNG, atomically (a report or browser never reads half a PNG)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write(path, buf.getvalue(), durable=False)


def os_reason(err: OSError) -> str:
    """An OS error in a few words: "the disk is full", "the file system is read-only"..."""
    return _WHY.get(err.errno, err.strerror or type(err).__name__)


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete the temporary files of writes that were killed mid-way (``.NAME.XXXX.tmp``), recursively.
    Only call this while holding the folder's lock: a live writer's temporary file looks the same."""
    removed = []
    for p in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
