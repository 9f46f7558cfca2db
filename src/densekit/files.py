"""Writes that a kill or a full disk cannot tear: every file densekit writes (checkpoints, status,
metrics, plots, reports) goes through ``atomic_write``.

The bytes go to a temporary file beside the target, are flushed to disk, and replace the target
in one ``os.replace``: a reader sees the old file or the new one, never half of either. A write
that fails (ENOSPC, a read-only folder) removes its temporary file and raises one line that
says the previous file is intact; a write killed mid-way leaves an orphan ``.NAME.*.tmp`` that
``remove_orphans`` deletes the next time the folder is opened for writing. Checkpoints are
serialised to memory first so a full disk surfaces as the OS's own error, not torch's
misleading "file write failed".
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

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


def atomic_write(path: str | Path, data: bytes | str | Callable[[], bytes], durable: bool = True) -> Path:
    """Replace ``path`` with ``data`` (bytes, text, or a function returning bytes) atomically."""
    path = Path(path)
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
        why = os_reason(err)
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise WriteError(f"could not write {path}: {why}; {kept}. Free space or choose a writable --out", path, why) from None
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
