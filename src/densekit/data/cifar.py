"""CIFAR-10 and CIFAR-100 from the official "python version" folders (Krizhevsky, 2009).

Format (https://www.cs.toronto.edu/~kriz/cifar.html): each batch is a Python-2 pickle of a dict
whose ``data`` is a 10000 x 3072 uint8 array, each row the 1024 red, then green, then blue
pixels of a 32 x 32 image in row-major order, plus ``labels`` (CIFAR-10) or ``fine_labels`` and
``coarse_labels`` (CIFAR-100). ``batches.meta`` / ``meta`` hold the class names.
Looked for in ``data_dir/<folder>`` (default ``~/.cache/densekit``), else the official tar.gz is
downloaded (MD5-checked) and extracted there.
"""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError
from .dataset import MissingSplit, TensorImageDataset, check_labels
from .download import download
from .idx import default_data_dir
from ..limits import MAX_CLASSES
from .pickles import load_pickle

CIFAR_SETS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "splits": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "meta": "batches.meta",
        "archive": "cifar-10-python.tar.gz",
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "md5": "c58f30108f718f92721af3b95e74349a",
        "bytes": 170_498_071,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "splits": {"train": ["train"], "test": ["test"]},
        "meta": "meta",
        "archive": "cifar-100-python.tar.gz",
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "bytes": 169_001_437,
    },
}


def cifar_plan(name: str, data_dir: Path | None = None) -> list[dict]:
    """What ``find_cifar`` would download (nothing when the folder is on disk), without downloading."""
    spec = CIFAR_SETS[name]
    root = Path(data_dir) if data_dir else default_data_dir()
    if (root / spec["folder"] / spec["meta"]).is_file():
        return []
    mirror = os.environ.get(f"DENSEKIT_{name.upper()}_MIRROR") or spec["mirrors"][0]
    return [{"file": spec["archive"], "bytes": spec["bytes"], "url": mirror + spec["archive"], "into": str(root)}]


def find_cifar(name: str, data_dir: Path | None = None) -> Path:
    """The extracted folder of ``name``, downloading and extracting the archive if needed."""
    spec = CIFAR_SETS[name]
    root = Path(data_dir) if data_dir else default_data_dir()
    folder = root / spec["folder"]
    if (folder / spec["meta"]).is_file():
        return folder
    if os.environ.get("DENSEKIT_OFFLINE") == "1":
        raise DensekitError(f"{folder} not found and downloads are off (DENSEKIT_OFFLINE=1): extract "
                            f"{spec['archive']} into {root} or point --data-dir at its parent folder")
    mirror = os.environ.get(f"DENSEKIT_{name.upper()}_MIRROR")
    archive = download([m + spec["archive"] for m in ([mirror] if mirror else spec["mirrors"])],
                       root / spec["archive"], md5=spec["md5"])
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")  # "data" refuses absolute paths, links out, devices
    except (tarfile.TarError, OSError) as err:
        raise DensekitError(f"{archive}: cannot extract ({err}); delete it and run again") from None
    if not (folder / spec["meta"]).is_file():
        raise DensekitError(f"{archive} did not contain {spec['folder']}/{spec['meta']}; it is not the official archive")
    return folder


def _int_list(value, path: Path, key: str) -> np.ndarray:
    # fromiter takes only scalars: a list of lists (which a few bytes of pickle memo references can
    # make, and asarray would multiply out into a huge array) is refused instead of expanded.
    try:
        if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
            return value.astype(np.int64)
        if isinstance(value, list) and all(type(v) is int for v in value):
            return np.fromiter(value, dtype=np.int64, count=len(value))
    except OverflowError:
        pass
    raise DensekitError(f"{path}: {key} is not a list of integer labels; re-extract the CIFAR archive")


def _class_names(value, path: Path) -> list[str]:
    if (not isinstance(value, list) or not 0 < len(value) <= MAX_CLASSES
            or not all(isinstance(v, str) for v in value)):
        raise DensekitError(f"{path}: the class names are not a list of strings; re-extract the archive")
    return value


def _read_batch(path: Path, label_keys: list[str], num_classes: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    if not path.is_file():
        raise DensekitError(f"{path} is missing; re-extract the CIFAR archive")
    batch = load_pickle(path)
    if not isinstance(batch, dict) or "data" not in batch or any(k not in batch for k in label_keys):
        raise DensekitError(f"{path}: not a CIFAR batch (needs keys data and {', '.join(label_keys)}); "
                            "re-extract the CIFAR archive")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DensekitError(f"{path}: data is {what}, CIFAR batches are uint8 N x 3072; "
                            "the file is damaged or not from the python-version archive")
    labels = [_int_list(batch[k], path, k) for k in label_keys]
    if any(len(lab) != len(data) for lab in labels):
        raise DensekitError(f"{path}: {len(data)} images but {len(labels[0])} labels; re-extract the archive")
    for lab, k in zip(labels, num_classes):
        check_labels(torch.from_numpy(lab), k, str(path))
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar(name: str, split: str, data_dir: Path | None = None, label: str = "fine") -> TensorImageDataset:
    """CIFAR-10, or CIFAR-100 with its 100 ``fine`` or 20 ``coarse`` labels (both kept on the set)."""
    spec = CIFAR_SETS[name]
    if split not in spec["splits"]:
        raise MissingSplit(f"{name} has splits train and test, not {split!r}")
    if label not in ("fine", "coarse"):
        raise DensekitError(f"{name} labels are 'fine' or 'coarse', not {label!r}")
    folder = find_cifar(name, data_dir)
    meta = load_pickle(folder / spec["meta"])
    meta_path = folder / spec["meta"]
    try:
        if name == "cifar10":
            classes, coarse = _class_names(meta["label_names"], meta_path), None
        else:
            classes = _class_names(meta["fine_label_names"], meta_path)
            coarse = _class_names(meta["coarse_label_names"], meta_path)
    except (TypeError, KeyError, IndexError) as err:
        raise DensekitError(f"{meta_path}: no class names ({err}); re-extract the archive") from None
    keys = ["labels"] if name == "cifar10" else ["fine_labels", "coarse_labels"]
    counts = [len(classes)] if coarse is None else [len(classes), len(coarse)]
    parts = [_read_batch(folder / f, keys, counts) for f in spec["splits"][split]]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = [torch.from_numpy(np.concatenate([p[1][k] for p in parts])) for k in range(len(keys))]
    if label == "coarse" and coarse is not None:
        ds = TensorImageDataset(images, labels[1], coarse, name=f"{name}:coarse")
        ds.fine_labels, ds.fine_classes = labels[0], classes
    else:
        ds = TensorImageDataset(images, labels[0], classes, name=name)
        if coarse is not None:
            ds.coarse_labels, ds.coarse_classes = labels[1], coarse
    return ds
