"""What the server predicts with: the ``predictions.Predictor`` ``densekit.predict`` uses, loaded
once (``densekit.load_predictor``: a run folder's checkpoint through PyTorch, an exported ``.onnx``
file through ``densekit.runtime``, no PyTorch needed), and the model card ``GET /v1/model`` shows.

Nothing about a prediction is re-derived here: decoding, logits, probabilities and the result
schema are the predictor's, so the server answers exactly what ``densekit predict`` prints.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DensekitError

BACKENDS = ("auto", "torch", "onnx", "openvino")
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml"}


def model_card(model) -> dict:
    """What ``GET /v1/model`` says about a predictor (its spec, where it came from, its metrics)."""
    from .. import __version__
    spec = model.spec
    card = {"classes": list(spec.classes), "channels": spec.channels, "input_size": list(spec.input_shape),
            "mean": list(spec.mean), "std": list(spec.std), "tta": spec.tta, "source": str(model.path),
            "backend": model.backend, "task": spec.task,
            "thresholds": None if spec.thresholds is None else list(spec.thresholds),
            "calibration": {"temperature": spec.temperature, "reject_below": spec.reject_below,
                            "ood_threshold": spec.ood_threshold}}
    if model.backend == "torch":
        import torch
        from ..engine.run import RunFolder
        run = RunFolder.of_checkpoint(model.path)
        card.update(name=model.architecture["name"], args=model.architecture["args"], dataset=model.dataset,
                    precision=model.precision, device=str(model.device),
                    metrics=run.summary_metrics() if run else {},
                    versions={"densekit": __version__, "torch": torch.__version__})
    else:
        import importlib
        runtime = "onnxruntime" if model.backend == "onnx" else "openvino"
        meta = model.meta
        card.update(name=meta["model"]["name"], args=meta["model"].get("args", {}), dataset=meta.get("dataset"),
                    device=model.device, metrics=meta.get("metrics") or {},
                    precision=spec.quantization or "float32", gate=spec.gate,
                    versions={"densekit": __version__, runtime: importlib.import_module(runtime).__version__,
                              "exported_with": meta.get("versions", {})})
    return card


def resolve_backend(source, backend: str = "auto") -> str:
    """The backend that serves ``source`` ("torch", "onnx" or "openvino"): ``auto`` by the file's
    suffix; a backend that cannot serve the file is one line saying what to run instead."""
    if backend not in BACKENDS:
        raise DensekitError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(source)
    exported = path.suffix.lower() in SUFFIXES.values()
    if backend == "torch" and exported:
        raise DensekitError(f"{path} is an exported file; serve it with --backend onnx or openvino (or give the "
                            "run folder for --backend torch)")
    if backend in SUFFIXES and path.suffix.lower() != SUFFIXES[backend]:
        raise DensekitError(f"--backend {backend} serves a {SUFFIXES[backend]} file, not {path}; export it first "
                            f"(densekit export {path} --format {backend} --dynamic-batch) and serve the "
                            f"{SUFFIXES[backend]}")
    if backend != "auto":
        return backend
    return next((name for name, suffix in SUFFIXES.items() if path.suffix.lower() == suffix), "torch")


def load_backend(source, backend: str = "auto", device: str = "auto", tta: str | None = None,
                 threads: int | None = None):
    """The predictor for ``source``, with ``card`` set: ``auto`` is ONNX for a ``.onnx`` file,
    OpenVINO for an ``.xml``, PyTorch otherwise."""
    from .. import load_predictor
    resolve_backend(source, backend)
    model = load_predictor(Path(source), device=device, tta=tta, threads=threads)
    model.card = model_card(model)
    return model
