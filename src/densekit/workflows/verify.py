"""The accuracy gate of a lossy export (int8, bf16): the file against its float model on labelled
images, in points of top-1 and of each class's recall.

A file that agrees with its float model to within a logit tolerance (the float self-check,
``exporter.verify_export``) needs no gate; a quantised one cannot agree that closely, so what it
must keep is the *accuracy*: its top-1 on the test split may fall by at most ``max_drop`` points
and no class's recall (sklearn's ``recall_score``, one figure per class) by more than
``max_class_drop`` points. Both default to the figures users asked for (0.5 and 2 points); a
file that loses more is refused with one line and not written. Works on any two
``predictions.Predictor`` s, so ``densekit verify`` runs the same gate on a user's own data.
"""
from __future__ import annotations

import numpy as np

from ..errors import DensekitError

MAX_DROP, MAX_CLASS_DROP = 0.5, 2.0   # points of top-1, points of one class's recall
GATE_LIMIT = 10_000                    # test images the gate runs (all of CIFAR's and Fashion-MNIST's)
CHUNK = 256


def labelled_split(spec, dataset: str, split: str = "test", limit: int = GATE_LIMIT):
    """uint8 (N, C, H, W) images and int labels (N,) of ``dataset``'s ``split`` at the spec's input
    shape (the first ``limit``: the split's own order), and a description of them."""
    from ..data import load_dataset
    c, h, w = spec.input_shape
    try:
        ds = load_dataset(dataset, split, channels=c, image_size=(h, w))
    except DensekitError as err:
        raise DensekitError(f"cannot load the {split} split of {dataset} for the accuracy gate ({err}); "
                            "give a labelled dataset with --dataset") from None
    n = min(len(ds), limit)
    if n == 0:
        raise DensekitError(f"the {split} split of {dataset} is empty; give a labelled dataset with --dataset")
    items = [ds[i] for i in range(n)]
    x = np.stack([np.asarray(img, dtype=np.uint8) for img, _ in items])
    y = np.asarray([int(label) for _, label in items])
    return x, y, f"the first {n} {split} images of {dataset}" if n < len(ds) else f"the {n} {split} images of {dataset}"


def predictions(model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.logits(x[i:i + CHUNK]).argmax(1) for i in range(0, len(x), CHUNK)])


def measure(reference, candidate, x: np.ndarray, y: np.ndarray, source: str,
            max_drop: float = MAX_DROP, max_class_drop: float = MAX_CLASS_DROP) -> dict:
    """The gate's figures (points, 0..100): ``top1_float``, ``top1``, ``top1_drop``,
    ``worst_class`` (its name) and ``worst_class_drop``, ``agreement`` (top-1 agreement of the two
    models), ``images``, ``source``, the limits, and ``passed``."""
    from sklearn.metrics import recall_score
    if not (0 <= max_drop <= 100 and 0 <= max_class_drop <= 100):
        raise DensekitError("--max-drop and --max-class-drop are points of accuracy: give numbers in 0..100")
    ref, got = predictions(reference, x), predictions(candidate, x)
    labels = list(range(reference.spec.num_classes))
    present = sorted(set(y.tolist()))   # a class the split lacks has no recall to lose
    r_ref = recall_score(y, ref, labels=present, average=None, zero_division=0)
    r_got = recall_score(y, got, labels=present, average=None, zero_division=0)
    drops = 100 * (r_ref - r_got)
    worst = int(np.argmax(drops))
    out = {"top1_float": 100 * float((ref == y).mean()), "top1": 100 * float((got == y).mean()),
           "worst_class": reference.spec.classes[labels[present[worst]]], "worst_class_drop": float(drops[worst]),
           "agreement": 100 * float((ref == got).mean()), "images": int(len(y)), "source": source,
           "max_drop": float(max_drop), "max_class_drop": float(max_class_drop)}
    out["top1_drop"] = out["top1_float"] - out["top1"]
    # a hair of float slack: 1/N steps are exact in theory, not in binary
    out["passed"] = out["top1_drop"] <= max_drop + 1e-9 and out["worst_class_drop"] <= max_class_drop + 1e-9
    return out


def refuse_unless_passed(figures: dict, what: str):
    """One line naming the figures when the gate failed."""
    if not figures["passed"]:
        raise DensekitError(
            f"{what} loses too much accuracy on {figures['source']}: top-1 {figures['top1']:.2f}% vs "
            f"{figures['top1_float']:.2f}% float (drop {figures['top1_drop']:.2f} points, allowed "
            f"{figures['max_drop']:g}); class {figures['worst_class']!r} recall drops "
            f"{figures['worst_class_drop']:.2f} points (allowed {figures['max_class_drop']:g}); no file was "
            "written: calibrate on more or more typical images (--calibrate N), or raise --max-drop / --max-class-drop")


def describe(figures: dict) -> str:
    return (f"top-1 {figures['top1']:.2f}% vs {figures['top1_float']:.2f}% float "
            f"(drop {figures['top1_drop']:.2f} points, allowed {figures['max_drop']:g}); largest class recall "
            f"drop {figures['worst_class_drop']:.2f} points ({figures['worst_class']}, allowed "
            f"{figures['max_class_drop']:g}); agreement {figures['agreement']:.2f}% on {figures['source']}")


def verify(model, dataset: str, reference=None, split: str = "test", limit: int = GATE_LIMIT,
           max_drop: float = MAX_DROP, max_class_drop: float = MAX_CLASS_DROP) -> dict:
    """``densekit verify``: the gate for any exported file (``model``: .onnx or .xml) on ``dataset``'s
    ``split`` against ``reference`` (a run folder or checkpoint, in float32, or a float exported
    file; None: the run folder the file sits in). Returns the figures; refuses when they fail."""
    from pathlib import Path
    from .. import load_predictor
    from ..engine.checkpoint import resolve_checkpoint
    from ..engine.infer import TorchPredictor
    if not (0 <= max_drop <= 100 and 0 <= max_class_drop <= 100):
        raise DensekitError("--max-drop and --max-class-drop are points of accuracy: give numbers in 0..100")
    path = Path(model)
    if path.suffix.lower() not in (".onnx", ".xml"):
        raise DensekitError(f"{path}: densekit verify checks an exported .onnx or .xml file")
    candidate = load_predictor(path, device="cpu")
    if reference is None:
        try:
            reference = resolve_checkpoint(path.parent)
        except DensekitError:
            raise DensekitError(f"{path} is not inside its run folder: give the float model with --reference "
                                "RUN_OR_FILE") from None
    if str(reference).lower().endswith((".onnx", ".xml")):
        ref = load_predictor(reference, device="cpu")
    else:   # float32, the file's own test-time augmentation: what the file was exported from
        ref = TorchPredictor(reference, device="cpu", tta=candidate.spec.tta, precision="fp32")
    if list(ref.spec.classes) != list(candidate.spec.classes) or ref.spec.input_shape != candidate.spec.input_shape:
        raise DensekitError(f"{path} and the reference {reference} differ in classes or input shape; give the "
                            "model the file was exported from with --reference")
    x, y, source = labelled_split(candidate.spec, dataset, split, limit)
    if y.max(initial=0) >= candidate.spec.num_classes:
        raise DensekitError(f"{dataset} has labels beyond the model's {candidate.spec.num_classes} classes; "
                            "give a dataset with the model's classes")
    figures = measure(ref, candidate, x, y, source, max_drop, max_class_drop)
    figures["reference"] = str(reference)
    refuse_unless_passed(figures, str(path))
    return figures
