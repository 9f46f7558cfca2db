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
         "list_models": "models", "export": "workflows.export", "explain": "engine.explain",
         "calibrate": "engine.calibration", "lr_find": "workflows.lr_find", "verify": "workflows.verify"}
# Subpackages that ``import densekit`` used to load, still reachable as attributes.
_SUBMODULES = {"allocator", "api", "cli", "config", "data", "engine", "errors", "files", "workflows",
               "limits", "serve",
               "models", "runtime", "tracking"}

__all__ = ["DensekitError", "DenseNet", "Run", "TrainConfig", "calibrate", "create_model", "evaluate", "explain", "export",
           "list_models", "lr_find", "list_sources", "load_dataset", "load_predictor", "predict", "save_weights",
           "train", "verify", "__version__"]


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


def load_predictor(model: str | Path, device: str = "auto", tta: str | None = None, threads: int | None = None):
    """The ``predictions.Predictor`` of ``model``, loaded once: an ``.onnx`` file written by
    ``densekit export`` runs on onnxruntime (``runtime.OnnxModel``, no PyTorch needed), a run folder
    or checkpoint on PyTorch (``engine.infer.TorchPredictor``). ``tta``: None for the model's own
    test-time augmentation (an ONNX graph holds its own and refuses another); ``threads``: intra-op
    threads (None: the library's default)."""
    if str(model).lower().endswith(".onnx"):
        from .runtime import OnnxModel
        return OnnxModel(model, device=device, threads=threads, tta=tta)
    if str(model).lower().endswith(".xml"):   # an OpenVINO IR (densekit[openvino])
        from .runtime import OpenVinoModel
        return OpenVinoModel(model, device=device, threads=threads, tta=tta)
    from .engine.infer import TorchPredictor
    return TorchPredictor(model, device=device, tta=tta, threads=threads)


def predict(model: str | Path, images, top_k: int = 5, device: str = "auto", batch_size: int = 256,
            tta: str | None = None, reject_below: float | None = None, reject_ood: bool = False) -> list[dict]:
    """Top-k classes of each image: a list of ``{"file", "top_k": [{"label", "index", "prob"}]}``.

    ``model``: a run folder or checkpoint (PyTorch) or an ``.onnx`` file written by ``densekit
    export`` (onnxruntime, no PyTorch needed): see ``load_predictor``; the output is the same.
    ``images``: paths of files or folders, PIL images, encoded bytes, or uint8 arrays/tensors
    C x H x W; a file that cannot be decoded gets ``{"file", "error"}``. ``tta``: None applies the
    model's own test-time augmentation. Each result also has ``label``, ``confidence`` (calibrated)
    and ``ood_score``; ``reject_below`` (default: the run's ``--coverage`` threshold) and
    ``reject_ood`` answer ``"label": None`` with a ``"reason"`` (``predictions.results``). To predict
    many times, ``load_predictor`` once and call its ``predict``."""
    return load_predictor(model, device=device, tta=tta).predict(images, top_k=top_k, batch_size=batch_size,
                                                                 reject_below=reject_below, reject_ood=reject_ood)
