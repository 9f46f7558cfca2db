"""``densekit export``: a checkpoint as an inference file (ONNX, TorchScript or safetensors) that
says what it needs, checked against the PyTorch model on real images before it is handed over.

The ONNX and TorchScript graphs are the inference home's own graph (``engine.infer.InferenceModel``,
the module ``densekit.predict`` runs): eval mode, BatchNorm folded into the convolution before it
where the network allows (``models/fold.py``), the input normalisation inside (a client sends raw
pixels, 0..255, float32 N x C x H x W), the checkpoint's test-time augmentation inside (flip: the
logits of the image and its mirror averaged) and its calibration temperature. Their output is those
logits; ``densekit.predictions`` turns them into the results ``densekit.predict`` reports. The
metadata carries the checkpoint's ``InputSpec`` (``spec.to_metadata()``), and the self-check
compares the file's predictor (``runtime.OnnxModel`` for ONNX) with the run's ``TorchPredictor``.

ONNX goes through ``torch.onnx``'s dynamo exporter (``torch.export`` + onnxscript); where that fails
(onnxscript missing, an operator it cannot translate) the TorchScript-based exporter
(``dynamo=False``) is used instead and the result says why. TorchScript is traced, not scripted:
``torch.jit.script`` cannot compile the dense layers' forward, which takes a Python list of
feature maps and branches on training-time flags. safetensors holds the plain, unfolded
``state_dict`` (keys as ``create_model`` builds them, so it loads back with
``create_model(name, weights=PATH)``), since folding renames and removes parameters.
Int8 quantisation is ``quantize.py`` and the accuracy gate ``verify.py``; what stays here over 350
lines is the one write path of every format (a temporary file beside the target, then a rename).
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import __version__, files
from ..data.augment import check_tta
from ..engine.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
from ..engine.infer import InferenceModel, TorchPredictor
from ..engine.run import RunFolder
from ..errors import DensekitError
from ..models.fold import count_batchnorms, fold_batchnorm
from ..runtime import metadata
from ..spec import InputSpec

__all__ = ["FORMATS", "InferenceModel", "export", "read_metadata", "verify_export"]

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript", "safetensors": ".safetensors", "openvino": ".xml"}
PRECISIONS = ("fp32", "bf16", "int8")   # bf16: OpenVINO only; int8: onnx and openvino (quantize.py)
CHECK_LIMIT = 1000  # test images the self-check runs: enough for a 99.9% agreement to mean one miss
# max |logit difference| allowed, relative to the largest |logit|: float32 keeps ~7 digits, and
# folding and another runtime's kernels reorder sums over thousands of products per output, which
# costs ~1e-6..1e-5 of the logits' scale (measured: docs/export.md); a wrong operator, a missed
# normalisation or a wrong weight is off by order 1.
TOLERANCE = 1e-3
DYNAMO_MIN_OPSET = 18  # torch.onnx's dynamo exporter converts older requests only partly, and silently


def _metrics(checkpoint: Path) -> dict:
    """The run's test metrics (``RunFolder.summary_metrics``), when they describe this checkpoint (best.pt)."""
    run = RunFolder.of_checkpoint(checkpoint)
    return run.summary_metrics() if run is not None and checkpoint.name == "best.pt" else {}


def _weights(payload: dict, ema: bool | None) -> str:
    has_ema = bool(payload.get("ema_state_dict"))
    if ema and not has_ema:
        raise DensekitError("this checkpoint has no EMA weights (it was trained without --ema); "
                            "export without --ema")
    return "ema" if has_ema and ema is not False else "plain"


def _default_out(checkpoint: Path, fmt: str) -> Path:
    run = RunFolder.of_checkpoint(checkpoint)
    return (run.path / f"model{FORMATS[fmt]}") if run else checkpoint.with_suffix(FORMATS[fmt])


def export(run_or_checkpoint: str | Path, format: str = "onnx", out: str | Path | None = None,
           dynamic_batch: bool = False, opset: int | None = None, ema: bool | None = None,
           check: list | None = None, tta: str | None = None, fold: bool = True, verify: bool = True,
           check_limit: int = CHECK_LIMIT, precision: str = "fp32", calibrate: int | None = None,
           max_drop: float | None = None, max_class_drop: float | None = None) -> dict:
    """Export a run (its best checkpoint) or a checkpoint file; returns ``{"path", "format",
    "exporter", "folded_batchnorm", "notes", "check"}``.

    ``format``: onnx, torchscript or safetensors. ``out``: the file (default: ``model.onnx`` etc.
    in the run folder, or beside the checkpoint). ``dynamic_batch``: an ONNX graph for any batch
    size (else batch 1). ``opset``: the ONNX opset (default: the exporter's). ``ema``: the EMA
    weights (None: when the checkpoint has them). ``tta``: "none" or "flip" in the graph (None:
    the checkpoint's own). ``fold``: fold BatchNorm into convolutions. ``verify``: run the file
    against the float32 PyTorch model on the first ``check_limit`` test images of the run's
    dataset, or on the image files ``check``; a disagreement raises ``DensekitError``.

    ``format="openvino"``: the OpenVINO IR (``out`` the ``.xml``; the ``.bin`` beside it) of the
    ONNX graph. ``precision``: fp32; int8 (onnx, openvino: static QDQ quantisation calibrated on
    ``calibrate`` training images, ``quantize.py``); bf16 (openvino: its bf16 inference precision).
    A lossy file must pass the accuracy gate (``verify.py``) on the test split against the float
    graph, ``max_drop`` points of top-1 and ``max_class_drop`` of any class's recall, or it is
    refused and nothing is written; its figures are stamped into the metadata (``gate``).
    """
    from . import verify as gate
    if precision not in PRECISIONS:
        raise DensekitError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if precision == "int8" and format not in ("onnx", "openvino"):
        raise DensekitError("--int8 applies to --format onnx or openvino")
    if precision == "bf16" and format != "openvino":
        raise DensekitError("--precision bf16 applies to --format openvino (onnxruntime's CPU kernels have no "
                            "bf16 convolution); use --int8 for a smaller, faster ONNX file")
    if calibrate is not None and precision != "int8":
        raise DensekitError("--calibrate sets int8's calibration images: add --int8")
    if (max_drop is not None or max_class_drop is not None) and precision == "fp32":
        raise DensekitError("--max-drop and --max-class-drop gate a lossy file (--int8, --precision bf16); a "
                            "float32 file must match the PyTorch model exactly")
    if precision != "fp32" and not verify:
        raise DensekitError(f"a {precision} file is only written when it passes the accuracy gate: drop --no-verify")
    if format not in FORMATS:
        raise DensekitError(f"unknown export format {format!r}: choose {', '.join(FORMATS)}")
    if format not in ("onnx", "openvino") and (dynamic_batch or opset is not None):
        raise DensekitError("--dynamic-batch and --opset apply to --format onnx or openvino only (a traced TorchScript "
                            "graph takes any batch size)")
    if format == "safetensors" and tta is not None:
        raise DensekitError("--tta applies to graphs (onnx, torchscript); safetensors holds weights only")
    checkpoint = resolve_checkpoint(run_or_checkpoint)
    payload = load_checkpoint(checkpoint)
    spec = InputSpec.from_checkpoint(payload, str(checkpoint))
    weights = _weights(payload, ema)
    model = model_from_checkpoint(payload, use_ema=weights == "ema").eval()
    spec = spec.replace(tta=check_tta(tta or spec.tta))
    tta = spec.tta
    path = Path(out) if out else _default_out(checkpoint, format)
    files.check_target(path, (FORMATS[format],))
    if format == "openvino":
        files.check_target(path.with_suffix(".bin"), (".bin",))   # a folder, a read-only place, model.pt for onnx: before any work
    c, h, w = spec.input_shape
    notes, exporter, folded = [], format, 0

    meta = {**spec.to_metadata(), "tta_in_graph": format != "safetensors",
            "folded_batchnorm": 0, "model": payload["model"], "weights": weights,
            "dataset": payload["data"].get("dataset"), "metrics": _metrics(checkpoint),
            "versions": {"densekit": __version__, "torch": torch.__version__},
            "input": {"name": "pixels", "dtype": "float32", "layout": "NCHW", "range": [0, 255],
                      "normalised_in_graph": format != "safetensors"},
            "output": {"name": "logits", "kind": "logits after test-time augmentation; " + (
                "a sigmoid gives each label's probability, present from its threshold up" if spec.task == "multilabel"
                else "softmax gives probabilities")}}
    if format == "safetensors":
        _save_safetensors(model, path, meta)
    else:
        net = model
        if fold:
            net, folded, why = fold_batchnorm(model)
            total = count_batchnorms(model)
            notes.append(f"BatchNorm folded into the convolution before it: {folded} of {total}"
                         + (f" ({why})" if why else " (the pre-activation BatchNorms cannot fold: docs/export.md)"))
        meta["folded_batchnorm"] = folded
        graph = InferenceModel.from_spec(net, spec).eval()
        # Batch 2, not 1: torch.export specialises a dimension whose example size is 1.
        example = torch.rand(2 if dynamic_batch else 1, c, h, w) * 255
        if format == "torchscript":
            exporter = _save_torchscript(graph, example, path, meta)
        else:
            float_onnx, exporter = _onnx_bytes(graph, example, meta, dynamic_batch, opset, notes)
            if precision == "fp32":
                _write(format, path, float_onnx, meta)
            else:
                lossy = _lossy(float_onnx, format, precision, path, meta, spec, calibrate, notes,
                               gate.MAX_DROP if max_drop is None else max_drop,
                               gate.MAX_CLASS_DROP if max_class_drop is None else max_class_drop)
                _write(format, path, lossy, meta)
    result = {"path": str(path), "format": format, "exporter": exporter, "checkpoint": str(checkpoint),
              "folded_batchnorm": folded, "tta": tta, "weights": weights, "notes": notes, "precision": precision}
    if precision != "fp32":
        result["gate"] = meta["gate"]
    elif verify:
        result["check"] = verify_export(path, checkpoint, images=check, limit=check_limit, ema=weights == "ema")
    return result


# Each format is serialised to memory and written by files.atomic_write (temporary file, then rename):
# a full disk or a read-only folder is one line, never a truncated file or torch's C++ abort.

def _save_safetensors(model: nn.Module, path: Path, meta: dict):
    from safetensors.torch import save
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    files.atomic_write(path, save(state, metadata=metadata.to_strings(meta)))


def _save_torchscript(graph: nn.Module, example: torch.Tensor, path: Path, meta: dict) -> str:
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that sizes become constants; chunk() and cat() here follow the batch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript: docs/export.md
        traced = torch.jit.trace(graph, example, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"densekit.json": json.dumps(metadata.to_strings(meta))})
    files.atomic_write(path, buf.getvalue())
    return "torch.jit.trace"


def _onnx_bytes(graph: nn.Module, example: torch.Tensor, meta: dict, dynamic_batch: bool,
                opset: int | None, notes: list) -> tuple[bytes, str]:
    """The float ONNX model (serialised, without metadata) and the exporter that wrote it; records
    the onnx version and opset in ``meta``."""
    try:
        import onnx
    except ImportError:
        from ..extras import missing_extra
        raise missing_extra("ONNX export", "export", "onnx") from None
    # Its registry logs a warning per torchvision operator it skips; densekit uses none of them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    kwargs = dict(input_names=["pixels"], output_names=["logits"], opset_version=opset)
    exporter, buf = "torch.onnx (dynamo)", io.BytesIO()
    try:
        if opset is not None and opset < DYNAMO_MIN_OPSET:
            raise DensekitError(f"it writes opset {DYNAMO_MIN_OPSET} and later, not {opset}")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
            program = torch.onnx.export(graph, (example,), dynamo=True, external_data=False,
                                        dynamic_shapes=shapes, verbose=False, **kwargs)
            program.save(buf)
    except Exception as err:  # the dynamo exporter fails in many ways (missing onnxscript, an op it lacks)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        notes.append(f"the dynamo exporter failed ({type(err).__name__}: {reason}); used the "
                     "TorchScript-based exporter (dynamo=False) instead")
        exporter = "torch.onnx (TorchScript-based, dynamo=False)"
        axes = {"pixels": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
        buf = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), buf, dynamo=False, dynamic_axes=axes,
                              **{**kwargs, "opset_version": opset or 17})
    proto = onnx.load_from_string(buf.getvalue())
    meta["versions"] = {**meta["versions"], "onnx": onnx.__version__,
                        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))}
    return buf.getvalue(), exporter


def _stamped(model: bytes, meta: dict) -> bytes:
    """An ONNX model with ``meta`` as its metadata_props."""
    import onnx
    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    for key, value in metadata.to_strings(meta).items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def _write(format: str, path: Path, model: bytes, meta: dict):
    """``model`` (ONNX) with ``meta``, as an .onnx file or as an OpenVINO IR (.bin first, then the
    .xml that needs it; each atomically)."""
    if format == "onnx":
        files.atomic_write(path, _stamped(model, meta))
        return
    from .quantize import to_openvino
    xml, weights = to_openvino(model, metadata.to_strings(meta))
    files.atomic_write(path.with_suffix(".bin"), weights)
    files.atomic_write(path, xml)


def _lossy(float_onnx: bytes, format: str, precision: str, path: Path, meta: dict, spec: InputSpec,
           calibrate: int | None, notes: list, max_drop: float, max_class_drop: float) -> bytes:
    """The int8 (or, for OpenVINO bf16, the float) ONNX model of a lossy export, after the gate:
    the candidate, written to a temporary folder in its final format, against the float graph on
    the test split. Sets ``meta``'s ``quantization``, ``calibration`` and ``gate``; refuses (one
    line, nothing written) when the gate fails."""
    import tempfile
    from . import quantize, verify as gate
    from ..runtime import OnnxModel
    model = float_onnx
    meta["quantization"] = precision
    if precision == "int8":
        pixels, source = quantize.calibration_pixels(spec, meta["dataset"], calibrate or quantize.CALIBRATE)
        model = quantize.quantize_onnx(float_onnx, pixels)
        meta["calibration_images"] = source
        notes.append(f"int8: weights per channel, activations per tensor, calibrated on {source}; "
                     "each dense block's concatenations share one range (docs/export.md)")
    x, y, source = gate.labelled_split(spec, meta["dataset"])
    with tempfile.TemporaryDirectory(prefix="densekit-gate-") as tmp:
        ref_path, cand_path = Path(tmp) / "float.onnx", Path(tmp) / f"candidate{FORMATS[format]}"
        float_meta = {k: v for k, v in meta.items() if k not in ("quantization", "calibration_images")}
        files.atomic_write(ref_path, _stamped(float_onnx, float_meta), durable=False)
        _write(format, cand_path, model, meta)
        reference, candidate = OnnxModel(ref_path, device="cpu"), _predictor(cand_path)
        figures = gate.measure(reference, candidate, x, y, source, max_drop, max_class_drop)
    gate.refuse_unless_passed(figures, f"the {precision} {format} export")
    meta["gate"] = figures
    return model


def _predictor(path: Path):
    """The runtime predictor of an exported .onnx or .xml file."""
    if path.suffix == ".xml":
        from ..runtime.openvino import OpenVinoModel
        return OpenVinoModel(path)
    from ..runtime import OnnxModel
    return OnnxModel(path, device="cpu")


def _load_torchscript(path: Path, extra: dict | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra or {})


def read_metadata(path: str | Path) -> dict:
    """The densekit metadata of an exported file of any of the four formats."""
    path = Path(path)
    if not path.is_file():
        raise DensekitError(f"{path} not found")
    if path.suffix == ".xml":
        return _predictor(path).meta
    if path.suffix == ".onnx":
        import onnx
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    elif path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            props = f.metadata() or {}
    else:
        extra = {"densekit.json": ""}
        _load_torchscript(path, extra)
        props = json.loads(extra["densekit.json"] or "{}")
    return metadata.from_strings(props, str(path))


# ---- Self-check -------------------------------------------------------------------------------

def _check_batch(spec: InputSpec, dataset: str, images, limit: int) -> tuple[torch.Tensor, str]:
    """uint8 (N, C, H, W) to check on: the given image files, else the run's test split."""
    from ..data import load_dataset
    from ..data.images import decode_image
    from ..decode import expand_images
    c, h, w = spec.input_shape
    if images:
        files = expand_images(images)[:limit]
        if not files:
            raise DensekitError("--check found no image files; give image files or folders of images")
        return torch.stack([decode_image(f, channels=c, size=(h, w)) for f in files]), f"{len(files)} --check images"
    try:
        ds = load_dataset(dataset, "test", channels=c, image_size=(h, w))
    except DensekitError as err:
        raise DensekitError(f"cannot load the test split of {dataset} to check the export ({err}); "
                            "give images with --check IMAGE_OR_DIR") from None
    n = min(len(ds), limit)
    return torch.stack([ds[i][0] for i in range(n)]), f"the first {n} test images of {dataset}"


def _exported_logits(path: Path, fmt: str, x: torch.Tensor, meta: dict) -> torch.Tensor:
    """The exported file's logits of uint8 pixels ``x``: ONNX through its predictor (the runtime's
    ``OnnxModel``), TorchScript as loaded, safetensors rebuilt into the ``InferenceModel``."""
    if fmt in ("onnx", "openvino"):
        return torch.from_numpy(_predictor(path).logits(x.numpy()))
    if fmt == "torchscript":
        graph = _load_torchscript(path).eval()
    else:
        from ..models import create_model
        net = create_model(meta["model"]["name"], weights=str(path), **meta["model"]["args"]).eval()
        graph = InferenceModel.from_spec(net, InputSpec.from_metadata(meta, str(path)))
    with torch.no_grad():
        return torch.cat([graph(x[i:i + 256].float()) for i in range(0, len(x), 256)])


def verify_export(path: str | Path, run_or_checkpoint: str | Path, images=None, limit: int = CHECK_LIMIT,
                  ema: bool = True, tolerance: float = TOLERANCE) -> dict:
    """Run the exported file and the run's ``TorchPredictor`` in float32 (unfolded, eager, the
    file's test-time augmentation) on the same real images:
    ``{"images", "source", "max_abs_diff", "tolerance", "top1_agreement"}``. Raises
    ``DensekitError`` when top-1 agreement is below 99.9% or the difference exceeds ``tolerance``
    times the largest |logit| (at least 1). A multi-label file is compared on what it is read as:
    the sigmoid probabilities (``max_abs_diff`` of them, ``tolerance`` itself) and the label sets at
    the stored thresholds (``label_set_agreement``, at least 99.9%), its task and thresholds
    against the checkpoint's."""
    path = Path(path)
    fmt = next((f for f, suffix in FORMATS.items() if path.name.endswith(suffix)), None)
    if fmt is None:
        raise DensekitError(f"{path}: not an exported file (.onnx, .xml, .torchscript or .safetensors)")
    meta = read_metadata(path)
    reference = TorchPredictor(run_or_checkpoint, device="cpu", tta=meta["tta"], precision="fp32", ema=ema)
    spec = reference.spec
    thresholds = None if spec.thresholds is None else list(spec.thresholds)
    for key, want in (("classes", list(spec.classes)), ("mean", list(spec.mean)), ("std", list(spec.std)),
                      ("channels", spec.channels), ("task", spec.task), ("thresholds", thresholds)):
        if meta.get(key, InputSpec.task if key == "task" else None) != want:
            raise DensekitError(f"{path}: its {key} differ from the checkpoint's; export again")
    x, source = _check_batch(spec, reference.dataset, images, limit)
    ref = torch.cat([torch.from_numpy(reference.logits(x[i:i + 256].numpy())) for i in range(0, len(x), 256)])
    got = _exported_logits(path, fmt, x, meta)
    if spec.task == "multilabel":
        return _check_sigmoid(path, source, ref, got, spec, tolerance)
    diff = (got - ref).abs().max().item()
    allowed = tolerance * max(1.0, ref.abs().max().item())
    agreement = (got.argmax(1) == ref.argmax(1)).float().mean().item()
    out = {"images": len(x), "source": source, "max_abs_diff": diff, "tolerance": allowed,
           "top1_agreement": agreement}
    if agreement < 0.999 or not diff <= allowed:
        raise DensekitError(f"{path} disagrees with the PyTorch model on {source}: max |logit difference| "
                            f"{diff:.3g} (allowed {allowed:.3g}), top-1 agreement {100 * agreement:.2f}% "
                            "(needed 99.9%); the file is not usable, export again or report a bug")
    return out


def _check_sigmoid(path: Path, source: str, ref: torch.Tensor, got: torch.Tensor, spec: InputSpec,
                   tolerance: float) -> dict:
    """A multi-label file's check: its label probabilities and label sets against the checkpoint's."""
    p_ref, p_got = ref.sigmoid(), got.sigmoid()
    cut = torch.tensor(spec.thresholds if spec.thresholds is not None else [0.5] * spec.num_classes)
    diff = (p_got - p_ref).abs().max().item()
    agreement = ((p_got >= cut) == (p_ref >= cut)).all(1).float().mean().item()
    out = {"images": len(ref), "source": source, "max_abs_diff": diff, "tolerance": tolerance,
           "label_set_agreement": agreement, "compared": "sigmoid probabilities"}
    if agreement < 0.999 or not diff <= tolerance:
        raise DensekitError(f"{path} disagrees with the PyTorch model on {source}: max |probability difference| "
                            f"{diff:.3g} (allowed {tolerance:.3g}), label sets agree on {100 * agreement:.2f}% "
                            "(needed 99.9%); the file is not usable, export again or report a bug")
    return out
