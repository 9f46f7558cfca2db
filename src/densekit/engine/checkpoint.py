"""The checkpoint format: one ``torch.save`` dict that says what it holds, loaded with
``weights_only=True`` so a checkpoint can never run code.

    format: "densekit-checkpoint", version: 1
    kind: "training" (everything to resume) | "weights" (model only)
    model: {"name", "args"}        rebuilds the architecture through the registry
    data: {"classes", "mean", "std", "channels", "image_size"}   what predict must apply
    state_dict, ema_state_dict?    model weights (EMA weights when trained with EMA)
    optimizer?, scaler?, progress?, rng?, config?    training state (kind "training")
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from ..errors import DensekitError

FORMAT, VERSION = "densekit-checkpoint", 1


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise DensekitError(f"checkpoint {path} not found; give a run folder or a .pt file from its checkpoints/")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated/foreign files
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise DensekitError(f"checkpoint {path} is corrupt or not a densekit checkpoint ({first}); "
                            "use another checkpoint, e.g. checkpoints/last.pt or best.pt") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DensekitError(f"{path} is not a densekit checkpoint (no format marker); to load plain "
                            "weights use create_model(name, weights=PATH)")
    if payload.get("version", 0) > VERSION:
        raise DensekitError(f"{path} was written by a newer densekit (format version {payload['version']}); upgrade densekit")
    return payload


def resolve_checkpoint(run_or_checkpoint: str | Path, prefer: str = "best") -> Path:
    """A run folder means its best checkpoint (else last); a file means itself."""
    p = Path(run_or_checkpoint)
    if p.is_dir():
        for name in (prefer, "last", "best"):
            if (p / "checkpoints" / f"{name}.pt").is_file():
                return p / "checkpoints" / f"{name}.pt"
        raise DensekitError(f"run folder {p} has no checkpoints yet (checkpoints/best.pt or last.pt); "
                            "train it first or give a checkpoint file")
    if not p.exists():
        raise DensekitError(f"{p} not found; give a run folder or a checkpoint file")
    return p


def model_from_checkpoint(payload: dict, use_ema: bool = True):
    """Rebuild the model a checkpoint describes and load its weights (EMA weights when present)."""
    from ..models import create_model
    spec = payload["model"]
    model = create_model(spec["name"], **spec["args"])
    state = payload.get("ema_state_dict") if use_ema and payload.get("ema_state_dict") else payload["state_dict"]
    model.load_state_dict(state)
    return model
