"""What the server predicts with: a run folder's checkpoint through PyTorch, or an exported
``.onnx`` file through ``densekit.runtime`` (no PyTorch needed).

Both backends take images already opened by Pillow and give the same things: the uint8
C x H x W array the model takes (``decode``), class probabilities of a list of them in one
forward pass (``probabilities``), and the top-k entries of one row in ``densekit predict``'s
schema (``top_k``). The preprocessing is never re-derived here: the torch backend calls
``decode_image``, ``Normalize`` and ``tta_log_probs`` exactly as ``densekit.predict`` does, the
ONNX backend the runtime's own preprocessing, which its tests hold equal to the torch path.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DensekitError

BACKENDS = ("auto", "torch", "onnx")


def summary_metrics(run_dir: Path | None) -> dict:
    """The test metrics of a run's summary.json (without per-class figures), or {}."""
    path = run_dir / "summary.json" if run_dir else None
    if not path or not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in summary.items() if k.startswith("test_") or k in ("epochs", "dataset", "params")}


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file lives in (``RUN/checkpoints/NAME.pt``), if it is one."""
    run = checkpoint.resolve().parent.parent
    return run if checkpoint.resolve().parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


class TorchBackend:
    """A run folder or checkpoint file, loaded as ``densekit.predict`` loads it."""

    name = "torch"

    def __init__(self, run_or_checkpoint, device: str = "auto", tta: str | None = None, threads: int | None = None):
        import torch
        from .. import __version__
        from ..engine.evaluate import load_for_inference
        from ..engine.precision import precision_name
        if threads:
            torch.set_num_threads(threads)  # per forward pass; each worker thread's OpenMP team gets this many
        # the run's own pipeline, precision and TTA, loaded exactly as densekit.predict loads them
        self.path, payload, self.model, self.opts = load_for_inference(run_or_checkpoint, device, tta=tta)
        info = payload["data"]
        self.device, self.dtype, self.tta = self.opts.device, self.opts.dtype, self.opts.tta
        self.classes, self.channels = list(info["classes"]), info["channels"]
        self.image_size = tuple(info["image_size"])
        self.card = {"name": payload["model"]["name"], "args": payload["model"]["args"], "classes": self.classes,
                     "channels": self.channels, "input_size": [self.channels, *self.image_size],
                     "mean": info["mean"], "std": info["std"], "tta": self.tta, "dataset": info.get("dataset"),
                     "source": str(self.path), "backend": self.name,
                     "precision": precision_name(self.dtype), "device": str(self.device),
                     "metrics": summary_metrics(run_dir_of(self.path)),
                     "versions": {"densekit": __version__, "torch": torch.__version__}}

    def decode(self, image):
        from ..data.images import decode_image
        return decode_image(image, channels=self.channels, size=self.image_size)

    def probabilities(self, images):
        from ..engine.evaluate import probabilities
        return probabilities(self.model, images, self.opts)

    def top_k(self, row, k: int) -> list[dict]:
        p, idx = row.topk(min(k, len(self.classes)))
        return [{"label": self.classes[j], "index": j, "prob": q} for q, j in zip(p.tolist(), idx.tolist())]


class OnnxBackend:
    """An ``.onnx`` file written by ``densekit export``, run by ``densekit.runtime`` (no PyTorch)."""

    name = "onnx"

    def __init__(self, path, device: str = "auto", tta: str | None = None, threads: int | None = None):
        import onnxruntime
        from .. import __version__
        from ..runtime import OnnxModel
        self.model = OnnxModel(path, device=device, threads=threads)
        meta = self.model.meta
        if tta is not None and tta != meta["tta"]:
            raise DensekitError(f"{path} applies tta={meta['tta']} inside its graph; export again with "
                                f"--tta {tta} to serve with {tta}")
        self.path, self.tta, self.classes = Path(path), meta["tta"], list(self.model.classes)
        self.channels, self.image_size = meta["channels"], tuple(meta["image_size"])
        self.card = {"name": meta["model"]["name"], "args": meta["model"].get("args", {}), "classes": self.classes,
                     "channels": self.channels, "input_size": list(self.model.input_shape),
                     "mean": meta["mean"], "std": meta["std"], "tta": self.tta, "dataset": meta.get("dataset"),
                     "source": str(self.path), "backend": self.name, "device": self.model.device,
                     "metrics": meta.get("metrics") or {},
                     "versions": {"densekit": __version__, "onnxruntime": onnxruntime.__version__,
                                  "exported_with": meta.get("versions", {})}}

    def decode(self, image):
        return self.model.preprocess(image)

    def probabilities(self, images):
        import numpy as np
        return self.model.predict_arrays(np.stack(images))

    def top_k(self, row, k: int) -> list[dict]:
        return self.model.format_top_k(row[None], k)[0]


def load_backend(source, backend: str = "auto", device: str = "auto", tta: str | None = None,
                 threads: int | None = None):
    """The backend for ``source``: ``auto`` is ONNX for a ``.onnx`` file, PyTorch otherwise."""
    if backend not in BACKENDS:
        raise DensekitError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(source)
    is_onnx = path.suffix.lower() == ".onnx"
    if backend == "auto":
        backend = "onnx" if is_onnx else "torch"
    if backend == "torch":
        if is_onnx:
            raise DensekitError(f"{path} is an ONNX export; serve it with --backend onnx (or give the run folder "
                                "for --backend torch)")
        return TorchBackend(path, device=device, tta=tta, threads=threads)
    if not is_onnx:
        raise DensekitError(f"--backend onnx serves an .onnx file, not {path}; export it first "
                            f"(densekit export {path} --format onnx --dynamic-batch) and serve the .onnx")
    return OnnxBackend(path, device=device, tta=tta, threads=threads)
