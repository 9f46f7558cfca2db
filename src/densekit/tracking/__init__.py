"""Run tracking: the callbacks a training run gets from its config (TensorBoard, plots, MLflow), and
the readers over finished run folders (``runs`` table, HTML ``report``)."""
from __future__ import annotations


def callbacks_for(cfg, rank: int = 0) -> list:
    """The tracking callbacks ``cfg`` asks for, for rank 0 only."""
    if rank != 0:
        return []
    from .metrics_csv import MetricsCSVCallback
    callbacks = [MetricsCSVCallback()]     # cheap, and readable without any of the packages below
    if "tensorboard" in cfg.trackers():
        from .tensorboard import TensorBoardCallback
        callbacks.append(TensorBoardCallback())
    if cfg.plots:
        from .plots import PlotsCallback
        callbacks.append(PlotsCallback())
    if "mlflow" in cfg.trackers():         # last: it uploads the plots and files the others wrote
        from .mlflow import MLflowCallback
        callbacks.append(MLflowCallback())
    return callbacks
