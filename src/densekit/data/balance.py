"""Imbalanced classes: inverse-frequency loss weights, a class-balanced batch order, the warning.

``--class-weights auto`` gives class c the weight N / (K * n_c) (scikit-learn's "balanced"
``compute_class_weight``, King & Zeng 2001): every class then contributes equally to the
expected loss. ``--sampler balanced`` instead draws each epoch's N items with replacement so
that every class is equally likely, as a function of (seed, epoch) only, like the shuffled order
of ``loader.py``: a resumed run and every rank see the same order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError

IMBALANCE_WARN = 10   # ``data info`` warns when the largest class has more than this many times the smallest


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels, minlength=num_classes)


def class_weights(spec: str | None, labels: torch.Tensor, classes: list[str]) -> torch.Tensor | None:
    """Per-class loss weights (float32, K): None for none, "auto" for inverse frequency, or a YAML/JSON
    file holding either a list of K numbers or a mapping of every class name to its weight."""
    if spec is None:
        return None
    if spec == "auto":
        from sklearn.utils.class_weight import compute_class_weight
        counts = class_counts(labels, len(classes))
        empty = [c for c, n in zip(classes, counts.tolist()) if n == 0]
        if empty:
            raise DensekitError(f"--class-weights auto: class {empty[0]!r} has no training items; give weights "
                                "in a file (--class-weights FILE) or remove the class")
        w = compute_class_weight("balanced", classes=np.arange(len(classes)), y=labels.numpy())
        return torch.tensor(w, dtype=torch.float32)
    return _from_file(Path(spec), classes)


def _from_file(path: Path, classes: list[str]) -> torch.Tensor:
    import yaml
    if not path.is_file():
        raise DensekitError(f"--class-weights {path}: no such file; give `auto` or a YAML/JSON file of weights")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DensekitError(f"--class-weights {path}: not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    if isinstance(data, dict):
        unknown = [k for k in data if str(k) not in classes]
        missing = [c for c in classes if c not in {str(k) for k in data}]
        if unknown or missing:
            raise DensekitError(f"--class-weights {path}: " + (f"unknown class {unknown[0]!r}" if unknown else
                                f"no weight for class {missing[0]!r}") + f"; name each of the {len(classes)} classes once")
        data = [{str(k): v for k, v in data.items()}[c] for c in classes]
    if not isinstance(data, list) or len(data) != len(classes):
        raise DensekitError(f"--class-weights {path}: give a list of {len(classes)} numbers (one per class, in "
                            "label order) or a mapping class name: weight")
    # Positive: the loss is the weighted mean over the batch, and a batch of zero-weight classes
    # alone would divide by zero.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in data):
        raise DensekitError(f"--class-weights {path}: weights must be positive numbers (use a small one, "
                            "e.g. 0.01, to all but ignore a class)")
    return torch.tensor([float(v) for v in data], dtype=torch.float32)


def balanced_order(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """len(labels) item indices drawn with replacement, every class present equally likely: a
    uniform class, then a uniform item of it (no per-item weights, so any size of set works)."""
    n = len(labels)
    by_class = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    present = counts.nonzero().flatten()
    offsets = torch.cumsum(counts, 0) - counts
    pick = present[torch.randint(len(present), (n,), generator=generator)]
    within = (torch.rand(n, generator=generator, dtype=torch.float64) * counts[pick]).long()
    return by_class[offsets[pick] + within.clamp_max(counts[pick] - 1)]


def imbalance_note(counts: list[int], classes: list[str]) -> str | None:
    """A warning when the largest class has more than IMBALANCE_WARN times the items of the smallest."""
    if len(counts) < 2:
        return None
    small, large = min(counts), max(counts)
    if large <= IMBALANCE_WARN * small:
        return None
    ratio = "no items in" if small == 0 else f"{large / small:.0f}x the items of"
    return (f"warning: imbalanced classes: {classes[counts.index(large)]!r} has {ratio} "
            f"{classes[counts.index(small)]!r} ({large:,} vs {small:,}); consider --class-weights auto or "
            "--sampler balanced, and judge by per-class recall (densekit eval)")
