"""Rank awareness for torchrun (DDP): which process this is, and whether it writes files."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


_cpu_group = None   # gloo beside NCCL, for small host-side values: no GPU synchronisation


def init(device: torch.device) -> tuple[int, int]:
    global _cpu_group
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if size > 1 and device.type == "cuda" and _cpu_group is None:
        _cpu_group = dist.new_group(backend="gloo")
    return rank, size


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def sum_over_ranks(values: list[float]) -> list[float]:
    """Host-side numbers summed over all ranks (an epoch's loss, hits and images)."""
    if _active():
        box = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(box, group=_cpu_group)
        return box.tolist()
    return list(values)


def mean_over_ranks(value: float) -> float:
    """The mean of a host-side number over all ranks (e.g. the loss the divergence guard judges,
    so that every rank stops together)."""
    return sum_over_ranks([value])[0] / (dist.get_world_size() if _active() else 1)


def same_on_all_ranks(value):
    """Rank 0's ``value`` everywhere: a run name made from the clock, validation figures, the
    clock itself. Decisions taken from them (a time budget, checkpoints) must agree across ranks,
    or one rank enters a barrier or stops while another waits in DDP's all-reduce."""
    if not _active():
        return value
    if isinstance(value, float) or (isinstance(value, list) and value and all(isinstance(v, float) for v in value)):
        box = torch.tensor(value, dtype=torch.float64)   # read every step: one small tensor, no pickling
        dist.broadcast(box, 0, group=_cpu_group)
        return box.tolist()
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_cpu_group)
    return box[0]


def barrier():
    """Wait for every rank (e.g. until rank 0 has written a checkpoint the others will read)."""
    if _active():
        dist.barrier()
