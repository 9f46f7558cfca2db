"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with the package): tiny, offline,
for tests. Pixel values 0-16 are scaled to 0-255; a fixed 80/20 split gives train and test."""
from __future__ import annotations

import numpy as np
import torch

from .dataset import MissingSplit, TensorImageDataset


def load_digits(split: str) -> TensorImageDataset:
    from sklearn.datasets import load_digits as sk_digits
    if split not in ("train", "test"):
        raise MissingSplit(f"digits has splits train and test, not {split!r}")
    d = sk_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]
    order = np.random.default_rng(0).permutation(len(images))  # fixed: the split never changes
    cut = int(0.8 * len(images))
    idx = order[:cut] if split == "train" else order[cut:]
    return TensorImageDataset(torch.from_numpy(images[idx]), torch.from_numpy(d.target[idx].astype(np.int64)),
                              [str(i) for i in range(10)], name="digits")
