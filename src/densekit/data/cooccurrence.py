"""What ``data info`` says of a multi-label set: how often each label occurs, how many are unknown,
how many labels an image has, and which labels occur together. Past ``TOP`` labels only the most
frequent ``TOP`` are paired, so the summary stays a screenful (and K x K counts stay small) for
sets with thousands of labels."""
from __future__ import annotations

import torch

from .dataset import ImageDataset

TOP = 50


def label_counts(ds: ImageDataset) -> dict:
    """Per label: images where it is present and where it is unknown (NaN); images with none; mean labels."""
    y = ds.labels
    present = (y == 1).sum(0)
    per_image = (y == 1).sum(1)
    return {"count": len(ds), "per_label": present.tolist(), "unknown": torch.isnan(y).sum(0).tolist(),
            "no_label": int((per_image == 0).sum()),
            "labels_per_image": round(float(per_image.float().mean()), 3) if len(ds) else 0.0}


def cooccurrence(ds: ImageDataset, top: int = TOP) -> dict:
    """Images holding both labels, over the ``top`` most frequent labels: the full matrix (as lists,
    in ``labels`` order) and the pairs most often seen together, with the share of the first
    label's images that also hold the second."""
    y = (ds.labels == 1).float()
    present = y.sum(0)
    keep = torch.argsort(present, descending=True, stable=True)[:top]
    sub = y[:, keep]
    both = (sub.T @ sub).round().long()
    names = [ds.classes[i] for i in keep.tolist()]
    pairs = []
    rows, cols = torch.triu_indices(len(keep), len(keep), 1)
    counts = both[rows, cols]
    for j in torch.argsort(counts, descending=True, stable=True)[:top].tolist():
        a, b, n = int(rows[j]), int(cols[j]), int(counts[j])
        if n == 0:
            break
        pairs.append({"labels": [names[a], names[b]], "count": n, "share": round(n / max(int(both[a, a]), 1), 4)})
    return {"labels": names, "matrix": both.tolist(), "pairs": pairs, "summarised": len(ds.classes) > top}
