"""Per-channel normalisation: statistics come from the training split and are stored with the
run, so evaluation and prediction apply exactly what training applied."""
from __future__ import annotations

import torch

from .dataset import ImageDataset


def channel_stats(ds: ImageDataset, max_items: int = 20_000) -> tuple[list[float], list[float]]:
    """Mean and std of each channel in [0, 1] units, over up to ``max_items`` evenly spaced items."""
    step = max(1, len(ds) // max_items)
    idx = torch.arange(0, len(ds), step)
    if ds.images is not None:
        x = ds.images[idx]
    else:
        x = torch.stack([ds[int(i)][0] for i in idx])
    x = x.double().div_(255).transpose(0, 1).flatten(1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-3).tolist()


class Normalize:
    """uint8 batch -> float batch, (x/255 - mean) / std per channel, on the batch's device."""

    def __init__(self, mean, std):
        self.mean, self.std = list(mean), list(std)
        self._cache: dict = {}

    def __call__(self, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        key = (x.device, x.shape[1])
        if key not in self._cache:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            if mean.shape[1] != x.shape[1]:  # the model's channels differ from the stats: broadcast one
                mean, std = mean.mean(1, keepdim=True), std.mean(1, keepdim=True)
            self._cache[key] = (1 / (255 * std), mean / std)
        scale, shift = self._cache[key]
        return (x.to(dtype) * scale - shift).to(dtype)
