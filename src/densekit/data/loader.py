"""Batches for training and evaluation, deterministic and resumable.

The order of epoch ``e`` is a permutation drawn from ``seed`` and ``e`` alone, so a resumed run
(or another rank) reproduces it exactly; ``start`` skips batches already seen. Under DDP each
rank takes every ``world_size``-th index of the same permutation. ``balanced`` draws the epoch's
items with replacement, every class equally likely, from the same (seed, epoch) generator
(``balance.balanced_order``).
In-memory sets are gathered by tensor indexing (no per-item Python); streamed sets decode in a
worker pool with prefetching.
"""
from __future__ import annotations

import math
import warnings
from typing import Iterator

import torch

from ..errors import DensekitError
from .balance import balanced_order
from .dataset import ImageDataset


class DataWarning(UserWarning):
    """Items skipped because they could not be read (only with ``skip_bad``)."""


class _Bad:
    """What a worker returns for an item it could not decode: the one-line reason."""

    def __init__(self, message: str):
        self.message = message


class _Guarded(torch.utils.data.Dataset):
    # Errors raised inside a worker process come back wrapped in a multi-line traceback; returning
    # the message instead lets the main process raise it as one line, or count and skip it.
    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        try:
            return self.dataset[i]
        except DensekitError as err:
            return _Bad(str(err))


def _collate(items):
    good = [it for it in items if not isinstance(it, _Bad)]
    bad = [it.message for it in items if isinstance(it, _Bad)]
    if not good:
        return None, torch.zeros(0, dtype=torch.int64), bad
    # default_collate stacks straight into shared memory when run in a worker: no extra copy.
    x, y = torch.utils.data.default_collate(good)
    return x, y, bad


class Loader:
    def __init__(self, dataset: ImageDataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device: str | torch.device = "cpu", workers: int = 0,
                 rank: int = 0, world_size: int = 1, balanced: bool = False):
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.device, self.workers = drop_last, torch.device(device), workers
        self.rank, self.world_size, self.balanced = rank, world_size, balanced
        if balanced and not shuffle:
            raise ValueError("a balanced order is a random one: pass shuffle=True")

    def indices(self, epoch: int) -> torch.Tensor:
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = balanced_order(self.dataset.labels, g) if self.balanced else torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            per_rank = math.ceil(n / self.world_size)  # pad by wrapping so every rank has equal steps
            order = torch.cat([order, order[: per_rank * self.world_size - n]])[self.rank::self.world_size]
        return order

    def __len__(self) -> int:
        n = math.ceil(len(self.dataset) / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images N x C x H x W, int64 labels) on the device, from batch ``start`` on."""
        order = self.indices(epoch)
        batches = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(start, len(self))]
        non_blocking = self.device.type == "cuda"
        if self.dataset.images is not None:
            images, labels = self.dataset.images, self.dataset.labels
            for idx in batches:
                yield (images[idx].to(self.device, non_blocking=non_blocking),
                       labels[idx].to(self.device, non_blocking=non_blocking))
            return
        loader = torch.utils.data.DataLoader(
            _Guarded(self.dataset), batch_sampler=[b.tolist() for b in batches], num_workers=self.workers,
            collate_fn=_collate, pin_memory=non_blocking, persistent_workers=False,
            prefetch_factor=4 if self.workers else None)
        skipped, first = 0, None
        for x, y, bad in loader:
            if bad and not self.dataset.skip_bad:
                raise DensekitError(f"{bad[0]} (or pass --skip-bad to skip unreadable items)")
            skipped, first = skipped + len(bad), first or (bad[0] if bad else None)
            if x is not None:
                yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)
        if skipped:
            warnings.warn(f"skipped {skipped} unreadable item(s) of {self.dataset.name} this epoch; first: {first}",
                          DataWarning, stacklevel=2)
