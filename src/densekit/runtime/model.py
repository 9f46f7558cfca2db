"""``OnnxModel``: an exported ``.onnx`` with onnxruntime, numpy and Pillow only (no torch).

The graph densekit exports (``engine.infer.InferenceModel``) takes raw pixels (float32 N x C x H x W,
values 0..255) and does the rest itself: normalisation with the training mean/std, the checkpoint's
test-time augmentation (flip: the logits of the image and its mirror averaged), the calibration
temperature and the network with BatchNorm folded. So this class is a ``predictions.Predictor``
that only runs the graph: decoding (``densekit.decode``, the very code training uses), batching,
probabilities and the result schema are the base class's, the same for every backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DensekitError
from ..predictions import Predictor, softmax  # noqa: F401  (softmax: runtime's public name)
from ..spec import InputSpec
from . import metadata

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class OnnxModel(Predictor):
    """An exported densekit model.

    ``spec``: what the file takes and how its logits are read (``InputSpec.from_metadata``: the
    metadata checked field by field and against the graph's input and output shapes). ``meta``: the
    file's whole metadata (``runtime.metadata``): ``model`` {name, args}, ``metrics``, ``versions``...
    ``batch_size``: the graph's fixed batch, or None for a graph exported with ``--dynamic-batch``.
    One instance may be shared by threads: onnxruntime's ``InferenceSession.run`` is thread-safe.
    """

    backend = "onnx"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, tta: str | None = None):
        """Load ``path``. ``device``: "cpu", "cuda" or "auto" (CUDA when onnxruntime has it);
        ``threads``: onnxruntime's intra-op threads (None: its default, one per core); ``tta``: the
        test-time augmentation asked for (None: the file's own; another is refused, as it is in
        the graph)."""
        import onnxruntime as ort
        self.path = Path(path)
        if not self.path.is_file():
            raise DensekitError(f"{self.path} not found; give an .onnx file written by `densekit export`")
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        if device not in PROVIDERS:
            raise DensekitError(f"device {device!r} is not available to the ONNX runtime: use cpu, cuda or auto")
        if PROVIDERS[device][0] not in ort.get_available_providers():
            raise DensekitError(f"onnxruntime here has no {PROVIDERS[device][0]}; use --device cpu")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=PROVIDERS[device])
        except Exception as err:  # onnxruntime raises its own types for foreign or damaged files
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise DensekitError(f"{self.path} is not a loadable ONNX model ({first}); export it again") from None
        self.meta = metadata.from_strings(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.device = device
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.spec = InputSpec.from_metadata(self.meta, str(self.path), input_shape=tuple(inp.shape[1:]),
                                            num_outputs=out.shape[-1] if len(out.shape) == 2 else None)
        if tta is not None and tta != self.spec.tta:
            raise DensekitError(f"{self.path} applies tta={self.spec.tta} inside its graph; export again with "
                                f"--tta {tta} to predict with {tta}")
        self.input_name, self.output_name = inp.name, out.name
        self.batch_size = inp.shape[0] if isinstance(inp.shape[0], int) else None

    def preprocess(self, image, name: str | None = None) -> np.ndarray:
        """``decode``'s older name: a path, encoded bytes or a PIL image to uint8 (C, H, W)."""
        return self.decode(image, name)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """float32 logits (N, classes) of a batch of raw pixels, uint8 or float (N, C, H, W), 0..255,
        after the file's test-time augmentation. A graph with a fixed batch runs in chunks of it."""
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.input_shape:
            raise DensekitError(f"expected pixels of shape (N, {', '.join(map(str, self.input_shape))}), "
                                f"got {tuple(pixels.shape)}; decode images with decode()")
        x = pixels.astype(np.float32, copy=False)
        if self.batch_size is None or len(x) == self.batch_size:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        n, b = len(x), self.batch_size
        padded = np.concatenate([x, np.zeros((-n % b, *x.shape[1:]), np.float32)]) if n % b else x
        out = [self.session.run([self.output_name], {self.input_name: padded[i:i + b]})[0]
               for i in range(0, len(padded), b)]
        return np.concatenate(out)[:n]

    def predict_arrays(self, pixels: np.ndarray) -> np.ndarray:
        """``probabilities``' older name: (N, classes) float32 of a uint8 batch (N, C, H, W)."""
        return self.probabilities(pixels)
