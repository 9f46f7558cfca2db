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


def batch_probabilities(model, images, normalize, device, dtype, memory_format, tta: str):
    """Class probabilities (N x K, float32, on the CPU) of a list of uint8 C x H x W tensors in one
    forward pass: the body of ``densekit.predict``'s loop over batches, for a batch gathered elsewhere."""
    import torch
    from ..engine.evaluate import tta_log_probs
    from ..engine.precision import autocast
    x = normalize(torch.stack(images).to(device)).contiguous(memory_format=memory_format)
    with torch.no_grad(), autocast(device, dtype):
        return tta_log_probs(model, x, tta)[0].exp().cpu()


class TorchBackend:
    """A run folder or checkpoint file, loaded as ``densekit.predict`` loads it."""

    name = "torch"

    def __init__(self, run_or_checkpoint, device: str = "auto", tta: str | None = None, threads: int | None = None):
        import torch
        from .. import __version__, data as D
        from ..data.augment import check_tta
        from ..engine.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
        from ..engine.precision import fast_defaults, memory_format, pick_device, precision_name
        if threads:
            torch.set_num_threads(threads)  # per forward pass; each worker thread's OpenMP team gets this many
        self.device = pick_device(device)
        self.path = resolve_checkpoint(run_or_checkpoint)
        payload = load_checkpoint(self.path)
        fast = fast_defaults(self.device)
        self.dtype, self.memory_format = fast["dtype"], memory_format(fast["channels_last"])
        self.model = model_from_checkpoint(payload).to(self.device).to(memory_format=self.memory_format).eval()
        info = payload["data"]
        self.tta = check_tta(tta or info.get("tta", "none"))
        self.classes, self.channels = list(info["classes"]), info["channels"]
        self.image_size = tuple(info["image_size"])
        self.normalize = D.Normalize(info["mean"], info["std"])
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
        return batch_probabilities(self.model, images, self.normalize, self.device, self.dtype,
                                   self.memory_format, self.tta)

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
