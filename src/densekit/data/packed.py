"""The packed format that ``densekit data import`` writes and ``packed:DIR`` reads.

Layout: ``DIR/meta.json`` (format, version, source, classes, per-split count and C x H x W) and,
per split, ``DIR/<split>-images.npy`` (uint8 N x C x H x W) and ``DIR/<split>-labels.npy``
(int64 N), in numpy's documented .npy format (NEP 1).

Why this format: images are stored already decoded and already at the model's size, so an epoch
costs a memory copy instead of a JPEG decode and a resize per image; .npy is a 128-byte header
then raw C-order bytes, so the file is memory-mapped and any item is one slice at a known offset,
with no index and no library beyond numpy; the OS page cache keeps hot pages in RAM and evicts
them under pressure, so a set larger than memory still works. uint8 keeps it 4x smaller than
float32 (normalisation happens on the training device). meta.json is written last, so a folder
without it is an interrupted import and is never read.
"""
from __future__ import annotations

import errno
import json
import os
import tokenize
from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError
from ..files import WriteError, atomic_write, check_target, write_error
from .dataset import ImageDataset, MissingSplit, check_labels
from ..limits import MAX_CLASSES

FORMAT, VERSION = "densekit-packed", 1


def _resident_limit() -> int:
    """Sets up to a quarter of physical memory are mapped whole (gathered by tensor indexing)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


class PackedDataset(ImageDataset):
    def __init__(self, root: Path, split: str, meta: dict):
        self.root, self.split, self.name = root, split, f"packed:{root}"
        self.classes = list(meta["classes"])
        images_path, labels_path = root / f"{split}-images.npy", root / f"{split}-labels.npy"
        try:
            # Mapped first: a header that claims more than the file holds fails here, not by allocating.
            labels = np.array(np.load(labels_path, mmap_mode="r"))
            images = np.load(images_path, mmap_mode="c")  # copy-on-write: writable view, file untouched
        # numpy parses a .npy header with Python's own parser: a damaged one raises SyntaxError or TokenError
        except (OSError, ValueError, TypeError, OverflowError, EOFError, SyntaxError, tokenize.TokenError) as err:
            raise DensekitError(f"{root}: cannot read the {split} arrays ({err}); run `densekit data import` again") from None
        if (images.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1 or labels.dtype.kind not in "iu"
                or len(images) != len(labels)):
            raise DensekitError(f"{images_path}: {images.dtype} {images.shape} with {len(labels)} labels, expected "
                                "uint8 N x C x H x W and N labels; run `densekit data import` again")
        self.labels = torch.from_numpy(labels.astype(np.int64))
        check_labels(self.labels, len(self.classes), str(labels_path))
        self._shape = tuple(images.shape[1:])
        self._path = images_path
        self._array = None
        if images.nbytes <= _resident_limit():
            self.images = torch.from_numpy(images)  # backed by the mapping; pages load as batches touch them

    def load_item(self, i: int) -> torch.Tensor:
        if self._array is None:  # opened per process: a DataLoader worker maps the file itself
            self._array = np.load(self._path, mmap_mode="r")
        return torch.from_numpy(np.array(self._array[i]))

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    @property
    def shape(self):
        return self._shape


def read_meta(root: Path) -> dict:
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise DensekitError(f"{root / 'meta.json'}: unreadable ({err}); run `densekit data import` again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        got = f"format {meta.get('format')!r} version {meta.get('version')!r}" if isinstance(meta, dict) else "no mapping"
        raise DensekitError(f"{root / 'meta.json'}: not a densekit packed set ({got}); run `densekit data import` again")
    classes, splits = meta.get("classes"), meta.get("splits")
    if (not isinstance(classes, list) or not 0 < len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) for c in classes) or not isinstance(splits, dict)):
        raise DensekitError(f"{root / 'meta.json'}: no list of class names or no splits; run `densekit data import` again")
    return meta


def load_packed(root: str | Path, split: str) -> PackedDataset:
    root = Path(root).expanduser()
    if not (root / "meta.json").is_file():
        raise DensekitError(f"{root}: no meta.json, so not a finished import; run `densekit data import SOURCE "
                            f"--out {root}`")
    meta = read_meta(root)
    if split not in meta["splits"]:
        raise MissingSplit(f"{root} has splits {', '.join(meta['splits'])}, not {split!r}")
    return PackedDataset(root, split, meta)


def check_out(out: str | Path, overwrite: bool = False) -> Path:
    """``out`` may be written: absent or empty, or ``overwrite`` (its packed files are then removed,
    so no split of the earlier import lingers; other files are left alone)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise DensekitError(f"{out} is a file; give --out a folder")
    check_target(out / "meta.json")   # a file on the way to it, a read-only place: refused before decoding
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DensekitError(f"{out} already exists and is not empty; give --overwrite to replace its import, "
                                "or another --out")
        for f in [out / "meta.json", *out.glob("*-images.npy"), *out.glob("*-labels.npy")]:
            f.unlink(missing_ok=True)
    return out


def reserve(path: Path):
    """Allocate a (sparse) memmap file's blocks now: a full disk is then an ``OSError`` here, where a
    write into the mapping would kill the process with SIGBUS."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # a file system without it
                raise


def write_packed(splits: dict[str, ImageDataset], out: str | Path, source: str, workers: int = 0,
                 batch_size: int = 256, progress=None, overwrite: bool = False) -> dict:
    """Decode every split once (in ``workers`` processes) into ``out``; returns the meta written.
    An existing non-empty ``out`` is refused unless ``overwrite``."""
    out = check_out(out, overwrite)
    try:
        return _write_packed(splits, out, source, workers, batch_size, progress)
    except (OSError, WriteError) as err:   # a full disk: remove what was written, so no partial import is left
        for f in [*out.glob("*-images.npy"), *out.glob(".*-images.npy"), *out.glob("*-labels.npy")]:
            f.unlink(missing_ok=True)
        raise (err if isinstance(err, WriteError) else write_error(out, err)) from None


def _write_packed(splits, out: Path, source: str, workers: int, batch_size: int, progress) -> dict:
    from .loader import Loader
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # an import in progress is never mistaken for a finished one
    first = next(iter(splits.values()))
    meta = {"format": FORMAT, "version": VERSION, "source": source, "classes": list(first.classes), "splits": {}}
    for split, ds in splits.items():
        shape = tuple(ds.shape)
        path = out / f"{split}-images.npy"
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(len(ds), *shape))
        reserve(path)
        labels, n = np.empty(len(ds), dtype=np.int64), 0
        for x, y in Loader(ds, batch_size=batch_size, workers=workers).epoch(0):
            images[n:n + len(x)], labels[n:n + len(x)] = x.numpy(), y.numpy()
            n += len(x)
            if progress:
                progress(split, n, len(ds))
        images.flush()
        del images
        if n < len(ds):  # items were skipped (--skip-bad): rewrite with the true count
            full = np.load(path, mmap_mode="r")
            short = np.lib.format.open_memmap(out / f".{split}-images.npy", mode="w+", dtype=np.uint8, shape=(n, *shape))
            reserve(out / f".{split}-images.npy")
            for i in range(0, n, 4096):
                short[i:i + 4096] = full[i:min(i + 4096, n)]
            short.flush()
            del short, full
            os.replace(out / f".{split}-images.npy", path)
        np.save(out / f"{split}-labels.npy", labels[:n])
        meta["splits"][split] = {"count": n, "shape": list(shape)}
    atomic_write(out / "meta.json", json.dumps(meta, indent=1) + "\n")   # the commit point
    return meta
