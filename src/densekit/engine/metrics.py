"""Per-class precision, recall and F1 from a confusion matrix, and the multi-label figures (mAP, AUROC,
F1, exact match, Hamming loss, tuned thresholds); scikit-learn's definitions throughout.

Beside accuracy these say what accuracy hides on imbalanced classes: a class the model never
predicts has recall 0 however high the top-1. Computed by
``sklearn.metrics.precision_recall_fscore_support`` with each (true, predicted) cell of the
confusion matrix as one weighted sample, so nothing is re-derived here and no per-image
predictions need keeping; a class with no predictions (or no items) scores 0, not NaN.
"""
from __future__ import annotations

import numpy as np


def class_metrics(confusion, classes: list[str]) -> dict:
    """``{"per_class": {name: {"precision", "recall", "f1", "support"}}, "macro": {"precision", "recall",
    "f1"}}`` from ``confusion`` (K x K counts, rows the true class, columns the predicted one)."""
    from sklearn.metrics import precision_recall_fscore_support
    m = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    true, pred = np.divmod(np.arange(k * k), k)
    kw = dict(labels=np.arange(k), sample_weight=m.reshape(-1), zero_division=0)
    p, r, f, _ = precision_recall_fscore_support(true, pred, average=None, **kw)
    mp, mr, mf, _ = precision_recall_fscore_support(true, pred, average="macro", **kw)
    support = m.sum(1)
    return {"per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(support[i])} for i, c in enumerate(classes)},
            "macro": {"precision": float(mp), "recall": float(mr), "f1": float(mf)}}


# -- several labels per image ----------------------------------------------------------------------
# Targets are (N, K) with 1 present, 0 absent and NaN unknown; every figure is computed over the
# known entries only (CheXpert's "U-Ignore"), so an unknown finding neither helps nor hurts.

def _known(targets: np.ndarray, j: int):
    keep = ~np.isnan(targets[:, j])
    return keep, targets[keep, j].astype(np.int64)


def tune_thresholds(probs, targets) -> list[float]:
    """Per-label decision thresholds maximising F1 on (validation) ``probs`` and ``targets``.

    The cut is placed halfway between the lowest score kept positive and the next lower score,
    not on a validation score itself, so it is not tuned to the last digit of one split. A label
    with no known positive (F1 undefined) keeps 0.5."""
    from sklearn.metrics import precision_recall_curve
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    out = []
    for j in range(probs.shape[1]):
        keep, y = _known(targets, j)
        if not y.any():
            out.append(0.5)
            continue
        p, r, t = precision_recall_curve(y, probs[keep, j])
        f1 = 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12)
        best = int(np.argmax(f1))            # t ascends: the highest F1 at the lowest such cut
        below = t[best - 1] if best > 0 else 0.0
        out.append(float((t[best] + below) / 2))
    return out


def multilabel_metrics(probs, targets, classes: list[str], thresholds=None) -> dict:
    """scikit-learn's multi-label figures of probabilities ``probs`` (N, K) against ``targets``:
    ``{"map", "auroc", "micro_f1", "macro_f1", "exact_match", "hamming_loss", "per_label": {name:
    {"auroc", "ap", "precision", "recall", "f1", "threshold", "positives", "known"}}}``.

    mAP and AUROC are the means of the per-label average precision and ROC AUC over the labels
    that have both a known positive and a known negative (the others are None: undefined);
    decisions are ``prob >= threshold`` per label (0.5 when none are given). Micro F1 and the
    Hamming loss pool every known entry; an image is an exact match when all of its known
    entries are right."""
    from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, hamming_loss,
                                 precision_recall_fscore_support, roc_auc_score)
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    k = probs.shape[1]
    cut = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pred = (probs >= cut).astype(np.int64)
    known = ~np.isnan(targets)
    per_label, aurocs, aps = {}, [], []
    for j, name in enumerate(classes):
        keep, y = _known(targets, j)
        both = 0 < y.sum() < len(y)
        auroc = float(roc_auc_score(y, probs[keep, j])) if both else None
        ap = float(average_precision_score(y, probs[keep, j])) if both else None
        p, r, f, _ = precision_recall_fscore_support(y, pred[keep, j], average="binary", zero_division=0) \
            if len(y) else (0.0, 0.0, 0.0, None)
        per_label[name] = {"auroc": auroc, "ap": ap, "precision": float(p), "recall": float(r), "f1": float(f),
                           "threshold": float(cut[j]), "positives": int(y.sum()), "known": int(len(y))}
        if both:
            aurocs.append(auroc)
            aps.append(ap)
    flat_true, flat_pred = targets[known].astype(np.int64), pred[known]
    # An unknown entry counts as right for the exact match: it is set to the prediction.
    filled = np.where(known, np.nan_to_num(targets), pred).astype(np.int64)
    return {"map": float(np.mean(aps)) if aps else None, "auroc": float(np.mean(aurocs)) if aurocs else None,
            "micro_f1": float(f1_score(flat_true, flat_pred, zero_division=0)) if len(flat_true) else 0.0,
            "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])),
            "exact_match": float(accuracy_score(filled, pred)) if len(pred) else 0.0,
            "hamming_loss": float(hamming_loss(flat_true, flat_pred)) if len(flat_true) else 0.0,
            "per_label": per_label}
