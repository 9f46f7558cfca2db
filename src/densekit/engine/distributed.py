"""Rank awareness for torchrun (DDP): which process this is, and whether it writes files."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init(device: torch.device) -> tuple[int, int]:
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, size


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def same_on_all_ranks(value):
    """Rank 0's ``value`` everywhere (e.g. a run name made from the clock)."""
    if dist.is_available() and dist.is_initialized():
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def barrier():
    """Wait for every rank (e.g. until rank 0 has written a checkpoint the others will read)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
