"""The checkpoint format: one ``torch.save`` dict that says what it holds, loaded with
``weights_only=True`` so a checkpoint can never run code. This docstring is the format's
documentation; ``build`` writes it, ``validate`` checks it, and everything that reads a
checkpoint (evaluate, predict, export, serve, resume) goes through ``load_checkpoint``.

    format: "densekit-checkpoint"
    version: 2                      (1: no precision, no checksum; still read)
    kind: "training" | "weights"    training: everything to resume; weights: the model only
    model: {"name": str, "args": {...}}      rebuilds the architecture through the registry
    data: {                                  what prediction must apply (absent in bare weights files)
        "classes": [str, ...],               class names, index = logit position
        "mean": [float] * channels, "std": [float] * channels,   on pixels scaled to [0, 1]
        "channels": int, "image_size": [height, width],
        "dataset": str,                      the training data source (``densekit data list``)
        "tta": "none" | "flip",              the run's test-time augmentation
        "task": "single-label" | "multilabel"}   multilabel: a sigmoid per label (absent: single-label)
    precision: {"dtype": "float32" | "bfloat16" | "float16", "channels_last": bool}   as trained
    state_dict: {name: tensor}               the weights (torchvision's key names for DenseNets)
    ema_state_dict: {name: tensor} | None    EMA weights, used for evaluation when present
    calibration: {                           optional (engine/calibration.py; ``spec.InputSpec.from_checkpoint``
                                             reads it): fitted at the end of training on
        "temperature": float,                the validation split, or by `densekit calibrate`; logits are divided
                                             by it (Guo et al. 2017); absent: 1, uncalibrated
        "reject_below": float | None,        the default confidence threshold (--coverage), None: reject nothing
        "coverage": float | None,            the fraction of validation images that threshold keeps
        "ood_score": "energy",               the out-of-distribution score (predictions.ood_scores)
        "ood_threshold": float,              --reject-ood rejects above it (keeps 95% of the validation images)
        "thresholds": [float] | None,        per-label decision thresholds of a multi-label model, tuned
                                             on validation for these weights every epoch (engine/metrics.py)
        "fitted_on": str, "count": int, "bins": 15,   what it was fitted on
        "ece_before", "ece_after", "mce_*", "nll_*", "brier_*": float,   figures on that split
        "reliability_before", "reliability_after": {"count", "accuracy", "confidence"}}   per bin
    checksum: {part: crc32}                  of every tensor's bytes and of model/data(/calibration), per part
  kind "training" only:
    config: {TrainConfig field: value}
    optimizer, scaler: their state_dicts
    progress: {"epoch", "step" (in the epoch), "global_step", "elapsed" (training seconds),
               "best" (the best metric so far), "bad_epochs", "early_best" (early stopping's),
               "partial": {"loss", "correct", "seen", "data_time", "compute_time"} (the epoch in
               progress, summed over every rank), "initial_loss" (the divergence guard's),
               "ema_updates", "world_size" (processes that wrote it; a resume may use another)}
    history: [epoch record, ...]             the journal metrics.jsonl is rewritten from
    rng: {"torch": uint8 tensor, "python": [int], "cuda": [uint8 tensor]}
  added when read (``load_checkpoint``), never stored:
    path: str                                the file it was read from, for messages

Sizes are checked before anything is allocated: the model is first built on the meta device
and its shapes compared with the file's tensors, so a file cannot make densekit allocate more
than the tensors it holds.
"""
from __future__ import annotations

import io
import json
import math
import zlib
from pathlib import Path

import torch

from ..errors import DensekitError
from ..files import atomic_write
from ..limits import MAX_CLASSES
from .run import RunFolder

FORMAT, VERSION = "densekit-checkpoint", 2
KINDS = ("training", "weights")
MAX_SIDE = 16_384
_TTAS = ("none", "flip")
_TASKS = ("single-label", "multilabel")


def build(kind: str, model: dict, state_dict: dict, data: dict | None = None, ema_state_dict: dict | None = None,
          precision: dict | None = None, **training) -> dict:
    """A payload of ``kind``; ``training`` holds config, optimizer, scaler, progress, history, rng."""
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, "model": model, "data": data,
               "precision": precision, "state_dict": state_dict, "ema_state_dict": ema_state_dict, **training}
    return {k: v for k, v in payload.items() if v is not None or k == "ema_state_dict"}


def _tensor_crc(crc: int, t: torch.Tensor) -> int:
    crc = zlib.crc32(f"{t.dtype}{tuple(t.shape)}".encode(), crc)
    flat = t.detach().cpu().reshape(-1)    # stride 1 whatever the layout (channels-last included)
    return zlib.crc32(flat.view(torch.uint8).numpy().data, crc) if t.numel() else crc


def _crc(obj, crc: int = 0) -> int:
    """CRC-32 of every tensor in ``obj`` (nested dicts/lists), in a fixed order."""
    if torch.is_tensor(obj):
        return _tensor_crc(crc, obj)
    if isinstance(obj, dict):
        for key in sorted(obj, key=str):
            crc = _crc(obj[key], zlib.crc32(str(key).encode(), crc))
        return crc
    if isinstance(obj, (list, tuple)):
        for item in obj:
            crc = _crc(item, crc)
    return crc


def checksums(payload: dict) -> dict:
    parts = {k: _crc(v) for k, v in payload.items() if k in ("state_dict", "ema_state_dict", "optimizer", "rng")}
    meta = [payload.get("model"), payload.get("data")]
    if payload.get("calibration") is not None:   # (checkpoints from before calibration: the same sum)
        meta.append(payload["calibration"])
    parts["meta"] = zlib.crc32(json.dumps(meta, sort_keys=True, default=str).encode())
    return parts


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write atomically with its checksums: a kill or a full disk mid-write leaves the previous
    checkpoint intact (``files.atomic_write``)."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    payload["checksum"] = checksums(payload)

    def serialise() -> bytes:
        buf = io.BytesIO()
        torch.save(payload, buf)
        return buf.getvalue()
    return atomic_write(path, serialise)


def save_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Write a model's weights: ``.safetensors`` paths get safetensors (name and args in the metadata),
    others a checkpoint of kind "weights". Either loads with ``create_model(name, weights=PATH)``."""
    path = Path(path)
    spec = {"name": getattr(model, "model_name", type(model).__name__), "args": getattr(model, "model_args", {})}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save
        return atomic_write(path, lambda: save(state, metadata={"format": "densekit-weights",
                                                                "model": json.dumps(spec, default=list)}))
    return save_checkpoint(build("weights", spec, state), path)


# -- reading -------------------------------------------------------------------------------------
class _Damaged(Exception):
    pass


def _need(ok: bool, what: str):
    if not ok:
        raise _Damaged(what)


def _is_int(x, lo: int, hi: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _tensors(d, what: str):
    _need(isinstance(d, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in d.items()),
          f"{what} is not a dict of named tensors")


def validate(payload) -> dict:
    """Check every field the format promises; raises ``_Damaged`` naming the first bad one."""
    _need(isinstance(payload, dict) and payload.get("format") == FORMAT, "no densekit format marker")
    _need(_is_int(payload.get("version"), 1, 10**6), "bad version")
    _need(payload.get("kind") in KINDS, f"kind must be one of {KINDS}")
    model = payload.get("model")
    _need(isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("args"), dict)
          and all(isinstance(k, str) for k in model["args"]), "model must be {name: str, args: dict}")
    _tensors(payload.get("state_dict"), "state_dict")
    if payload.get("ema_state_dict") is not None:
        _tensors(payload["ema_state_dict"], "ema_state_dict")
    data = payload.get("data")
    if data is not None or payload["kind"] == "training":
        _need(isinstance(data, dict), "data is missing")
        classes, c, size = data.get("classes"), data.get("channels"), data.get("image_size")
        _need(isinstance(classes, list) and 1 <= len(classes) <= MAX_CLASSES
              and all(isinstance(x, str) for x in classes), f"data.classes must be 1 to {MAX_CLASSES:,} names")
        _need(_is_int(c, 1, 64), "data.channels must be an integer from 1 to 64")
        _need(isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(s, 1, MAX_SIDE) for s in size),
              f"data.image_size must be [height, width], each 1 to {MAX_SIDE}")
        for key, positive in (("mean", False), ("std", True)):
            v = data.get(key)
            _need(isinstance(v, (list, tuple)) and len(v) == c and all(
                isinstance(x, (int, float)) and math.isfinite(x) and (x > 0 or not positive) for x in v),
                f"data.{key} must be {c} finite numbers" + (" above 0" if positive else ""))
        _need(isinstance(data.get("dataset", ""), str), "data.dataset must be a string")
        _need(data.get("tta", "none") in _TTAS, f"data.tta must be one of {_TTAS}")
        _need(data.get("task", "single-label") in _TASKS, f"data.task must be one of {_TASKS}")
    precision = payload.get("precision")
    if precision is not None:
        _need(isinstance(precision, dict) and precision.get("dtype") in ("float32", "bfloat16", "float16")
              and isinstance(precision.get("channels_last"), bool), "precision must be {dtype, channels_last}")
    calibration = payload.get("calibration")
    if calibration is not None:
        _need(isinstance(calibration, dict), "calibration must be a dict")
        t, below, ood, thresholds = (calibration.get(k) for k in ("temperature", "reject_below", "ood_threshold",
                                                                  "thresholds"))
        _need(t is None or (_finite(t) and t > 0), "calibration.temperature must be a positive number")   # absent: 1
        _need(thresholds is None or (
            isinstance(thresholds, list) and isinstance(data, dict) and len(thresholds) == len(data["classes"])
            and all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in thresholds)),
            "calibration.thresholds must be one number in [0, 1] per class")
        _need(below is None or (_finite(below) and 0 <= below <= 1), "calibration.reject_below must be in [0, 1]")
        _need(ood is None or _finite(ood), "calibration.ood_threshold must be a finite number")
    if payload["kind"] == "training":
        for key in ("config", "optimizer", "progress", "rng"):
            _need(isinstance(payload.get(key), dict), f"{key} is missing")
        p = payload["progress"]
        _need(all(_is_int(p.get(k), 0, 10**12) for k in ("epoch", "step", "global_step")),
              "progress.epoch/step/global_step must be counts")
        _need(isinstance(payload.get("history", []), list), "history must be a list")
    checksum = payload.get("checksum")
    if checksum is not None:
        _need(isinstance(checksum, dict), "checksum must be a dict")
        for part, value in checksums(payload).items():
            _need(checksum.get(part) == value, f"its {part} fails the checksum (the file was altered or damaged)")
    elif payload["version"] >= 2:
        _need(False, "it has no checksum")
    return payload


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read and validate a checkpoint (tensors on ``map_location``)."""
    path = Path(path)
    if not path.is_file():
        raise DensekitError(f"checkpoint {path} not found; give a run folder or a .pt file from its checkpoints/")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated/foreign files
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise DensekitError(f"checkpoint {path} is corrupt or not a densekit checkpoint ({first}); "
                            "use another checkpoint, e.g. checkpoints/last.pt or best.pt") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DensekitError(f"{path} is not a densekit checkpoint (no format marker); to load plain "
                            "weights use create_model(name, weights=PATH)")
    payload = checked(payload, path)
    if str(map_location) != "cpu":
        payload = _to(payload, map_location)
    payload["path"] = str(path)
    return payload


def checked(payload: dict, path: str | Path) -> dict:
    """``payload`` (a dict read with the densekit format marker) when its version is one this densekit
    reads and every field is sound; else one line naming the file and the first bad field. What every
    reader of a densekit checkpoint goes through (``load_checkpoint``, ``models.weights``)."""
    if isinstance(payload.get("version"), int) and payload["version"] > VERSION:
        raise DensekitError(f"{path} was written by a newer densekit (format version {payload['version']}); upgrade densekit")
    try:
        validate(payload)
    except _Damaged as err:
        raise DensekitError(f"checkpoint {path} is damaged: {err}; use another checkpoint "
                            "(checkpoints/last.pt or best.pt) or retrain") from None
    return payload


def _to(obj, device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def resolve_checkpoint(run_or_checkpoint: str | Path, prefer: str = "best") -> Path:
    """A run folder means its best checkpoint (else last); a file means itself."""
    p = Path(run_or_checkpoint)
    if p.is_dir():
        found = RunFolder(p).find_checkpoint(prefer)
        if found is not None:
            return found
        raise DensekitError(f"run folder {p} has no checkpoints yet (checkpoints/best.pt or last.pt); "
                            "train it first or give a checkpoint file")
    if not p.exists():
        raise DensekitError(f"{p} not found; give a run folder or a checkpoint file")
    return p


def model_from_checkpoint(payload: dict, use_ema: bool = True) -> torch.nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (EMA weights when present and
    ``use_ema``). The architecture is built on the meta device first and compared with the file's
    tensors, so a checkpoint's arguments cannot claim more memory than its weights hold."""
    from ..models import create_model
    spec, where = payload["model"], payload.get("path", "the checkpoint")
    state = payload["ema_state_dict"] if use_ema and payload.get("ema_state_dict") else payload["state_dict"]
    try:
        with torch.device("meta"):
            skeleton = create_model(spec["name"], **spec["args"])
    except DensekitError as err:
        raise DensekitError(f"{where}: {err}") from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:1]
        raise DensekitError(f"{where}: its weights do not fit its model {spec['name']} {spec['args']} "
                            f"(first difference: {diff[0][0]}); the file is damaged or was edited")
    data = payload.get("data")
    if data is not None and skeleton.model_args.get("num_classes") not in (None, len(data["classes"])):
        raise DensekitError(f"{where}: its model has {skeleton.model_args['num_classes']} outputs but "
                            f"{len(data['classes'])} class names; the file is damaged or was edited")
    model = create_model(spec["name"], **spec["args"])
    model.load_state_dict(state)
    return model
