"""PNG plots of a multi-label run, in ``RUN/plots/`` (``plots.PlotsCallback`` calls ``plot_multilabel``):

    roc.png         per-label ROC curves of the test split, AUROC in the legend
    pr.png          per-label precision-recall curves, average precision in the legend, the tuned
                    threshold's operating point marked
    labels.png      how often each label is present in train and test (the known entries)
    worst.png       the test images with the highest loss, true and predicted label sets
    samples.png     the first test images with their label sets (``predictions.json`` holds both lists)
"""
from __future__ import annotations

import numpy as np
import torch

from .plots import SAMPLES, WORST, WRONG, _save, plt
from .predictions import image_batch

MAX_CURVES = 20   # beyond that a legend is unreadable: the most frequent labels are drawn


def _drawn(labels: np.ndarray) -> list[int]:
    counts = np.nansum(labels, 0)
    return sorted(np.argsort(-counts, kind="stable")[:MAX_CURVES].tolist())


def plot_label_curves(probs: np.ndarray, labels: np.ndarray, classes: list[str], per_label: dict, roc_path, pr_path):
    """ROC and precision-recall curves per label (scikit-learn's), over each label's known entries."""
    from sklearn.metrics import precision_recall_curve, roc_curve
    fig_roc, ax_roc = plt.subplots(figsize=(6, 5), layout="constrained")
    fig_pr, ax_pr = plt.subplots(figsize=(6, 5), layout="constrained")
    for j in _drawn(labels):
        keep = ~np.isnan(labels[:, j])
        y, p, name, m = labels[keep, j], probs[keep, j], classes[j], per_label[classes[j]]
        if m["auroc"] is None:   # one class only among the known entries: no curve
            continue
        fpr, tpr, _ = roc_curve(y, p)
        line, = ax_roc.plot(fpr, tpr, label=f"{name} {m['auroc']:.3f}")
        prec, rec, _ = precision_recall_curve(y, p)
        ax_pr.plot(rec, prec, color=line.get_color(), label=f"{name} {m['ap']:.3f}")
        ax_pr.plot([m["recall"]], [m["precision"]], "o", color=line.get_color())
    ax_roc.plot([0, 1], [0, 1], ":", color="grey")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="test ROC per label (AUROC)")
    ax_pr.set(xlabel="recall", ylabel="precision", title="test precision-recall per label (AP; dot: threshold)")
    for ax, fig, path in ((ax_roc, fig_roc, roc_path), (ax_pr, fig_pr, pr_path)):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        _save(fig, path)


def plot_label_frequency(splits: dict, classes: list[str], path):
    """Bars of the share of known entries that are present, per label, one colour per split."""
    n = len(classes)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * n + 2), 3.5), layout="constrained")
    width = 0.8 / max(len(splits), 1)
    for i, (split, labels) in enumerate(splits.items()):
        known = (~np.isnan(labels)).sum(0).clip(1)
        ax.bar(np.arange(n) + i * width, np.nansum(labels, 0) / known, width, label=f"{split} ({len(labels):,})")
    ax.set_xticks(np.arange(n) + width * (len(splits) - 1) / 2, classes, rotation=90 if n > 8 else 0)
    ax.set(ylabel="present (share of known)", title="label frequency")
    ax.legend(fontsize=8)
    _save(fig, path)


def _names(row, classes) -> str:
    return "|".join(c for c, v in zip(classes, row) if v) or "none"


def plot_label_sets(images: torch.Tensor, true: list[str], pred: list[str], path, title: str):
    """A grid of images titled with their true and predicted label sets; wrong sets in red."""
    cols = min(6, max(len(images), 1))
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 2.3 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p in zip(axes.flat, images, true, pred):
        ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray" if img.shape[0] == 1 else None,
                  vmin=0, vmax=255)
        ax.set_title(f"true {t}\npred {p}", fontsize=6, color=WRONG if t != p else "black")
    fig.suptitle(f"{title} (wrong sets in red)", fontsize=9)
    _save(fig, path)


def plot_multilabel(ctx, test: dict, plots):
    """Every multi-label plot of the final test pass; lists the worst and sample images in
    plots/predictions.json for the report."""
    classes = ctx.classes
    probs, labels = test["logits"].sigmoid().numpy(), test["labels"].numpy()
    plot_label_curves(probs, labels, classes, test["per_label"], plots / "roc.png", plots / "pr.png")
    plot_label_frequency({"train": ctx.train_ds.labels.numpy(), "test": labels}, classes, plots / "labels.png")
    cut = np.array([test["per_label"][c]["threshold"] for c in classes])
    pred = probs >= cut
    known = ~np.isnan(labels)
    # the per-image loss: binary cross-entropy over the known entries
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = np.where(known, -(np.nan_to_num(labels) * np.log(p) + (1 - np.nan_to_num(labels)) * np.log(1 - p)), 0)
    loss = loss.sum(1) / known.sum(1).clip(1)
    listed = {}
    for kind, picks, title in (("worst", np.argsort(-loss, kind="stable")[:WORST].tolist(), "highest-loss test images"),
                               ("samples", list(range(min(SAMPLES, len(labels)))), "sample test predictions")):
        rows = [{"index": i, "true": _names(labels[i] == 1, classes), "pred": _names(pred[i], classes),
                 "loss": float(loss[i])} for i in picks]
        plot_label_sets(image_batch(ctx.test_ds, picks), [r["true"] for r in rows], [r["pred"] for r in rows],
                        plots / f"{kind}.png", title)
        listed[kind] = rows
    ctx.run.write_json("plots/predictions.json", listed)
