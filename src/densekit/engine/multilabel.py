"""Evaluation of several labels per image: one pass, the loss, and scikit-learn's figures.

``run_eval`` (``engine/evaluate.py``) hands multi-label models (``EvalOptions.task``) to
``evaluate_multilabel``: the same loader, sharding and test-time augmentation, a sigmoid per label
instead of the softmax, and the figures of ``metrics.multilabel_metrics`` over the whole split,
at given per-label thresholds (those tuned on validation, ``metrics.tune_thresholds``).
"""
from __future__ import annotations

import torch

from .. import data as D
from . import distributed
from .losses import multilabel_loss
from .metrics import multilabel_metrics, tune_thresholds
from .precision import autocast

FIGURES = ("map", "auroc", "micro_f1", "macro_f1", "exact_match", "hamming_loss")


@torch.no_grad()
def evaluate_multilabel(model, ds, opts, thresholds=None, features: int = 0, label_map=None, progress=None) -> dict:
    """``{"loss", "count", *FIGURES, "per_label", "logits", "labels"}`` of ``model`` over ``ds``
    (``features``, ``tta`` as ``run_eval``'s). ``loss`` is the mean binary cross-entropy over the
    known entries; ``labels`` (N, K) float with NaN unknown, ``logits`` averaged over the views.
    Under DDP every rank takes whole batches in turn and the outputs are gathered on every rank."""
    from .infer import tta_logits
    was_training = model.training
    model.eval()
    rank, world_size = distributed.active_world()
    loader = D.Loader(ds, opts.batch_size, device=opts.device, workers=opts.workers, rank=rank,
                      world_size=world_size, shard="deal")
    sums = torch.zeros(2, dtype=torch.float64, device=opts.device)   # loss over known entries, their count
    kept, seen = [], 0
    for i, (x, y) in zip(range(rank, len(loader), world_size), loader.epoch()):
        if label_map is not None:   # the dataset's columns in the model's order
            y = y.new_empty(y.shape).index_copy_(1, label_map.to(y.device), y)
        with autocast(opts.device, opts.dtype):
            logits, _, pre = tta_logits(model, opts.prepare(x), opts.tta, features=i * opts.batch_size < features)
        known = (~y.isnan()).sum()
        sums += torch.stack([multilabel_loss(logits.float(), y).double() * known, known.double()])
        feats = pre[:features - i * opts.batch_size].float().cpu() if pre is not None else None
        kept.append((i, logits.float().cpu(), y.cpu(), feats))
        if progress is not None:
            seen += len(y)
            progress(seen, -(-len(ds) // world_size) if world_size > 1 else len(ds))
    model.train(was_training)
    distributed.all_reduce_(sums)
    kept = sorted(distributed.gather_objects(kept), key=lambda b: b[0])
    k = len(opts.classes)
    logits = torch.cat([b[1] for b in kept]) if kept else torch.zeros(0, k)
    labels = torch.cat([b[2] for b in kept]) if kept else torch.zeros(0, k)
    figures = multilabel_metrics(logits.sigmoid().numpy(), labels.numpy(), list(opts.classes), thresholds)
    out = {"loss": sums[0].item() / max(sums[1].item(), 1), "count": len(ds), **figures,
           "logits": logits, "labels": labels}
    if opts.tta != "none":
        out["tta"] = opts.tta
    if features:
        feats = [b[3] for b in kept if b[3] is not None]
        out["features"] = torch.cat(feats) if feats else torch.zeros(0)
    return out


def thresholds_of(result: dict) -> list[float]:
    """Per-label thresholds maximising F1 on an evaluation's outputs (a validation pass)."""
    return tune_thresholds(result["logits"].sigmoid().numpy(), result["labels"].numpy())


def summary_figures(result: dict, prefix: str) -> dict:
    """``{prefix + figure: value}`` for the run's summary or epoch record."""
    return {f"{prefix}{name}": result[name] for name in FIGURES}
