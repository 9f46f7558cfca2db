"""Per-channel normalisation: statistics come from the training split and are stored with the
run, so evaluation and prediction apply exactly what training applied."""
from __future__ import annotations

import torch

from .dataset import ImageDataset
from .images import conform


def channel_stats(ds: ImageDataset, max_items: int | None = None, workers: int = 0) -> tuple[list[float], list[float]]:
    """Mean and std of each channel in [0, 1] units, over up to ``max_items`` evenly spaced items
    (default 20,000 resident, 2,000 streamed: each streamed item is a decode)."""
    from .loader import Loader
    max_items = max_items or (20_000 if ds.images is not None else 2_000)
    step = max(1, len(ds) // max_items)
    sample = ds.subset(torch.arange(0, len(ds), step))
    # Running sums in float64, a chunk at a time, so big images never sit in memory all at once.
    total = total_sq = count = 0
    for x, _ in Loader(sample, batch_size=256, workers=workers if ds.images is None else 0).epoch(0):
        x = x.double().div_(255).transpose(0, 1).flatten(1)
        total, total_sq, count = total + x.sum(1), total_sq + (x * x).sum(1), count + x.shape[1]
    mean = total / count
    std = ((total_sq / count - mean * mean).clamp_min(0) * count / max(count - 1, 1)).sqrt()
    return mean.tolist(), std.clamp_min(1e-3).tolist()


def scale_shift(mean, std, channels: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / (255 std), mean / std) as (1, C, 1, 1) float32 tensors: normalised = pixels * scale - shift.
    The one normalisation: ``Normalize`` (training, evaluation) and ``engine.infer.InferenceModel``
    (prediction, exported graphs) both apply these, so they compute identical floats. Statistics of
    another channel count (a gray model fed RGB statistics) are averaged to one."""
    mean = torch.tensor(list(mean), device=device).view(1, -1, 1, 1)
    std = torch.tensor(list(std), device=device).view(1, -1, 1, 1)
    if mean.shape[1] != channels:
        mean, std = mean.mean(1, keepdim=True), std.mean(1, keepdim=True)
    return 1 / (255 * std), mean / std


class Normalize:
    """uint8 batch -> float batch, (x/255 - mean) / std per channel, on the batch's device."""

    def __init__(self, mean, std):
        self.mean, self.std = list(mean), list(std)
        self._cache: dict = {}

    def __call__(self, x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        key = (x.device, x.shape[1])
        if key not in self._cache:
            self._cache[key] = scale_shift(self.mean, self.std, x.shape[1], x.device)
        scale, shift = self._cache[key]
        return (x.to(dtype) * scale - shift).to(dtype)


RESIDENT_LIMIT = 2 << 30  # bytes of resized images kept in memory; above it, resize per item instead


class _ConformedView(ImageDataset):
    """A resident set seen at other channels/size, converted item by item (for sets too big to copy)."""

    def __init__(self, base: ImageDataset, channels, size):
        self.base, self.channels, self.size = base, channels, size
        self.classes, self.labels, self.name = base.classes, base.labels, base.name
        self.task, self.groups, self.skip_bad = base.task, base.groups, base.skip_bad

    def load_item(self, i: int) -> torch.Tensor:
        return conform(self.base.images[i:i + 1], self.channels, self.size)[0]


def fit_dataset(ds: ImageDataset, channels: int | None = None, image_size=None) -> ImageDataset:
    """Give a resident set the configured channels and size (streamed sets decode to them already)."""
    if ds.images is None or (channels is None and image_size is None):
        return ds
    n, c, h, w = ds.images.shape
    hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size or (h, w))
    c2 = channels or c
    if (c2, *hw) == (c, h, w):
        return ds
    if n * c2 * hw[0] * hw[1] > RESIDENT_LIMIT:
        return _ConformedView(ds, c2, hw)
    ds.images = torch.cat([conform(ds.images[i:i + 4096], c2, hw) for i in range(0, n, 4096)])
    return ds
