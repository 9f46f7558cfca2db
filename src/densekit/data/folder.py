"""``folder:PATH``: a folder of images with one sub-folder per class (the ImageNet / Oxford flowers /
HWDB layout), optionally under ``train/``, ``val/`` (or ``validation/``) and ``test/``.

Streams: the set keeps only relative paths (one numpy byte-string array, which DataLoader worker
processes share copy-on-write without Python refcount churn) and labels; images decode on demand
in the loader's worker pool. Class order is sorted folder names (numeric when all are integers),
so the label of a class never depends on the file system's listing order.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError
from .dataset import ImageDataset, MissingSplit
from .images import EXTENSIONS, decode_image, image_mode_channels

SPLIT_DIRS = {"train": ["train"], "val": ["val", "validation", "valid"], "test": ["test"]}


def _sorted_classes(names: list[str]) -> list[str]:
    return sorted(names, key=int) if names and all(n.isdigit() for n in names) else sorted(names)


def _subdirs(path: Path) -> list[str]:
    return [e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith(".")]


def _images_under(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, files in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, folder)
        found += [f if rel == "." else os.path.join(rel, f) for f in sorted(files)
                  if f.lower().endswith(EXTENSIONS) and not f.startswith(".")]
    return found


def split_folders(root: Path) -> dict[str, Path]:
    """{split: folder of class folders}: the split sub-folders when present, else the root as train."""
    present = {}
    for split, names in SPLIT_DIRS.items():
        for n in names:
            if (root / n).is_dir():
                present[split] = root / n
                break
    return present or {"train": root}


def probe_shape(candidates, channels, image_size, tries: int, where: str):
    """(channels, image_size) with what was not configured taken from the first readable image
    (with skip_bad, a few bad ones are passed over)."""
    for k, path in enumerate(candidates):
        try:
            channels = channels or image_mode_channels(path)
            if image_size is None:
                image_size = tuple(decode_image(path, channels).shape[1:])
            return channels, image_size
        except DensekitError:
            if k + 1 >= tries:
                raise
    raise DensekitError(f"{where}: no readable image among the first files; check the folder")


class FolderDataset(ImageDataset):
    """One split of an image folder; items decode lazily to ``channels`` x ``image_size``."""

    def __init__(self, root: str | Path, split: str = "train", channels: int | None = None,
                 image_size=None, skip_bad: bool = False):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DensekitError(f"{root}: no such folder; give folder:PATH a folder with one sub-folder per class")
        splits = split_folders(root)
        if split not in splits:
            raise MissingSplit(f"{root} has no {split}/ folder (it has {', '.join(splits)}); "
                               "carve a validation split with --val-split")
        train_dir = splits.get("train", splits[split])
        self.classes = _sorted_classes(_subdirs(train_dir))
        if not self.classes:
            raise DensekitError(f"{train_dir}: no class sub-folders; put each class's images in its own "
                                "sub-folder (e.g. cats/, dogs/)")
        base = splits[split]
        unknown = sorted(set(_subdirs(base)) - set(self.classes))
        if unknown:
            raise DensekitError(f"{base / unknown[0]}: class folder not in {train_dir} ({len(unknown)} such); "
                                "every split must use the training split's class names")
        paths, labels = [], []
        for label, cls in enumerate(self.classes):
            if not (base / cls).is_dir():
                continue  # a class may be absent from val/test; never from train (checked below)
            files = _images_under(base / cls)
            if not files:
                raise DensekitError(f"{base / cls}: empty class folder (no {'/'.join(e[1:] for e in EXTENSIONS)} "
                                    "files); add images or remove the folder")
            paths += [os.path.join(cls, f) for f in files]
            labels += [label] * len(files)
        self.root, self.split, self.name, self.skip_bad = base, split, f"folder:{root}", skip_bad
        self.paths = np.array([p.encode("utf-8", "surrogateescape") for p in paths])
        self.labels = torch.tensor(labels, dtype=torch.int64)
        # The training split's first image fixes what was not configured, so every item of every
        # split stacks into one batch of the shape the model was built for.
        candidates = (train_dir / cls / f for cls in self.classes for f in _images_under(train_dir / cls))
        self.channels, self.image_size = channels, image_size
        if channels is None or image_size is None:
            self._probe(candidates, tries=100 if skip_bad else 1)

    def _probe(self, candidates, tries: int):
        self.channels, self.image_size = probe_shape(candidates, self.channels, self.image_size, tries, str(self.root))

    def path(self, i: int) -> Path:
        return self.root / self.paths[i].decode("utf-8", "surrogateescape")

    def load_item(self, i: int) -> torch.Tensor:
        return decode_image(self.path(i), self.channels, self.image_size)

    @property
    def shape(self):
        h, w = (self.image_size, self.image_size) if isinstance(self.image_size, int) else self.image_size
        return (self.channels, h, w)
