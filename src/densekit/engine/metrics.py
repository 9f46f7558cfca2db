"""Per-class precision, recall and F1 from a confusion matrix (scikit-learn's definitions).

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
