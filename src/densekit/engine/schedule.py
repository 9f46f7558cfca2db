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
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        q = (p - warmup) / (1 - warmup) if warmup < 1 else 1.0
        return 0.5 * (1 + math.cos(math.pi * q))
    if schedule == "multistep":  # the paper: /10 at 50% and 75% of training
        return gamma ** bisect.bisect_right(sorted(milestones), p)
    if schedule == "step":
        return gamma ** math.floor(p / step_size + 1e-9)
    raise ValueError(f"unknown schedule {schedule!r}")
