"""Weights files: densekit's own, torchvision state_dicts (including pre-0.4 key names) and safetensors.

densekit's own files are checkpoints (``engine/checkpoint.py`` defines the format and writes
them, ``save_weights`` included); one that names its format version is validated as
``load_checkpoint`` validates it (``checkpoint.checked``: version, fields, checksums) before its
weights are used. Any other dict with a ``state_dict`` key loads the same way. Files are read with ``weights_only=True`` so loading
a file can never run code.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import DensekitError

# Old torchvision DenseNet files name the layer's children "norm.1", "conv.2"; torchvision renames
# them on load with the same kind of pattern (its densenet.py, _load_state_dict).
_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\."
                     r"(weight|bias|running_mean|running_var|num_batches_tracked)$")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, keys normalised to densekit's (= torchvision's) names."""
    path = Path(path)
    if not path.is_file():
        raise DensekitError(f"weights file {path} not found; check the path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise many types for truncated or foreign files
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise DensekitError(f"weights file {path} is corrupt or not a weights file ({reason}); "
                            "give a .pt/.pth state_dict, a densekit checkpoint or a .safetensors file") from None
    if isinstance(state, dict) and state.get("format") == "densekit-checkpoint" and "version" in state:
        # The format's own check. Imported here: engine sits above models, and only this branch needs it.
        from ..engine.checkpoint import checked
        state = checked(state, path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]                       # densekit weights / training checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DensekitError(f"weights file {path} holds no state_dict (a dict of tensors); "
                            "save one with densekit.save_weights or torch.save(model.state_dict())")
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")                 # saved from DataParallel / DDP
        out[_LEGACY.sub(r"\1\2.\3", key)] = value
    return out


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file into ``model`` in place, adapting the head and the stem when they differ.

    A different number of classes keeps the model's freshly initialised classifier (with a warning:
    it needs training); a different number of input channels adapts the first convolution: summed
    over channels for 1-channel input, else repeated and rescaled so activations keep their scale.
    Anything else that does not match raises ``DensekitError``.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = _last(model, nn.Linear)
    stem = _first(model, nn.Conv2d)
    for key in list(state):
        if key not in own or state[key].shape == own[key].shape:
            continue
        if head and key.startswith(head + "."):
            warnings.warn(f"{Path(path).name}: classifier {key} is {tuple(state[key].shape)} in the file but "
                          f"{tuple(own[key].shape)} in the model: the head is re-initialised, train it before use",
                          stacklevel=2)
            del state[key]
        elif stem and key == stem + ".weight" and state[key].shape[0] == own[key].shape[0]:
            warnings.warn(f"{Path(path).name}: first convolution {key} adapted from {state[key].shape[1]} "
                          f"input channels to {own[key].shape[1]}", stacklevel=2)
            state[key] = adapt_stem(state[key], own[key].shape[1])
        else:
            raise DensekitError(f"weights file {path} does not fit this model: {key} is "
                                f"{tuple(state[key].shape)} in the file, {tuple(own[key].shape)} in the model; "
                                "build the model the file was saved from")
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")
               and not (head and k.startswith(head + "."))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise DensekitError(f"weights file {path} does not fit this model: "
                            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}; "
                            "build the model the file was saved from")
    model.load_state_dict(state, strict=False)
    return model


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a first-conv weight (out, c, kh, kw) to ``in_channels``: sum for grayscale (a gray image
    seen as c equal channels gives the same response), else tile and rescale by c / in_channels."""
    c = weight.shape[1]
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    reps = -(-in_channels // c)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (c / in_channels)


def _first(model: nn.Module, kind: type) -> str | None:
    return next((name for name, m in model.named_modules() if isinstance(m, kind)), None)


def _last(model: nn.Module, kind: type) -> str | None:
    names = [name for name, m in model.named_modules() if isinstance(m, kind)]
    return names[-1] if names else None
