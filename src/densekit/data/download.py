"""Fetching files over HTTP(S) with checksum verification and atomic placement."""
from __future__ import annotations

import errno
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import DensekitError
from ..files import write_error


def file_digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _progress(name: str, done: int, size: int | None, end: bool = False):
    """A live byte count on a terminal (the announcement line alone elsewhere, e.g. in CI logs)."""
    if not sys.stderr.isatty():
        return
    of = f"/{_mb(size)} ({100 * done / size:.0f}%)" if size else ""
    sys.stderr.write(f"\r{name}: {_mb(done)}{of}" + ("\n" if end else "\033[K"))
    sys.stderr.flush()

CACHE_FIX = "Free space, or point $DENSEKIT_DATA (or --data-dir) at a writable folder"


def download(urls: list[str], dest: Path, md5: str | None = None, timeout: float = 30.0,
             sha256_prefix: str | None = None) -> Path:
    """Download the first of ``urls`` that answers with the right checksum to ``dest``.

    ``md5``: the whole MD5 digest; ``sha256_prefix``: the start of the SHA-256 digest (what
    torchvision puts in its weight files' names). The file appears at ``dest`` only once complete
    and verified, so an interrupted or corrupt download never leaves a file that a later run would
    trust. Each attempt says on stderr what it downloads and its size (so `densekit data info` on a
    set not on disk says so), with a live byte count on a terminal."""
    errors = []
    for url in urls:
        try:   # a read-only or full cache folder is one line, not a traceback
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as err:
            raise write_error(dest, err, CACHE_FIX) from None
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                size = int(resp.headers.get("Content-Length") or 0) or None
                print(f"densekit: downloading {dest.name} ({_mb(size) if size else 'size unknown'}) from "
                      f"{urllib.parse.urlsplit(url).netloc or url} into {dest.parent}", file=sys.stderr, flush=True)
                done = 0
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    done += len(chunk)
                    _progress(dest.name, done, size)
                _progress(dest.name, done, size, end=True)
            if md5 is not None and (got := file_digest(Path(tmp))) != md5:
                errors.append(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
                continue
            if sha256_prefix is not None and not (got := file_digest(Path(tmp), "sha256")).startswith(sha256_prefix):
                errors.append(f"{url}: checksum mismatch (sha256 {got[:16]}..., expected {sha256_prefix}...)")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as err:
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise write_error(dest, err, CACHE_FIX) from None     # another mirror would fail the same way
            errors.append(f"{url}: {getattr(err, 'reason', err)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DensekitError(f"could not download {dest.name} ({'; '.join(errors)})")

