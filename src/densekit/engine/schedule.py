"""Learning-rate schedules as functions of training progress p in [0, 1].

Driving the schedule by progress (not epochs) lets one definition serve fixed-epoch runs and
time-budget runs, whose total number of steps is only known once the step time is measured.
"""
from __future__ import annotations

import bisect
import math


def lr_factor(p: float, schedule: str, warmup: float = 0.0, milestones=(0.5, 0.75),
              step_size: float = 0.3, gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate at progress ``p``."""
    p = min(max(p, 0.0), 1.0)
    if schedule == "onecycle":
        # Linear ramp over the first 10% (or the given warmup), then cosine to zero (Smith & Topin
        # 2017). 10% edged out 25% and 5% on Fashion-MNIST at 10 epochs (docs/time-to-accuracy.md).
        rise = warmup or 0.1
        if p < rise:
            return 0.04 + 0.96 * p / rise
        return 0.5 * (1 + math.cos(math.pi * (p - rise) / (1 - rise)))
    if warmup and p < warmup:
        return p / warmup
    if schedule in ("constant", "plateau"):   # plateau: the cuts are plateau_factor's, from the epochs' record
        return 1.0
    if schedule == "cosine":
        q = (p - warmup) / (1 - warmup) if warmup < 1 else 1.0
        return 0.5 * (1 + math.cos(math.pi * q))
    if schedule == "multistep":  # the paper: /10 at 50% and 75% of training
        return gamma ** bisect.bisect_right(sorted(milestones), p)
    if schedule == "step":
        return gamma ** math.floor(p / step_size + 1e-9)
    raise ValueError(f"unknown schedule {schedule!r}")


def plateau_factor(history: list[dict], gamma: float = 0.1) -> float:
    """The "plateau" schedule's multiplier after the finished epochs ``history``: ``gamma`` once for
    every epoch whose validation loss (training loss without a validation split) did not improve
    on the best so far -- CheXNet's "decay the learning rate by a factor of 10 each time the
    validation loss plateaus after an epoch" (Rajpurkar et al. 2017). A function of the journal
    alone, so a resumed run recomputes it exactly."""
    best, cuts = None, 0
    for record in history:
        value = record.get("val_loss", record["train_loss"])
        if best is None or value < best:
            best = value
        else:
            cuts += 1
    return gamma ** cuts
