"""Losses of several labels per image: binary cross-entropy on logits, and the asymmetric loss.

Targets are (N, K) float rows (``data/dataset.py``): 1 present, 0 absent, NaN unknown, or soft
values after mixup/cutmix. Every entry is an independent yes/no question (a sigmoid per label,
as CheXNet, Rajpurkar et al. 2017); unknown entries weigh nothing, and the loss is the mean over
the known ones, so its scale does not depend on how many entries a batch leaves unknown.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DensekitError

LOSSES = ("bce", "asl")

# Asymmetric loss defaults of Ridnik et al. 2021 (arXiv 2009.14119), Table 9 / their reference
# training: no focusing on positives, gamma 4 on negatives, negatives below probability 0.05 dropped.
ASL_GAMMA_POS, ASL_GAMMA_NEG, ASL_CLIP = 0.0, 4.0, 0.05


def asymmetric_loss(logits: torch.Tensor, target: torch.Tensor, gamma_pos: float = ASL_GAMMA_POS,
                    gamma_neg: float = ASL_GAMMA_NEG, clip: float = ASL_CLIP,
                    pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Element-wise ASL: ``-y (1-p)^g+ log p - (1-y) p_m^g- log(1-p_m)``, ``p_m = max(p - clip, 0)``.

    The many easy negatives of a multi-label set (most labels absent in most images) are both
    down-weighted (``gamma_neg``) and, below ``clip``, discarded outright (the probability shift),
    while positives keep plain cross-entropy. ``pos_weight`` (K,) multiplies the positive term."""
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    if clip > 0:
        p_m = (p - clip).clamp_min(0)
        log_not = torch.log((1 - p_m).clamp_min(1e-8))
    else:
        p_m, log_not = p, F.logsigmoid(-logits)
    pos = target * (1 - p).pow(gamma_pos) * log_p if gamma_pos else target * log_p
    if pos_weight is not None:
        pos = pos * pos_weight
    neg = (1 - target) * p_m.pow(gamma_neg) * log_not
    return -(pos + neg)


def multilabel_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce",
                    pos_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """The mean loss over the known entries of ``target`` (NaN: unknown). ``pos_weight`` (K,)
    multiplies each label's positive term (``torch.nn.BCEWithLogitsLoss``'s meaning);
    ``label_smoothing`` pulls targets towards 1/2 (``y (1 - e) + e / 2``)."""
    known = ~target.isnan()
    y = torch.where(known, target, torch.zeros_like(target))
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / 2
    if kind == "bce":
        loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    else:
        loss = asymmetric_loss(logits, y, pos_weight=pos_weight)
    return (loss * known).sum() / known.sum().clamp_min(1)


def pos_weights(labels: torch.Tensor, classes: list[str]) -> torch.Tensor:
    """``--pos-weight auto``: negatives / positives per label over the known training entries, so
    a rare finding's few positives weigh as much in the loss as its many negatives."""
    known = ~labels.isnan()
    positives = ((labels == 1) & known).sum(0).double()
    negatives = ((labels == 0) & known).sum(0).double()
    empty = [c for c, n in zip(classes, positives.tolist()) if n == 0]
    if empty:
        raise DensekitError(f"--pos-weight auto: label {empty[0]!r} has no positive training items; "
                            "drop --pos-weight or the label")
    return (negatives / positives).float()


def label_accuracy_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed over the images: the fraction of each image's known labels decided right at
    probability 0.5 (logit 0), soft targets (mixup) read as present from 0.5 up."""
    known = ~target.isnan()
    right = ((logits >= 0) == (target >= 0.5)) & known
    return (right.sum(1) / known.sum(1).clamp_min(1)).sum()
