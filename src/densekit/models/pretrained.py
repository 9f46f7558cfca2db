"""ImageNet weights for the DenseNets: torchvision's published files, fetched once and verified.

torchvision names each file ``<model>-<first 8 hex digits of its SHA-256>.pth`` (torch.hub's
convention); densekit checks that prefix after downloading, keeps the file in its cache
(``$DENSEKIT_CACHE/weights`` or ``~/.cache/densekit/weights``) and reads it with
``weights_only=True`` through ``weights.load_weights``, which renames torchvision's pre-0.4
keys (``norm.1`` -> ``norm1``), re-initialises a head of another size and adapts the stem to 1
or 4 channels. ``$DENSEKIT_WEIGHTS_URL`` replaces the download base (a mirror, or a local
server in the tests); ``DENSEKIT_OFFLINE=1`` never downloads and says which file to put where.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DensekitError

BASE_URL = "https://download.pytorch.org/models/"

# name -> torchvision's file (ImageNet-1k top-1 as torchvision reports it, for the docs).
FILES = {
    "densenet121": "densenet121-a639ec97.pth",    # 74.43%
    "densenet169": "densenet169-b2777c0a.pth",    # 75.60%
    "densenet201": "densenet201-c1103571.pth",    # 76.90%
    "densenet161": "densenet161-8d451a50.pth",    # 77.14%
}

# The normalisation the files were trained with (torchvision's ImageNet transforms), RGB.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INPUT_SIZE = 224


def cache_dir() -> Path:
    root = os.environ.get("DENSEKIT_CACHE") or Path.home() / ".cache" / "densekit"
    return Path(root).expanduser() / "weights"


def has_pretrained(name: str) -> bool:
    return name in FILES


def pretrained_file(name: str) -> Path:
    """The verified local path of ``name``'s ImageNet weights, downloading them on first use."""
    from ..data.download import download, file_digest
    if name not in FILES:
        raise DensekitError(f"no pretrained weights for {name!r}: --pretrained covers {', '.join(FILES)}; "
                            "for another model give a local file with --weights PATH")
    file = FILES[name]
    digest = file.rsplit("-", 1)[1].split(".")[0]
    path = cache_dir() / file
    if path.is_file():
        if file_digest(path, "sha256").startswith(digest):
            return path
        path.unlink()     # a damaged cache entry is fetched again, never trusted
    url = os.environ.get("DENSEKIT_WEIGHTS_URL", BASE_URL).rstrip("/") + "/" + file
    where = f"download {url} and put it at {path} (or pass --weights PATH)"
    if os.environ.get("DENSEKIT_OFFLINE") == "1":
        raise DensekitError(f"{name} pretrained weights are not in the cache and downloads are off "
                            f"(DENSEKIT_OFFLINE=1): {where}")
    try:
        return download([url], path, sha256_prefix=digest)
    except DensekitError as err:
        raise DensekitError(f"{err}; offline, {where}") from None


def pretrained_stats(channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) to normalise ``channels``-channel images for the ImageNet weights. A grayscale
    stem is the sum of the RGB filters (``weights.adapt_stem``), exact for a gray image under one
    mean and std: the channels' averages; extra channels repeat the RGB statistics cyclically."""
    if channels == 1:
        return [sum(MEAN) / 3], [sum(STD) / 3]
    return [MEAN[i % 3] for i in range(channels)], [STD[i % 3] for i in range(channels)]
