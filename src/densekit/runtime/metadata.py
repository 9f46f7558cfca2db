"""What an exported model says about itself: one schema for ONNX ``metadata_props``, TorchScript
extra files and safetensors metadata, all of which hold string -> string maps.

Each field is stored under its own key as a JSON value, so that generic tools (Netron,
``onnx.load``, ``safetensors``' header) show them readably and nothing has to be guessed:

    format "densekit-export", format_version 1
    classes [names]; mean, std [per channel]; channels; image_size [h, w]
    input {"name", "dtype", "layout", "range", "normalised_in_graph"}; output {"name", "kind"}
    tta "none" | "flip"; tta_in_graph (flip views averaged inside the graph)
    folded_batchnorm (BatchNorm layers folded into the convolution before them)
    model {"name", "args"}; weights "ema" | "plain"; dataset
    metrics {"test_top1", ...} from the run's summary.json ({} without one)
    versions {"densekit", "torch", "opset"?}
    task, temperature, thresholds, reject_below, ood_threshold, quantization (null | "int8" | "bf16"),
    gate (the int8/bf16 accuracy gate's figures, ``workflows/verify.py``)   the rest of ``spec.InputSpec``
                                (``to_metadata``); files written before them read as the defaults

Fields beyond ``FIELDS`` are stored and read back the same way, so ``InputSpec`` grows in one place.
"""
from __future__ import annotations

import json

from ..errors import DensekitError

FORMAT, FORMAT_VERSION = "densekit-export", 1
FIELDS = ("classes", "mean", "std", "channels", "image_size", "input", "output", "tta", "tta_in_graph",
          "folded_batchnorm", "model", "weights", "dataset", "metrics", "versions")


def to_strings(meta: dict) -> dict[str, str]:
    """The metadata as a string map (JSON values), with the format marker."""
    missing = [k for k in FIELDS if k not in meta]
    if missing:
        raise ValueError(f"export metadata lacks {', '.join(missing)}")
    out = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    out.update({k: json.dumps(v) for k, v in meta.items()})
    return out


def from_strings(props: dict[str, str], source: str) -> dict:
    """Parse ``to_strings``' map back; ``source`` names the file in errors."""
    if props.get("format") != FORMAT:
        raise DensekitError(f"{source} was not exported by densekit (no '{FORMAT}' metadata); "
                            "export it with `densekit export RUN --format onnx`")
    version = props.get("format_version", str(FORMAT_VERSION))
    if not version.isdigit() or len(version) > 6:
        raise DensekitError(f"{source}: metadata 'format_version' must be a whole number, got {version[:20]!r}; "
                            "export the model again")
    if int(version) > FORMAT_VERSION:
        raise DensekitError(f"{source} was exported by a newer densekit (format version "
                            f"{version}); upgrade densekit")
    out = {}
    for key in FIELDS:
        if key not in props:
            raise DensekitError(f"{source}: its metadata has no '{key}'; export the model again")
        try:
            out[key] = json.loads(props[key])
        except ValueError as err:
            raise DensekitError(f"{source}: metadata '{key}' is not JSON ({err}); export the model again") from None
    _check_shapes(out, source)
    for key, value in props.items():   # later fields (InputSpec's); another tool's non-JSON entries are not ours
        if key not in out and key not in ("format", "format_version"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                pass
    return out


# The fields the model card and the runtime read besides InputSpec's (which InputSpec.from_metadata
# checks): each must have its documented type, so nothing downstream indexes a list or a number.
_TYPES = {"model": dict, "metrics": dict, "versions": dict, "input": dict, "output": dict}


def _check_shapes(meta: dict, source: str):
    for key, kind in _TYPES.items():
        if not isinstance(meta[key], kind):
            raise DensekitError(f"{source}: metadata '{key}' must be a JSON object, got "
                                f"{type(meta[key]).__name__}; export the model again")
    model = meta["model"]
    if not isinstance(model.get("name"), str) or not isinstance(model.get("args", {}), dict):
        raise DensekitError(f"{source}: metadata 'model' must be {{\"name\": str, \"args\": {{...}}}}, got "
                            f"{str(model)[:60]}; export the model again")
    if meta["dataset"] is not None and not isinstance(meta["dataset"], str):
        raise DensekitError(f"{source}: metadata 'dataset' must be a name or null; export the model again")
