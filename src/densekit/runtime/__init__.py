"""Prediction with an exported ``.onnx`` model and no PyTorch: numpy, Pillow and onnxruntime only.

    from densekit.runtime import OnnxModel
    model = OnnxModel("model.onnx")
    model.classes, model.meta["metrics"]
    model.predict(["shoe.png"], top_k=3)   # [{"file", "top_k": [{"label", "index", "prob"}]}]
    OpenVinoModel("model.xml")             # the same for an OpenVINO IR (the openvino extra)

Importing this package imports no torch (a test checks it in a process where torch cannot be
imported); a deployment needs densekit without its dependencies (``pip install --no-deps`` of the
clone or of its wheel) plus the ``runtime`` extra's packages (numpy, pillow, onnxruntime).
"""
from __future__ import annotations

from pathlib import Path

from ..decode import EXTENSIONS, expand_images, read_image
from .model import OnnxModel, softmax
from .openvino import OpenVinoModel

__all__ = ["OnnxModel", "OpenVinoModel", "predict", "read_image", "softmax", "EXTENSIONS", "expand_images"]


def predict(model: str | Path, images, top_k: int = 5, device: str = "auto", batch_size: int = 256,
            tta: str | None = None) -> list[dict]:
    """``densekit.predict`` for an ``.onnx`` file (or an OpenVINO ``.xml``): the same arguments and
    output. Test-time augmentation is part of the exported graph, so ``tta`` may only name the file's own."""
    cls = OpenVinoModel if str(model).lower().endswith(".xml") else OnnxModel
    return cls(model, device=device, tta=tta).predict(images, top_k=top_k, batch_size=batch_size)
