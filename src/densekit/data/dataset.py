"""The dataset contract every source returns.

``len(ds)``, ``ds[i] -> (uint8 image tensor C x H x W, label)``, ``ds.classes`` (names in
label order), ``ds.labels`` (all labels, cheap) and ``ds.task``. Single-label sets (the default)
have int labels (``labels`` int64 N); multi-label ones (``task == "multilabel"``, e.g. a CSV
table with several labels per row) have a float32 row of K per item (``labels`` float32 N x K:
1.0 present, 0.0 absent, NaN unknown, to be left out of the loss and the metrics). Small sets are held whole in memory as one
uint8 tensor (``ds.images``) so batches are gathered by indexing, with no per-item Python work;
large ones stream (``ds.images is None``) and decode items on demand in loader workers.
"""
from __future__ import annotations

import torch

from ..errors import DensekitError


class MissingSplit(DensekitError):
    """The source has no such split (a flat folder has only ``train``): callers may carve one."""


class ImageDataset(torch.utils.data.Dataset):
    """Base class: subclasses set ``classes``, ``labels`` and either ``images`` or ``load_item``."""

    name: str = "dataset"
    classes: list[str]
    labels: torch.Tensor            # int64 (N,); multilabel: float32 (N, K)
    task: str = "single-label"      # or "multilabel"
    groups: torch.Tensor | None = None  # int64 (N,): items of one group (a patient) stay on one side of a carve
    images: torch.Tensor | None = None  # uint8 (N, C, H, W) when resident in memory
    skip_bad: bool = False              # streamed sets: loaders skip unreadable items with a warning

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        label = self.labels[i] if self.task == "multilabel" else int(self.labels[i])
        if self.images is not None:
            return self.images[i], label
        return self.load_item(i), label

    def load_item(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every item."""
        if self.images is not None:
            return tuple(self.images.shape[1:])
        return tuple(self.load_item(0).shape)

    def subset(self, indices: torch.Tensor) -> "ImageDataset":
        return Subset(self, indices)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, n={len(self)}, classes={len(self.classes)})"


class TensorImageDataset(ImageDataset):
    """An in-memory dataset from a uint8 (N, C, H, W) tensor and labels."""

    def __init__(self, images: torch.Tensor, labels, classes, name: str = "tensor", task: str = "single-label"):
        images = torch.as_tensor(images)
        multi = task == "multilabel"
        labels = torch.as_tensor(labels, dtype=torch.float32 if multi else torch.int64)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise DensekitError(f"{name}: {len(images)} images but {len(labels)} labels; the files disagree, "
                                "re-extract or re-download them")
        if multi:
            check_multilabel(labels, len(classes), name)
        else:
            check_labels(labels, len(classes), name)
        self.images, self.labels, self.classes, self.name, self.task = images, labels, list(classes), name, task


class Subset(ImageDataset):
    """A view of some items of another dataset (a carved validation split, a shard)."""

    def __init__(self, base: ImageDataset, indices: torch.Tensor):
        self.base, self.indices = base, torch.as_tensor(indices, dtype=torch.int64)
        self.classes, self.name, self.skip_bad, self.task = base.classes, base.name, base.skip_bad, base.task
        self.labels = base.labels[self.indices]
        self.groups = base.groups[self.indices] if base.groups is not None else None
        self.images = base.images[self.indices] if base.images is not None else None

    def load_item(self, i: int) -> torch.Tensor:
        return self.base.load_item(int(self.indices[i]))

    @property
    def shape(self):
        return self.base.shape


def check_labels(labels: torch.Tensor, num_classes: int, name: str):
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
        raise DensekitError(f"{name}: label {bad} is outside the {num_classes} classes; "
                            "check the label file or the class list")


def check_multilabel(labels: torch.Tensor, num_classes: int, name: str):
    """Multi-label rows: (N, K) float, each entry 1 (present), 0 (absent) or NaN (unknown)."""
    if labels.dim() != 2 or labels.shape[1] != num_classes:
        raise DensekitError(f"{name}: multi-label labels must be one row of {num_classes} entries per image, "
                            f"got shape {tuple(labels.shape)}; check the label columns")
    known = labels[~labels.isnan()]
    if len(known) and not ((known == 0) | (known == 1)).all():
        raise DensekitError(f"{name}: multi-label entries must be 1 (present), 0 (absent) or empty (unknown), "
                            f"found {float(known[(known != 0) & (known != 1)][0]):g}; check the label columns")
