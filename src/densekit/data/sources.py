"""The registry of data sources: ``load_dataset(source, split)`` and ``list_sources()``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DensekitError
from .dataset import ImageDataset

# name -> (loader(split, data_dir, **options), one-line description)
_SOURCES: dict[str, tuple[Callable[..., ImageDataset], str]] = {}


def register_source(name: str, description: str):
    def wrap(fn):
        _SOURCES[name] = (fn, description)
        return fn
    return wrap


def list_sources() -> dict[str, str]:
    return {name: desc for name, (_, desc) in _SOURCES.items()}


def load_dataset(source: str, split: str = "train", data_dir: str | Path | None = None, **options) -> ImageDataset:
    """Load ``split`` of a source: a registered name (``fashion-mnist``) or ``kind:ARG`` (``folder:PATH``)."""
    kind, _, arg = source.partition(":")
    if kind not in _SOURCES:
        raise DensekitError(f"unknown dataset {source!r}: choose one of {', '.join(_SOURCES)} "
                            "(see `densekit data list`)")
    fn, _ = _SOURCES[kind]
    if arg:
        options["arg"] = arg
    return fn(split, Path(data_dir) if data_dir else None, **options)


@register_source("fashion-mnist", "Zalando's 28x28 grayscale clothing, 10 classes, 60k/10k (IDX files)")
def _fashion_mnist(split, data_dir, **_):
    from .idx import load_idx
    return load_idx("fashion-mnist", split, data_dir)


@register_source("mnist", "LeCun's 28x28 handwritten digits, 10 classes, 60k/10k (IDX files)")
def _mnist(split, data_dir, **_):
    from .idx import load_idx
    return load_idx("mnist", split, data_dir)


@register_source("digits", "scikit-learn's 8x8 digits, 10 classes, 1,437/360 (offline, for tests)")
def _digits(split, data_dir, **_):
    from .digits import load_digits
    return load_digits(split)
