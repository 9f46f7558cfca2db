"""Images of a dataset by index, for the grids of the plots and TensorBoard. The test split's
logits, labels and features come from the trainer's one test pass (``Context.test``)."""
from __future__ import annotations

import torch


def image_batch(ds, indices) -> torch.Tensor:
    """uint8 N x C x H x W images of ``ds`` at ``indices`` (works for streamed sets too)."""
    indices = list(indices)
    return torch.stack([ds[i][0] for i in indices]) if indices else torch.zeros(0, *ds.shape, dtype=torch.uint8)
