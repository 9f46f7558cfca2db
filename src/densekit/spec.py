"""``InputSpec``: what a trained model takes and how its outputs are read, in one object.

The same fields travel from the checkpoint (``data`` and ``precision``) into every exported file's
metadata and back into every predictor (PyTorch, onnxruntime, ...), so a prediction means the same
thing on every route. It imports neither torch nor the runtime: the torch-free runtime, the server,
export and training all read it. ``from_metadata`` is the one place where a file's claims are
checked (types, ranges, ``limits.py``, agreement with the graph's input and output shapes) before
anything is allocated from them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .errors import DensekitError
from .limits import MAX_CLASSES, MAX_IMAGE_PIXELS

TTA_VIEWS = ("none", "flip")
TASKS = ("single-label", "multilabel")
QUANTIZATIONS = (None, "bf16", "int8")   # how an exported file computes: None = float32
GATE_FIGURES = ("top1_float", "top1", "top1_drop", "worst_class_drop", "max_drop", "max_class_drop",
                "agreement")
MAX_LABEL_CHARS = 1_000  # one class name; a file that claims more is not a densekit export


@dataclass(frozen=True)
class InputSpec:
    """Raw pixels in (uint8 C x H x W, decoded by ``densekit.decode``), logits out, read as ``task``.

    ``mean``/``std``: per channel, of pixels scaled to [0, 1]; ``tta``: the views whose logits are
    averaged; ``dtype``/``channels_last``: the run's precision (PyTorch only; None: float32).
    ``temperature``: logits are divided by it before the softmax/sigmoid (1: uncalibrated).
    ``thresholds``: per-label decision thresholds of a multi-label model (None: 0.5 each).
    ``reject_below``: the default confidence below which a prediction is rejected (None: never);
    ``ood_threshold``: the out-of-distribution score above which ``--reject-ood`` rejects (None:
    not fitted; ``predictions.results``).
    ``quantization``: how an exported file computes (None: float32; "int8": static QDQ int8;
    "bf16": OpenVINO's bf16 inference precision); ``gate``: the accuracy gate's figures for such a
    file (``workflows/verify.py``: top-1 in points against the float model, the largest per-class recall drop,
    the images and split they were measured on), None for a float file."""
    classes: tuple
    channels: int
    image_size: tuple
    mean: tuple
    std: tuple
    tta: str = "none"
    task: str = "single-label"
    dtype: str | None = None
    channels_last: bool = False
    temperature: float = 1.0
    thresholds: tuple | None = None
    reject_below: float | None = None
    ood_threshold: float | None = None
    quantization: str | None = None
    gate: dict | None = field(default=None, compare=False)
    extra: dict = field(default_factory=dict, compare=False)   # fields a later version added, passed through

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.image_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def replace(self, **changes) -> "InputSpec":
        return replace(self, **changes).check()

    # ---- the checkpoint and exported files ---------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, payload: dict, source: str = "the checkpoint") -> "InputSpec":
        """The spec of a densekit checkpoint (its ``data``, ``precision`` and ``calibration`` parts)."""
        data = payload.get("data")
        if data is None:
            raise DensekitError(f"{source} holds weights only (no classes or normalisation); give a run "
                                "folder or a training checkpoint")
        precision = payload.get("precision") or {}
        calibration = payload.get("calibration") or {}
        return cls(tuple(data["classes"]), int(data["channels"]), tuple(data["image_size"]), tuple(data["mean"]),
                   tuple(data["std"]), data.get("tta", "none"), data.get("task", "single-label"),
                   precision.get("dtype"), bool(precision.get("channels_last", False)),
                   float(calibration.get("temperature", 1.0)), _tuple(calibration.get("thresholds")),
                   calibration.get("reject_below"), calibration.get("ood_threshold")).check(source)

    def to_metadata(self) -> dict:
        """The fields an exported file stores (JSON values; precision is the file's own, not the run's)."""
        out = asdict(self)
        for key in ("dtype", "channels_last", "extra"):
            out.pop(key)
        out.update(classes=list(self.classes), image_size=list(self.image_size), mean=list(self.mean),
                   std=list(self.std), thresholds=None if self.thresholds is None else list(self.thresholds))
        return out

    @classmethod
    def from_metadata(cls, meta: dict, source: str, input_shape=None, num_outputs=None) -> "InputSpec":
        """The spec an exported file claims, checked field by field (one line naming the field) and
        against its graph: ``input_shape`` (C, H, W; None for a dimension the graph leaves free) and
        ``num_outputs`` (logits per image) when the caller knows them."""
        def need(key):
            if key not in meta:
                raise DensekitError(f"{source}: its metadata has no '{key}'; export the model again")
            return meta[key]
        classes = need("classes")
        if not isinstance(classes, list) or not 1 <= len(classes) <= MAX_CLASSES:
            raise DensekitError(f"{source}: metadata 'classes' must be a list of 1 to {MAX_CLASSES:,} names; "
                                "export the model again")
        if not all(isinstance(c, str) and len(c) <= MAX_LABEL_CHARS for c in classes):
            raise DensekitError(f"{source}: metadata 'classes' must hold names (strings of at most "
                                f"{MAX_LABEL_CHARS} characters); export the model again")
        size = need("image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(_int(v) for v in size)):
            raise DensekitError(f"{source}: metadata 'image_size' must be [height, width], got {_short(size)}")
        for key in ("mean", "std"):
            v = need(key)
            if not (isinstance(v, list) and 1 <= len(v) <= 4 and all(_number(x) for x in v)):
                raise DensekitError(f"{source}: metadata '{key}' must be 1 to 4 finite numbers, got {_short(v)}")
        calibration = meta.get("calibration") or {}
        spec = cls(tuple(classes), need("channels") if _int(meta.get("channels")) else -1, tuple(size),
                   tuple(meta["mean"]), tuple(meta["std"]), need("tta"), meta.get("task", "single-label"),
                   temperature=calibration.get("temperature", meta.get("temperature", 1.0)),
                   thresholds=_tuple(calibration.get("thresholds", meta.get("thresholds"))),
                   reject_below=calibration.get("reject_below", meta.get("reject_below")),
                   ood_threshold=calibration.get("ood_threshold", meta.get("ood_threshold")),
                   quantization=meta.get("quantization"), gate=meta.get("gate"))
        spec.check(source)
        if input_shape is not None:
            for name, want, got in zip(("channels", "height", "width"), spec.input_shape, input_shape):
                if isinstance(got, int) and got != want:
                    raise DensekitError(f"{source}: metadata says {name} {want} but the graph takes {got}; "
                                        "export the model again")
        if isinstance(num_outputs, int) and num_outputs != spec.num_classes:
            raise DensekitError(f"{source}: metadata names {spec.num_classes} classes but the graph gives "
                                f"{num_outputs} outputs; export the model again")
        return spec

    # ---- validation ------------------------------------------------------------------------------------

    def check(self, source: str = "the model") -> "InputSpec":
        """Self, when every field holds a value a predictor can use; else one line naming the field."""
        def bad(name, value, allowed):
            raise DensekitError(f"{source}: {name} {_short(value)} is not usable ({allowed}); export or train again")
        if not 1 <= len(self.classes) <= MAX_CLASSES:
            bad("classes", len(self.classes), f"1 to {MAX_CLASSES:,} classes")
        if self.channels not in (1, 3, 4):
            bad("channels", self.channels, "1, 3 or 4")
        h, w = self.image_size
        if not (_int(h) and _int(w) and h * w <= MAX_IMAGE_PIXELS):
            bad("image_size", list(self.image_size), f"two positive integers, at most {MAX_IMAGE_PIXELS:,} pixels")
        if len(self.mean) != len(self.std) or not all(_number(m) for m in self.mean):
            bad("mean", list(self.mean), "one finite number per channel, as many as std")
        if not all(_number(s) and s > 0 for s in self.std):
            bad("std", list(self.std), "positive finite numbers")
        if self.tta not in TTA_VIEWS:
            bad("tta", self.tta, " or ".join(TTA_VIEWS))
        if self.task not in TASKS:
            bad("task", self.task, " or ".join(TASKS))
        if not (_number(self.temperature) and self.temperature > 0):
            bad("temperature", self.temperature, "a positive finite number")
        if self.thresholds is not None and (len(self.thresholds) != len(self.classes)
                                            or not all(_number(t) and 0 <= t <= 1 for t in self.thresholds)):
            bad("thresholds", list(self.thresholds), "one number in [0, 1] per class")
        if self.reject_below is not None and not (_number(self.reject_below) and 0 <= self.reject_below <= 1):
            bad("reject_below", self.reject_below, "a probability in [0, 1]")
        if self.ood_threshold is not None and not _number(self.ood_threshold):
            bad("ood_threshold", self.ood_threshold, "a finite number")
        if self.quantization not in QUANTIZATIONS:
            bad("quantization", self.quantization, "null, bf16 or int8")
        if self.gate is not None and not (isinstance(self.gate, dict) and len(self.gate) <= 16 and all(
                (_number(self.gate[k]) or self.gate[k] is None) for k in GATE_FIGURES if k in self.gate)):
            bad("gate", self.gate, f"an object of at most 16 fields whose {', '.join(GATE_FIGURES)} are numbers")
        return self


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _tuple(v):
    return None if v is None else tuple(v) if isinstance(v, (list, tuple)) else v


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
