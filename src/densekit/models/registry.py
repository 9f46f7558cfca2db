"""A registry of named models: ``create_model(name, **overrides)`` and ``list_models(pattern)``."""
from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import DensekitError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    defaults: dict = field(default_factory=dict)   # constructor arguments of this named config
    meta: dict = field(default_factory=dict)       # paper figures, input size, source


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, builder: Callable[..., nn.Module], meta: dict | None = None, **defaults):
    """Register ``name`` as ``builder(**defaults)``; ``create_model`` overrides any default."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, builder, defaults, meta or {})


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise DensekitError(f"unknown model {name!r}: {hint}run `densekit models` to list them") from None


def list_models(pattern: str = "*") -> list[str]:
    """Names of registered models matching a shell-style pattern, in registration order."""
    return [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]


def model_args(name: str, num_classes: int | None = None, in_channels: int | None = None, **overrides) -> dict:
    """The full constructor arguments of a named model with ``overrides`` applied.

    ``num_classes``/``in_channels`` of None keep the named config's; any other override is taken
    as given, None included (``bn_size=None`` removes the bottleneck)."""
    args = {**get_entry(name).defaults, **overrides}
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if value is not None:
            args[key] = value
    return args


def create_model(name: str, num_classes: int | None = None, in_channels: int | None = None,
                 weights: str | None = None, features_only: bool = False, pretrained: bool = False,
                 **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace any constructor argument.

    ``weights`` loads a state_dict file (densekit, torchvision or safetensors format);
    ``pretrained`` loads torchvision's ImageNet weights of the DenseNets, downloaded once into the
    densekit cache and verified (``models/pretrained.py``); another ``num_classes`` gets a fresh
    head, other ``in_channels`` an adapted stem. ``features_only`` returns a backbone whose
    forward gives every stage's output."""
    if pretrained and weights is not None:
        raise DensekitError("give either pretrained=True (--pretrained) or a weights file (--weights), not both")
    entry = get_entry(name)
    args = model_args(name, num_classes=num_classes, in_channels=in_channels, **overrides)
    try:
        model = entry.builder(**args)
    except TypeError as err:
        raise DensekitError(f"model {name!r} does not take these arguments ({err}); "
                            "see `densekit summary` for its knobs") from None
    except ValueError as err:          # the constructors' own checks: a bad stem, compression ...
        raise DensekitError(f"model {name!r}: {err}") from None
    model.model_name = name
    model.model_args = args
    if pretrained:
        from .pretrained import pretrained_file
        weights = pretrained_file(name)
    if weights is not None:
        from .weights import load_weights
        load_weights(model, weights)
    if features_only:
        from .features import FeatureExtractor
        return FeatureExtractor(model)
    return model
