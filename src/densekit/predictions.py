"""What a prediction is: logits in, the result schema out, for every route.

``Predictor`` is the one interface (``decode -> logits -> probabilities -> results``); its backends
(PyTorch in ``engine/infer.py``, onnxruntime in ``runtime/model.py``) only decode images and compute
logits, and everything after the logits happens here, in numpy, so ``densekit.predict``, the CLI, the
server and the torch-free runtime cannot drift apart. A feature that changes what a prediction is
(several labels, calibration, abstention) changes ``InputSpec`` and this module, nothing else.

Logits reaching here are the graph's: after the spec's test-time augmentation and divided by its
temperature (``engine/infer.py``'s ``InferenceModel`` does both, inside exported graphs too).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .decode import decode_all, read_image
from .errors import DensekitError
from .spec import InputSpec

# The out-of-distribution score every prediction carries (higher: less like the training data).
# "energy": -logsumexp of the raw logits (Liu et al. 2020); "max_logit": -max raw logit (Hendrycks
# et al. 2022). Measured side by side in docs/calibration.md; energy is the one chosen.
OOD_SCORES = ("energy", "max_logit")
OOD_SCORE = "energy"
REASONS = ("low_confidence", "out_of_distribution")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, the max subtracted first so exp cannot overflow."""
    z = logits.astype(np.float32) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def probabilities(logits: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Class probabilities (N, K) float32 of the graph's logits under ``spec``'s task."""
    if spec.task == "multilabel":
        return (1 / (1 + np.exp(-logits.astype(np.float32)))).astype(np.float32)
    return softmax(logits)


def ood_scores(logits: np.ndarray, temperature: float = 1.0, kind: str = OOD_SCORE) -> np.ndarray:
    """The OOD score (N,) float64 of the graph's logits: computed on the raw logits (the graph's
    times the temperature), which the energy score is defined on."""
    raw = np.asarray(logits, dtype=np.float64) * temperature
    top = raw.max(1)
    if kind == "max_logit":
        return -top
    return -(top + np.log(np.exp(raw - top[:, None]).sum(1)))


def check_abstention(spec: InputSpec, reject_below: float | None = None, reject_ood: bool = False):
    """Refuse, before any image is read, an abstention setting this model cannot act on."""
    if reject_below is not None and not (isinstance(reject_below, (int, float)) and 0 <= reject_below <= 1):
        raise DensekitError(f"--reject-below {reject_below!r}: give a probability in [0, 1] (0: reject nothing)")
    if (reject_ood or reject_below) and spec.task != "single-label":
        raise DensekitError("--reject-below/--reject-ood apply to single-label models; this one is multi-label")
    if reject_ood and spec.ood_threshold is None:
        raise DensekitError("--reject-ood: this model has no out-of-distribution threshold (it was trained "
                            "without a validation split); fit one with densekit calibrate RUN --split S")


def top_k(probs: np.ndarray, spec: InputSpec, k: int = 5) -> list[list[dict]]:
    """Each row as ``[{"label", "index", "prob"}]``, the k most probable first (ties: lower index)."""
    k = max(1, min(int(k), spec.num_classes))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": spec.classes[j], "index": int(j), "prob": float(row[j])} for j in idx]
            for row, idx in zip(probs, order)]


def results(logits: np.ndarray, spec: InputSpec, k: int = 5, reject_below: float | None = None,
            reject_ood: bool = False) -> list[dict]:
    """One result per row of ``logits``: the schema ``densekit predict --json`` prints, less "file".

    Single-label: ``{"label", "confidence", "ood_score", "top_k"}``; ``confidence`` is the top
    calibrated probability, ``ood_score`` the energy score (``ood_scores``). An image whose
    ``ood_score`` exceeds the spec's ``ood_threshold`` (with ``reject_ood``), or whose confidence is
    below ``reject_below`` (default: the spec's, set at training by ``--coverage``; 0 rejects
    nothing), is answered ``"label": None`` with ``"reason"`` "out_of_distribution" or
    "low_confidence", its top-k still listed.
    Multi-label: ``{"labels": [names at or above their threshold, most probable first], "scores":
    {name: prob} (every label, in class order), "top_k": [...]}``, thresholds from the spec (tuned on
    validation; 0.5 when it has none)."""
    probs = probabilities(logits, spec)
    rows = top_k(probs, spec, k)
    if spec.task == "multilabel":
        cut = np.asarray(spec.thresholds if spec.thresholds is not None else [0.5] * spec.num_classes, np.float32)
        out = []
        for row, best in zip(probs, rows):
            passed = np.flatnonzero(row >= cut)
            passed = passed[np.argsort(-row[passed], kind="stable")]
            out.append({"labels": [spec.classes[j] for j in passed],
                        "scores": {name: float(p) for name, p in zip(spec.classes, row)}, "top_k": best})
        return out
    below = spec.reject_below if reject_below is None else reject_below
    scores = ood_scores(logits, spec.temperature)
    out = []
    for row, p, s in zip(rows, probs.max(1), scores):
        r = {"label": row[0]["label"], "confidence": float(p), "ood_score": float(s), "top_k": row}
        if reject_ood and spec.ood_threshold is not None and s > spec.ood_threshold:
            r.update(label=None, reason="out_of_distribution")
        elif below and p < below:
            r.update(label=None, reason="low_confidence")
        out.append(r)
    return out


class Predictor:
    """A model that turns images into results. Subclasses set ``spec`` and implement ``logits``;
    ``decode`` may be widened (the PyTorch predictor also takes uint8 tensors)."""

    spec: InputSpec

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return self.spec.input_shape

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """float32 logits (N, K) of uint8 pixels (N, C, H, W) at ``input_shape``."""
        raise NotImplementedError

    def decode(self, image, name: str | None = None) -> np.ndarray:
        """A path, encoded bytes, a PIL image or a uint8 array (C, H, W) at the input shape -> the
        uint8 (C, H, W) array the model takes, exactly as training decoded its images."""
        if not isinstance(image, (np.ndarray, bytes, bytearray, memoryview, str, Path)) \
                and hasattr(image, "__array__") and not hasattr(image, "getbands"):
            image = np.asarray(image)   # e.g. a uint8 torch tensor, without importing torch
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or tuple(image.shape) != self.input_shape:
                raise DensekitError(f"image array: expected uint8 {self.input_shape}, got {image.dtype} "
                                    f"{tuple(image.shape)}")
            return image
        c, h, w = self.input_shape
        return read_image(image, channels=c, size=(h, w), name=name)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        return probabilities(self.logits(pixels), self.spec)

    def results(self, pixels: np.ndarray, k: int = 5, reject_below: float | None = None,
                reject_ood: bool = False) -> list[dict]:
        return results(self.logits(pixels), self.spec, k, reject_below, reject_ood)

    def predict(self, images, top_k: int = 5, batch_size: int = 256, reject_below: float | None = None,
                reject_ood: bool = False) -> list[dict]:
        """One result per image, in order: ``{"file", "label", "confidence", "ood_score", "top_k":
        [{"label", "index", "prob"}]}`` (``results``: rejections have ``"label": None`` and a
        ``"reason"``), or ``{"file", "error"}`` for an image that cannot be decoded. ``images``: paths
        of files or folders, PIL images, encoded bytes, or uint8 arrays (C, H, W) at the input shape."""
        check_abstention(self.spec, reject_below, reject_ood)
        out, batch = decode_all(images, self.decode)
        for i in range(0, len(batch), batch_size):
            chunk = batch[i:i + batch_size]
            for (slot, _), result in zip(chunk, self.results(np.stack([a for _, a in chunk]), top_k,
                                                             reject_below, reject_ood)):
                out[slot].update(result)
        return out
