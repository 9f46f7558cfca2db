"""The registry of data sources: ``load_dataset(source, split)`` and ``list_sources()``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import DensekitError
from .dataset import ImageDataset
from .loader import drop_unreadable
from .transforms import fit_dataset

# name -> (loader(split, data_dir, **options), one-line description)
_SOURCES: dict[str, tuple[Callable[..., ImageDataset], str]] = {}


def register_source(name: str, description: str):
    def wrap(fn):
        _SOURCES[name] = (fn, description)
        return fn
    return wrap


def list_sources() -> dict[str, str]:
    return {name: desc for name, (_, desc) in _SOURCES.items()}


def load_dataset(source: str, split: str = "train", data_dir: str | Path | None = None, *,
                 image_size=None, channels: int | None = None, skip_bad: bool = False, **options) -> ImageDataset:
    """Load ``split`` of a source: a registered name (``fashion-mnist``), ``kind:ARG``
    (``folder:PATH``, ``tfrecord:PATTERN``, ``synthetic:n=1000``, ``packed:DIR``) or a bare folder
    path (a packed import when it holds ``meta.json``, else an image folder).

    ``image_size`` (int or (H, W)) and ``channels`` (1 or 3) give every item the model's input
    shape, whatever the files hold; ``skip_bad`` leaves unreadable items out of the set (each item
    is decoded once to find them), with a warning, instead of stopping with an error."""
    kind, _, arg = source.partition(":")
    if kind not in _SOURCES and Path(source).expanduser().is_dir():
        kind, arg = "folder", source
    if kind not in _SOURCES:
        raise DensekitError(f"unknown dataset {source!r}: choose one of {', '.join(_SOURCES)} "
                            "(see `densekit data list`), or give a folder path")
    if kind == "folder" and arg and (Path(arg).expanduser() / "meta.json").is_file():
        kind = "packed"  # `densekit data import` output: read it directly, no decoding
    if image_size is not None and not isinstance(image_size, int):
        image_size = tuple(int(v) for v in image_size)
    if channels not in (None, 1, 3):
        raise DensekitError(f"channels must be 1 or 3, not {channels!r}")
    fn, _ = _SOURCES[kind]
    if arg:
        options["arg"] = arg
    ds = fn(split, Path(data_dir).expanduser() if data_dir else None, image_size=image_size,
            channels=channels, skip_bad=skip_bad, **options)
    ds.skip_bad = skip_bad
    if skip_bad:
        ds = drop_unreadable(ds)
    return fit_dataset(ds, channels, image_size)


def load_splits(source: str, data_dir=None, splits=("train", "val", "test"), **options) -> dict[str, ImageDataset]:
    """{split: dataset} of every split the source has (a flat folder: only train)."""
    from .dataset import MissingSplit
    found = {}
    for split in splits:
        try:
            found[split] = load_dataset(source, split, data_dir, **options)
        except MissingSplit:
            continue
    if not found:
        raise DensekitError(f"{source} has none of the splits {', '.join(splits)}")
    return found


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


@register_source("cifar10", "Krizhevsky's 32x32 colour images, 10 classes, 50k/10k (python-version pickles)")
def _cifar10(split, data_dir, **_):
    from .cifar import load_cifar
    return load_cifar("cifar10", split, data_dir)


@register_source("cifar100", "Krizhevsky's 32x32 colour images, 100 fine classes (cifar100:coarse for the 20 "
                 "superclasses), 50k/10k")
def _cifar100(split, data_dir, arg="fine", label=None, **_):
    from .cifar import load_cifar
    return load_cifar("cifar100", split, data_dir, label=label or arg)


@register_source("folder", "folder:PATH, one sub-folder per class (optionally under train/ val/ test/), "
                 "PNG/JPEG/BMP/GIF/WebP, streamed")
def _folder(split, data_dir, arg=None, channels=None, image_size=None, skip_bad=False, **_):
    from .folder import FolderDataset
    if not arg:
        raise DensekitError("folder needs a path: --dataset folder:PATH")
    return FolderDataset(arg, split, channels=channels, image_size=image_size, skip_bad=skip_bad)


@register_source("csv", "csv:FILE (or csv:train.csv,val=valid.csv,test=test.csv), image paths and labels in a "
                 "table, one or several labels per image, streamed")
def _csv(split, data_dir, arg=None, channels=None, image_size=None, skip_bad=False, **options):
    from .table_dataset import TableDataset
    if not arg:
        raise DensekitError("csv needs a table: --dataset csv:FILE.csv")
    return TableDataset(arg, split, channels=channels, image_size=image_size, skip_bad=skip_bad, **options)


@register_source("tfrecord", "tfrecord:PATTERN, TF-slim tf.train.Example shards ({split} in the pattern "
                 "picks splits), streamed")
def _tfrecord(split, data_dir, arg=None, channels=None, image_size=None, skip_bad=False, **_):
    from .tfrecord import TFRecordDataset
    if not arg:
        raise DensekitError("tfrecord needs a file pattern: --dataset 'tfrecord:data/quiz_{split}_*.tfrecord'")
    return TFRecordDataset(arg, split, channels=channels, image_size=image_size, skip_bad=skip_bad)


@register_source("synthetic", "synthetic:n=1000,classes=10,size=32,channels=3,seed=0, generated, for benchmarks")
def _synthetic(split, data_dir, arg="", channels=None, image_size=None, **_):
    from .synthetic import make_synthetic
    return make_synthetic(split, arg, channels=channels, image_size=image_size)


@register_source("packed", "packed:DIR, the output of `densekit data import` (uint8 .npy, memory-mapped)")
def _packed(split, data_dir, arg=None, **_):
    from .packed import load_packed
    if not arg:
        raise DensekitError("packed needs a folder: --dataset packed:DIR")
    return load_packed(arg, split)
