"""``OnnxModel``: an exported ``.onnx`` with onnxruntime, numpy and Pillow only (no torch).

The graph densekit exports takes raw pixels (float32 N x C x H x W, values 0..255) and does the
rest itself: normalisation with the training mean/std, the checkpoint's test-time augmentation
(flip: the logits of the image and its mirror averaged) and the network with BatchNorm folded.
So this class only decodes images exactly as training did (``images.read_image``, the very code
training uses), batches them and turns logits into probabilities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DensekitError
from . import metadata
from .images import decode_all, read_image

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, the max subtracted first so exp cannot overflow."""
    z = logits.astype(np.float32) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class OnnxModel:
    """An exported densekit model.

    ``meta``: the file's metadata (``runtime.metadata``): ``classes``, ``mean``, ``std``,
    ``channels``, ``image_size`` [h, w], ``tta``, ``model`` {name, args}, ``metrics``, ``versions``...
    ``batch_size``: the graph's fixed batch, or None for a graph exported with ``--dynamic-batch``.
    One instance may be shared by threads: onnxruntime's ``InferenceSession.run`` is thread-safe.
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None):
        """Load ``path``. ``device``: "cpu", "cuda" or "auto" (CUDA when onnxruntime has it);
        ``threads``: onnxruntime's intra-op threads (None: its default, one per core)."""
        try:
            import onnxruntime as ort
        except ImportError:
            from ..extras import missing_extra
            raise missing_extra("an .onnx model", "runtime", "onnxruntime") from None
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
        inp = self.session.get_inputs()[0]
        self.input_name, self.output_name = inp.name, self.session.get_outputs()[0].name
        self.batch_size = inp.shape[0] if isinstance(inp.shape[0], int) else None

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.meta["channels"], *self.meta["image_size"])

    def preprocess(self, image, name: str | None = None) -> np.ndarray:
        """A path, encoded bytes or a PIL image to uint8 (C, H, W) at the model's channels and size,
        exactly as training decoded its images; ``DensekitError`` for anything unreadable."""
        c, h, w = self.input_shape
        return read_image(image, channels=c, size=(h, w), name=name)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """float32 logits (N, classes) of a batch of raw pixels, uint8 or float (N, C, H, W), 0..255,
        after the file's test-time augmentation. A graph with a fixed batch runs in chunks of it."""
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.input_shape:
            raise DensekitError(f"expected pixels of shape (N, {', '.join(map(str, self.input_shape))}), "
                                f"got {tuple(pixels.shape)}; decode images with preprocess()")
        x = pixels.astype(np.float32, copy=False)
        if self.batch_size is None or len(x) == self.batch_size:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        n, b = len(x), self.batch_size
        padded = np.concatenate([x, np.zeros((-n % b, *x.shape[1:]), np.float32)]) if n % b else x
        out = [self.session.run([self.output_name], {self.input_name: padded[i:i + b]})[0]
               for i in range(0, len(padded), b)]
        return np.concatenate(out)[:n]

    def predict_arrays(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes), float32, of a uint8 batch (N, C, H, W) (see ``logits``)."""
        return softmax(self.logits(pixels))

    def format_top_k(self, probs: np.ndarray, top_k: int = 5) -> list[list[dict]]:
        """Each row of ``probs`` as ``[{"label", "index", "prob"}]``, the k most probable first."""
        k = max(1, min(int(top_k), len(self.classes)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[{"label": self.classes[j], "index": int(j), "prob": float(row[j])} for j in idx]
                for row, idx in zip(probs, order)]

    def predict(self, images, top_k: int = 5, batch_size: int = 256) -> list[dict]:
        """Top-k classes of each image, the schema of ``densekit.predict``: a list of
        ``{"file", "top_k": [{"label", "index", "prob"}]}``; an image that cannot be decoded gets
        ``{"file", "error"}``. ``images``: paths of files or folders, PIL images, encoded bytes,
        or uint8 arrays (C, H, W) already at the model's input shape (anything with ``__array__``,
        such as a uint8 torch tensor, counts as an array)."""
        def decode(item, name):
            if not isinstance(item, (np.ndarray, Image.Image, bytes, bytearray, memoryview, str, Path)) \
                    and hasattr(item, "__array__"):
                item = np.asarray(item)  # e.g. a uint8 torch tensor, without importing torch
            if not isinstance(item, np.ndarray):
                return self.preprocess(item, name)
            if item.dtype != np.uint8 or tuple(item.shape) != self.input_shape:
                raise DensekitError(f"image array: expected uint8 {self.input_shape}, got {item.dtype} "
                                    f"{tuple(item.shape)}")
            return item
        results, batch = decode_all(images, decode)
        for i in range(0, len(batch), batch_size):
            chunk = batch[i:i + batch_size]
            probs = self.predict_arrays(np.stack([a for _, a in chunk]))
            for (slot, _), top in zip(chunk, self.format_top_k(probs, top_k)):
                results[slot]["top_k"] = top
        return results
