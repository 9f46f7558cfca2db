"""A registry of named models: ``create_model(name, **overrides)`` and ``list_models(pattern)``.

``check_overrides`` validates constructor overrides against the builder's own signature (names,
annotated or default-inferred types, counts that must be positive) and a trial build on PyTorch's
``meta`` device, so a bad ``--model-arg`` is refused before any data is read.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
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


def parse_input_size(text: str, default_channels: int = 3) -> tuple[int, int, int]:
    """An ``--input-size`` as every verb reads it: ``C,H,W`` (or ``CxHxW``), or one side ``N``
    (square, ``default_channels``), to (C, H, W)."""
    try:
        parts = [int(p) for p in str(text).lower().replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1 and parts[0] > 0:
        return (default_channels, parts[0], parts[0])
    if len(parts) == 3 and min(parts) > 0:
        return tuple(parts)
    raise DensekitError(f"--input-size {text!r}: write C,H,W such as 3,32,32, or one side N such as 64")


def input_size(name: str, text: str | None = None) -> tuple[int, int, int]:
    """(C, H, W) of one input image for model ``name``: a given ``--input-size`` (one side N takes
    the model's own channels), else the model's own (3,224,224 when it records none)."""
    own = tuple(get_entry(name).meta.get("input_size", (3, 224, 224)))
    return own if text is None else parse_input_size(text, own[0])


def model_args(name: str, num_classes: int | None = None, in_channels: int | None = None, **overrides) -> dict:
    """The full constructor arguments of a named model with ``overrides`` applied.

    ``num_classes``/``in_channels`` of None keep the named config's; any other override is taken
    as given, None included (``bn_size=None`` removes the bottleneck)."""
    args = {**get_entry(name).defaults, **overrides}
    for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if value is not None:
            args[key] = value
    return args


# Set by the data, not by the user: the dataset's classes and (via --channels) its channels.
DATA_ARGS = {"num_classes": "the dataset's number of classes", "in_channels": "the dataset's channels (use --channels)"}
# create_model's own keywords, reachable through model_args too.
_LOADER_ARGS = {"weights": str}


def _kinds(builder, param: inspect.Parameter):
    """The accepted Python types of one constructor argument: its annotation, else its default's type."""
    try:
        hints = typing.get_type_hints(builder.__init__ if inspect.isclass(builder) else builder)
    except Exception:   # an annotation that does not evaluate: fall back to the default
        hints = {}
    kind = hints.get(param.name)
    if kind is None:
        default = param.default
        if default is inspect.Parameter.empty:
            return None
        kind = type(default) if default is not None else None
        return None if kind is None else ((tuple, list) if kind in (tuple, list) else (kind,))
    return tuple(typing.get_args(kind) or (kind,))


def _check_value(name: str, key: str, value, kinds) -> str | None:
    """Why ``value`` cannot be argument ``key`` of model ``name``, or None when it can."""
    if value is None:
        return None if type(None) in kinds else "may not be none"
    if isinstance(value, bool):
        return None if bool in kinds else f"expected {_names(kinds)}, not a true/false"
    if isinstance(value, int) and int not in kinds and float in kinds:
        value = float(value)
    if isinstance(value, float) and float in kinds:
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(value, int) and int in kinds:
        # Every integer knob of these builders counts something: layers, channels, a stride.
        return None if value >= 1 else "must be a whole number of at least 1"
    if isinstance(value, (list, tuple)) and (tuple in kinds or list in kinds):
        ok = value and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
        return None if ok else "must be a list of whole numbers of at least 1, e.g. [6,12,24,16]"
    if isinstance(value, str) and str in kinds:
        return None
    return f"expected {_names(kinds)}"


def _names(kinds) -> str:
    words = {int: "a whole number", float: "a number", str: "a word", bool: "true/false",
             tuple: "a list", list: "a list", type(None): "none"}
    return " or ".join(dict.fromkeys(words.get(k, getattr(k, "__name__", str(k))) for k in kinds))


def check_overrides(name: str, overrides: dict) -> None:
    """Refuse, as one ``DensekitError`` line, constructor overrides model ``name`` cannot take."""
    entry = get_entry(name)
    params = inspect.signature(entry.builder).parameters
    knobs = [p for p in params if p not in DATA_ARGS and p != "self"]
    for key, value in overrides.items():
        shown = f"--model-arg {key}={value!r}"
        if key in DATA_ARGS:
            raise DensekitError(f"{shown}: {key} is set from {DATA_ARGS[key]}, not by a model argument; drop it")
        if key in _LOADER_ARGS:
            if not isinstance(value, str) or not Path(value).expanduser().is_file():
                raise DensekitError(f"{shown}: give the path of an existing weights file")
            continue
        if key not in params or params[key].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            close = difflib.get_close_matches(key, knobs, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise DensekitError(f"{shown}: {name} has no argument {key!r}; {hint}its arguments: {', '.join(knobs)}")
        kinds = _kinds(entry.builder, params[key])
        why = _check_value(name, key, value, kinds) if kinds else None
        if why:
            raise DensekitError(f"{shown}: {why}")
    # The builder's own checks (compression in (0, 1], a known stem ...), on the meta device:
    # no memory is allocated and no weights are initialised for real.
    import torch
    args = {k: v for k, v in model_args(name, **overrides).items() if k not in _LOADER_ARGS}
    try:
        with torch.device("meta"):
            entry.builder(**args)
    except (ValueError, TypeError, RuntimeError, KeyError, IndexError) as err:
        given = " ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise DensekitError(f"--model-arg {given}: model {name!r} refuses it "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None


def create_model(name: str, num_classes: int | None = None, in_channels: int | None = None,
                 weights: str | None = None, features_only: bool = False, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` replace any constructor argument.

    ``weights`` loads a state_dict file (densekit, torchvision or safetensors format);
    ``features_only`` returns a backbone whose forward gives every stage's output."""
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
    if weights is not None:
        from .weights import load_weights
        load_weights(model, weights)
    if features_only:
        from .features import FeatureExtractor
        return FeatureExtractor(model)
    return model
