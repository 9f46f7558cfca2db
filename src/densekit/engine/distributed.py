"""Data-parallel training with PyTorch's own machinery: torchrun's elastic agent, DDP, SyncBatchNorm.

The invariant everything here keeps: N processes compute what one process would. The global
batch (``batch_size``) is one process's batch, split across the ranks (``data.Loader``); each
image's augmentation is drawn for its place in the global batch (``augment_shard``); BatchNorm
statistics are the global batch's with ``sync_bn``; evaluation deals whole batches to the ranks
and sums their counts (``engine.evaluate.run_eval``). So the data order is a function of (seed,
epoch, global position), whatever the number of ranks, and a run can resume on another number.

Written here rather than taken from torch: ``HostSyncBatchNorm``, because torch's SyncBatchNorm
refuses CPU tensors (its ATen kernels are GPU-only) and gloo on CPU is where the equivalence is
tested; it computes the same statistics with torch's differentiable all-reduce. (Just over 350
lines: process groups, sharding, exact reductions and the host SyncBatchNorm share one invariant,
one process's figures from N processes, and are read together.)
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..errors import DensekitError


def world() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment; (0, 1) when run alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


_cpu_group = None   # gloo beside NCCL, for small host-side values: no GPU synchronisation


def init(device: torch.device) -> tuple[int, int]:
    global _cpu_group
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        # torchrun's agent keeps one store for all its restarts: keys under this attempt's own
        # prefix, or a restarted rank can read a dead worker's address and wait on it forever.
        store, rank, size = next(dist.rendezvous("env://"))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size,
                                store=dist.PrefixStore(f"densekit/attempt{restart_count()}", store))
    if size > 1 and device.type == "cuda" and _cpu_group is None:
        _cpu_group = dist.new_group(backend="gloo")
    return rank, size


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def active_world() -> tuple[int, int]:
    """(rank, world_size) of the initialised process group; (0, 1) without one."""
    return (dist.get_rank(), dist.get_world_size()) if _active() else (0, 1)


def sum_over_ranks(values: list[float]) -> list[float]:
    """Host-side numbers summed over all ranks (an epoch's loss, hits and images)."""
    if _active():
        box = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(box, group=_cpu_group)
        return box.tolist()
    return list(values)


def same_on_all_ranks(value):
    """Rank 0's ``value`` everywhere: a run name made from the clock, the clock itself. Decisions
    taken from them (a time budget, checkpoints) must agree across ranks, or one rank enters a
    barrier or stops while another waits in DDP's all-reduce."""
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


def shutdown():
    """Leave the process group once every rank is done (a rank that exits while gloo's threads
    still serve another aborts)."""
    global _cpu_group
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        _cpu_group = None


def all_reduce_(*tensors: torch.Tensor):
    """Sum tensors over all ranks in place (evaluation's counts); nothing when run alone."""
    if _active():
        for t in tensors:
            dist.all_reduce(t)


def gather_objects(items: list) -> list:
    """Every rank's list, concatenated (on every rank); the list itself when run alone."""
    if not _active():
        return items
    box = [None] * dist.get_world_size()
    dist.all_gather_object(box, items, group=_cpu_group)
    return [x for part in box for x in part]


# -- the model ------------------------------------------------------------------------------------
class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every rank's loss depends on
    every rank's share of the statistics."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class HostSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """torch's SyncBatchNorm for CPU tensors (torch's own runs on GPUs only): the global batch's
    mean and biased variance from two all-reduces whose backward sums the statistics' gradients
    over ranks, as SyncBatchNorm's does. Same buffers and state_dict; not a SyncBatchNorm
    subclass, which DDP refuses on CPU."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and _active()):
            return super().forward(x)   # evaluation: the running statistics, as any BatchNorm
        dims, shape = [0, *range(2, x.dim())], (1, -1, *[1] * (x.dim() - 2))
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.new_tensor([x.numel() // x.shape[1]])])
        sums = _SumOverRanks.apply(local)
        total = float(sums[-1].detach())
        mean = sums[:-1] / total
        centred = xf - mean.view(shape)
        var = _SumOverRanks.apply(centred.pow(2).sum(dims)) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                self.running_var.lerp_((var.detach() * total / max(total - 1, 1)).to(self.running_var.dtype), m)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def convert_sync_bn(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers -> SyncBatchNorm (HostSyncBatchNorm on CPU): statistics over the global
    batch, so N ranks normalise exactly as one process with the whole batch would."""
    if getattr(model, "model_args", {}).get("memory_efficient"):
        raise DensekitError("--sync-bn does not combine with memory_efficient=True (its backward recomputes "
                            "BatchNorm from the local batch); drop one of them")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise DensekitError(f"--sync-bn: {type(model).__name__} has no BatchNorm layers to synchronise; drop --sync-bn")
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cpu":
        for m in model.modules():
            if type(m) is nn.SyncBatchNorm:
                m.__class__ = HostSyncBatchNorm   # same state; only forward differs
    return model


def wrap(model: nn.Module, device: torch.device, frozen: bool = False) -> nn.Module:
    """DDP around ``model``. ``broadcast_buffers`` (the default) copies rank 0's BatchNorm running
    statistics to every rank at each forward; ``sync_buffers`` does the same before evaluation.
    ``frozen``: some parameters get no gradient (``--freeze``), which DDP must be told."""
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=frozen)


def sync_buffers(*models: nn.Module | None):
    """Rank 0's buffers (BatchNorm running statistics) on every rank. Without sync-bn each rank's
    running statistics took its own shards since DDP last broadcast them; evaluating the ranks'
    models as one requires one model, and rank 0's is the one its checkpoint holds."""
    if not _active():
        return
    for model in models:
        if model is not None:
            for b in model.buffers():
                dist.broadcast(b, 0)


def grad_sync(ddp, sync: bool):
    """DDP's ``no_sync()`` on accumulating steps: gradients add up locally and are all-reduced
    once, on the step that applies them."""
    return ddp.no_sync() if ddp is not None and not sync else contextlib.nullcontext()


def augment_shard(augment, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int, rows: tuple[int, int, int]):
    """This rank's rows ``(start, stop, total)`` of the global batch, augmented as one process
    augments the whole batch: per-image ops draw for every row of the global batch and keep
    this shard's; ops that look across the batch (mixup's partners, brightness's batch spread)
    see the whole batch, all-gathered."""
    start, stop, total = rows
    if not _active() or stop - start == total:
        return augment(x, y, epoch, step)
    if not augment.couples:
        return augment(x, y, epoch, step, rows=rows)
    size = dist.get_world_size()
    sizes = [len(c) for c in torch.arange(total).tensor_split(size)]
    most = max(sizes)
    pad = most - len(x)
    xs = [torch.empty((most, *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in range(size)]
    ys = [torch.empty((most, *y.shape[1:]), dtype=y.dtype, device=y.device) for _ in range(size)]
    dist.all_gather(xs, F.pad(x, (0, 0) * (x.dim() - 1) + (0, pad)) if pad else x)
    dist.all_gather(ys, torch.cat([y, y[:pad]]) if pad else y)
    x_all = torch.cat([t[:n] for t, n in zip(xs, sizes)])
    y_all = torch.cat([t[:n] for t, n in zip(ys, sizes)])
    x_all, y_all = augment(x_all, y_all, epoch, step)
    return x_all[start:stop], y_all[start:stop]


class EpochTally:
    """The running sums of an epoch in progress on this rank: loss (summed over images), hits,
    images, and the seconds spent waiting for data and computing. Loss and hits stay tensors on
    the device between reports (no synchronisation per step). Checkpointed as every rank's sums
    (``to_checkpoint``, the checkpoint's ``progress.partial``), so an epoch resumed on any number
    of processes still reports every image once."""

    FIELDS = ("loss", "correct", "seen", "data_time", "compute_time")

    def __init__(self, loss=0.0, correct=0.0, seen: int = 0, data_time: float = 0.0, compute_time: float = 0.0):
        self.loss, self.correct, self.seen = loss, correct, seen
        self.data_time, self.compute_time = data_time, compute_time

    def add(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, multilabel: bool = False):
        """One step's batch: its mean loss, its logits, its (hard or soft) targets. Several labels
        per image: the hits are each image's fraction of known labels right at 0.5."""
        self.loss += loss.detach().float() * len(target)
        if multilabel:
            from .losses import label_accuracy_sum
            self.correct += label_accuracy_sum(logits.detach(), target)
        else:
            hard = target if target.dim() == 1 else target.argmax(1)
            self.correct += (logits.detach().argmax(1) == hard).sum()
        self.seen += len(target)

    def running(self) -> tuple[float, float]:
        """(mean loss, top-1) of this rank's images so far."""
        seen = max(self.seen, 1)
        return float(self.loss) / seen, float(self.correct) / seen

    def images_per_s(self, seen: int | None = None) -> float:
        return (self.seen if seen is None else seen) / max(self.data_time + self.compute_time, 1e-9)

    def step_figures(self, loss: torch.Tensor) -> tuple[float, float, float]:
        """(this step's loss, the epoch's running loss, running top-1) over every rank, in one small
        all-reduce: what the divergence guard judges and the progress bar shows."""
        step_loss, loss_sum, correct, seen = sum_over_ranks([loss.item(), float(self.loss), float(self.correct),
                                                             float(self.seen)])
        n = dist.get_world_size() if _active() else 1
        return step_loss / n, loss_sum / max(seen, 1), correct / max(seen, 1)

    def totals(self) -> tuple[float, float, int]:
        """(loss sum, hits, images) over every rank: the finished epoch's figures (a collective)."""
        loss, correct, seen = sum_over_ranks([float(self.loss), float(self.correct), float(self.seen)])
        return loss, correct, int(seen)

    def to_checkpoint(self) -> dict:
        """Every rank's sums (rank 0's timings), as the checkpoint stores them (a collective)."""
        loss, correct, seen = self.totals()
        return {"loss": loss, "correct": correct, "seen": seen, "data_time": self.data_time,
                "compute_time": self.compute_time}

    @classmethod
    def from_checkpoint(cls, part: dict, rank: int) -> "EpochTally":
        """The share of a checkpointed epoch's sums that ``rank`` carries on: rank 0 all of it, the
        others none, so summing over ranks at the epoch's end counts each image once."""
        part = {k: part[k] for k in cls.FIELDS}
        return cls(**part) if rank == 0 else cls(data_time=part["data_time"], compute_time=part["compute_time"])


def describe(world_size: int, batch_size: int, sync_bn: bool, device: torch.device) -> dict:
    """What the run's config.yaml records of how it ran."""
    return {"world_size": world_size, "batch_per_rank": batch_size // world_size,
            "backend": ("nccl" if device.type == "cuda" else "gloo") if world_size > 1 else None,
            "sync_bn": bool(sync_bn and world_size > 1)}


def resize_note(before: dict | None, world_size: int, batch_size: int) -> str | None:
    """The line a resume on another number of processes prints; None when nothing changed."""
    was = (before or {}).get("world_size", 1)
    if was == world_size:
        return None
    return (f"resuming on {world_size} process{'es' if world_size > 1 else ''} (was {was}): global batch "
            f"{batch_size} kept, {batch_size // world_size} per process (was {batch_size // was}); "
            "the data order is unchanged")


# -- torchrun's elastic agent ---------------------------------------------------------------------
def restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this worker group (0: first start)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0))


def elastic_resume(out: str, name: str | None) -> Path | None:
    """The run folder a restarted worker continues: ``out/name`` when the agent has restarted the
    group and that folder has a checkpoint; None on a first start (or before any checkpoint)."""
    from .run import RunFolder
    if restart_count() == 0 or not name:
        return None
    run = RunFolder(Path(out) / name)
    return run.path if run.checkpoint("last").is_file() else None


def launch(train_args: list[str], nproc: int, max_restarts: int = 0, nnodes: str = "1",
           rdzv_endpoint: str | None = None, rdzv_backend: str = "c10d", rdzv_id: str | None = None):
    """``torchrun --nproc_per_node NPROC ... -m densekit train TRAIN_ARGS`` through torch's own
    entry point (``torch.distributed.run.main``): one elastic agent per node, which restarts the
    whole group up to ``max_restarts`` times when a worker dies."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun
    if nproc < 1:
        raise DensekitError(f"--nproc {nproc}: give the number of processes to start on this node, e.g. --nproc 2")
    argv = ["--nproc_per_node", str(nproc), "--nnodes", str(nnodes), "--max-restarts", str(max_restarts)]
    if rdzv_endpoint:
        argv += ["--rdzv-backend", rdzv_backend, "--rdzv-endpoint", rdzv_endpoint,
                 "--rdzv-id", rdzv_id or "densekit"]
    elif str(nnodes) not in ("1", "1:1"):
        raise DensekitError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT, the same on every node")
    else:
        argv.append("--standalone")
    try:
        torchrun(argv + ["-m", "densekit", "train", *train_args])
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        raise DensekitError(f"training failed on rank {rank} (exit code {failure.exitcode}) after "
                            f"{max_restarts} restart(s); its error is printed above") from None


def restart_record(previous: dict, epoch: int, step: int) -> list:
    """status.json's ``restarts``: one entry per elastic restart, where the run resumed."""
    return [*previous.get("restarts", []), {"restart": restart_count(), "epoch": epoch, "step": step,
                                            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
