"""Batches for training and evaluation, deterministic and resumable.

The order of epoch ``e`` is a permutation drawn from ``seed`` and ``e`` alone, so a resumed run
(or another rank) reproduces it exactly; ``start`` skips batches already seen. ``batch_size`` is
the global batch, what one process would take, whatever the number of ranks. Under DDP the ranks
share each epoch's batches in one of two ways (``shard``): "split" (training) cuts every batch
into ``world_size`` contiguous parts, so N ranks together take exactly one process's batches and
the order is a function of (seed, epoch, global position) alone; "deal" (evaluation) hands whole
batches to the ranks in turn, so every batch is computed exactly as one process computes it.
``balanced`` draws the epoch's items with replacement, every class equally likely, from the same
(seed, epoch) generator (``balance.balanced_order``), then shards like any order.
In-memory sets are gathered by tensor indexing (no per-item Python); streamed sets decode in a
worker pool with prefetching.
"""
from __future__ import annotations

import math
import os
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


class _Checked(_Guarded):
    """Each item's one-line error, or None when it decodes (the pixels stay in the worker)."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return item.message if isinstance(item, _Bad) else None


def drop_unreadable(dataset: ImageDataset, workers: int | None = None) -> ImageDataset:
    """The items of a streamed set that decode, as a subset, for ``skip_bad``.

    Decoding every item once up front (in a pool of ``workers`` processes; by default up to 8 for
    sets of 512 items or more) makes the skipped items absent from the set's length and indexing,
    so every consumer (the loader, evaluation and its accuracy denominator, the plots, TensorBoard's
    sample grid) sees the same good items, instead of each meeting the bad ones on its own."""
    if dataset.images is not None:
        return dataset
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if len(dataset) >= 512 else 0
    checks = torch.utils.data.DataLoader(_Checked(dataset), batch_size=64, num_workers=workers,
                                         collate_fn=list)
    errors = [e for batch in checks for e in batch]
    bad = [i for i, e in enumerate(errors) if e is not None]
    if not bad:
        return dataset
    if len(bad) == len(dataset):
        raise DensekitError(f"{dataset.name}: none of its {len(dataset)} items is readable; first: {errors[bad[0]]}")
    warnings.warn(f"skipped {len(bad)} unreadable item(s) of {dataset.name} (of {len(dataset)}); "
                  f"first: {errors[bad[0]]}", DataWarning, stacklevel=2)
    keep = torch.ones(len(dataset), dtype=torch.bool)
    keep[bad] = False
    return dataset.subset(keep.nonzero().flatten())


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
                 rank: int = 0, world_size: int = 1, shard: str = "split", balanced: bool = False):
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, shuffle, seed
        self.drop_last, self.device, self.workers = drop_last, torch.device(device), workers
        self.rank, self.world_size, self.shard, self.balanced = rank, world_size, shard, balanced
        if balanced and not shuffle:
            raise ValueError("a balanced order is a random one: pass shuffle=True")
        if shard == "split" and world_size > 1:
            if batch_size % world_size:
                raise DensekitError(f"batch size {batch_size} does not split evenly over {world_size} processes: "
                                    f"give a multiple of {world_size} (the batch size is the global batch)")
            if len(dataset) < world_size:
                raise DensekitError(f"{len(dataset)} items cannot be shared by {world_size} processes; use fewer")

    def indices(self, epoch: int) -> torch.Tensor:
        """The global order of epoch ``epoch`` (every rank's)."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            return balanced_order(self.dataset.labels, g) if self.balanced else torch.randperm(n, generator=g)
        return torch.arange(n)

    def __len__(self) -> int:
        """Steps per epoch: the global batches (each rank takes part in every one when split)."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batch_total(self, step: int) -> int:
        """How many images global batch ``step`` holds (the last one may be short)."""
        return min(self.batch_size, len(self.dataset) - step * self.batch_size)

    def rows(self, step: int) -> tuple[int, int, int]:
        """(start, stop, total): this rank's rows of global batch ``step`` when split."""
        total = self.batch_total(step)
        if self.world_size == 1:
            return 0, total, total
        sizes = [len(c) for c in torch.arange(total).tensor_split(self.world_size)]
        start = sum(sizes[:self.rank])
        return start, start + sizes[self.rank], total

    def _batches(self, epoch: int, start: int) -> list[torch.Tensor]:
        order = self.indices(epoch)
        steps = range(start, len(self))
        if self.world_size > 1 and self.shard == "deal":
            steps = [i for i in steps if i % self.world_size == self.rank]
        batches = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in steps]
        if self.world_size > 1 and self.shard == "split":
            batches = [b.tensor_split(self.world_size)[self.rank] for b in batches]
        return batches

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images N x C x H x W, int64 labels; for a multi-label set float32 N x K rows)
        on the device, from batch ``start`` on:
        this rank's part of each global batch ("split") or its whole batches ("deal")."""
        batches = self._batches(epoch, start)
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
