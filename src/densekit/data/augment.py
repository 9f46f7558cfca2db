"""Batched augmentation on tensors, on the training device; same generator seed, same batches.

Each op takes a float batch (N, C, H, W) and a ``torch.Generator`` on the batch's device and
returns the new batch. ``Augment`` runs a preset's ops; ops that mix images (mixup, cutmix)
also turn the int labels into soft targets (N, num_classes), which cross-entropy accepts as is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_crop(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back at a random offset per image (the paper's standard)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


PRESETS = {
    "none": [],
    "standard": [pad_crop, hflip],   # pad-4 crop + horizontal flip (Huang et al.; He et al.)
    "crop": [pad_crop],              # for digits, where a flip changes the class
}


class Augment:
    """A preset's ops applied in order. The generator is re-seeded from (seed, epoch, step) for
    every batch, so a run resumed mid-epoch draws exactly the augmentations it would have."""

    def __init__(self, preset: str = "standard", seed: int = 0):
        from ..errors import DensekitError
        if preset not in PRESETS:
            raise DensekitError(f"unknown augmentation {preset!r}: choose one of {', '.join(PRESETS)}")
        self.preset, self.ops, self.seed = preset, PRESETS[preset], seed
        self._generators: dict = {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0, step: int = 0):
        """Augment a float batch; returns (images, labels or soft targets)."""
        if not self.ops:
            return x, y
        g = self._generators.setdefault(x.device, torch.Generator(device=x.device))
        g.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + step)
        for op in self.ops:
            x = op(x, g)
        return x, y
