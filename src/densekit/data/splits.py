"""Carving a validation split out of train, deterministically by seed; by group when the set has
groups (a table's ``--group-col``, e.g. the patient), so no group lands on both sides."""
from __future__ import annotations

import torch

from ..errors import DensekitError
from .dataset import ImageDataset


def carve_val(train: ImageDataset, val_size: int | float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Split ``train`` into (train, val); ``val_size`` is a count (5000) or a fraction (0.1). With
    groups, whole groups in a seeded order go to val until it holds at least that many items."""
    n = len(train)
    k = int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 < k < n:
        raise DensekitError(f"--val-split {val_size:g} leaves no training or no validation data "
                            f"({n} training items); use a count below {n} or a fraction below 1")
    g = torch.Generator().manual_seed(seed)
    if train.groups is None:
        order = torch.randperm(n, generator=g)
        return train.subset(order[k:].sort().values), train.subset(order[:k].sort().values)
    _, group = torch.unique(train.groups, return_inverse=True)
    sizes = torch.bincount(group)
    order = torch.randperm(len(sizes), generator=g)
    taken = int(torch.searchsorted(sizes[order].cumsum(0), k)) + 1   # groups until k items are in val
    if taken >= len(sizes):
        raise DensekitError(f"--val-split {val_size:g} takes every one of the {len(sizes)} groups of --group-col; "
                            "give a smaller validation split")
    in_val = torch.zeros(len(sizes), dtype=torch.bool)
    in_val[order[:taken]] = True
    mask = in_val[group]
    return train.subset((~mask).nonzero().flatten()), train.subset(mask.nonzero().flatten())
