"""densekit: DenseNets (Huang et al., arXiv 1608.06993) to define, train, evaluate, predict and benchmark.

The names below load their modules on first use (PEP 562), so that ``densekit.runtime``, which
predicts with an exported ONNX model, can be imported where PyTorch is not installed.
"""
from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"


from .errors import DensekitError  # noqa: E402

# Public name -> the module that defines it.
_LAZY = {"TrainConfig": "config", "list_sources": "data", "load_dataset": "data", "train": "api",
         "Run": "engine", "evaluate": "engine", "save_weights": "engine", "DenseNet": "models", "create_model": "models",
         "list_models": "models", "export": "exporter", "explain": "engine.explain",
         "calibrate": "engine.calibration", "lr_find": "lr_range"}
# Subpackages that ``import densekit`` used to load, still reachable as attributes.
_SUBMODULES = {"allocator", "api", "bench", "cli", "compare", "config", "data", "engine", "errors", "exporter", "files",
               "limits", "serve", "sweep",
               "models", "runtime", "tracking"}

__all__ = ["DensekitError", "DenseNet", "Run", "TrainConfig", "calibrate", "create_model", "evaluate", "explain", "export",
           "list_models", "lr_find", "list_sources", "load_dataset", "predict", "save_weights", "train", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'densekit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


def predict(model: str | Path, images, top_k: int = 5, device: str = "auto", batch_size: int = 256,
            tta: str | None = None) -> list[dict]:
    """Top-k classes of each image: a list of ``{"file", "top_k": [{"label", "index", "prob"}]}``.

    ``model``: a run folder or checkpoint (PyTorch, ``engine.predict``) or an ``.onnx`` file
    written by ``densekit export`` (onnxruntime, ``runtime.predict``, no PyTorch needed); the
    output is the same. See ``engine.predict`` for the arguments."""
    if str(model).lower().endswith(".onnx"):
        from .runtime import predict as run
    else:
        from .engine import predict as run
    return run(model, images, top_k=top_k, device=device, batch_size=batch_size, tta=tta)
