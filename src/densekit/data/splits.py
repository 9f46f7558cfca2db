"""Carving a validation split out of train, deterministically by seed."""
from __future__ import annotations

import torch

from ..errors import DensekitError
from .dataset import ImageDataset


def carve_val(train: ImageDataset, val_size: int | float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Split ``train`` into (train, val); ``val_size`` is a count (5000) or a fraction (0.1)."""
    n = len(train)
    k = int(round(val_size * n)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 < k < n:
        raise DensekitError(f"--val-split {val_size:g} leaves no training or no validation data "
                            f"({n} training items); use a count below {n} or a fraction below 1")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return train.subset(order[k:].sort().values), train.subset(order[:k].sort().values)
