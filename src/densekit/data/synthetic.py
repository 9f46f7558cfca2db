"""``synthetic:n=1000,classes=10,size=32,channels=3``: generated images, for benchmarks and tests.

Deterministic from ``seed``: each class has a smooth random template (a 4 x 4 pattern upsampled)
and every image is its class's template plus per-image noise and a random brightness shift, so a
model can learn it (accuracy means something) yet it is not trivial. ``test`` has ``n // 5`` items
(``test=`` overrides) drawn from a different stream than ``train``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import DensekitError
from .dataset import MissingSplit, TensorImageDataset
from .limits import MAX_ARRAY_BYTES, MAX_CLASSES

DEFAULTS = {"n": 1000, "classes": 10, "size": 32, "channels": 3, "seed": 0, "test": None, "noise": 40}


def parse_options(arg: str) -> dict:
    opts = dict(DEFAULTS)
    for part in filter(None, (arg or "").split(",")):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in DEFAULTS:
            raise DensekitError(f"synthetic option {part!r}: use key=value with keys {', '.join(DEFAULTS)}")
        try:
            opts[key.strip()] = int(value)
        except ValueError:
            raise DensekitError(f"synthetic option {part!r}: the value must be an integer") from None
    return opts


def make_synthetic(split: str, arg: str = "", channels: int | None = None, image_size=None) -> TensorImageDataset:
    o = parse_options(arg)
    if split not in ("train", "test"):
        raise MissingSplit(f"synthetic has splits train and test, not {split!r}")
    c, k = channels or o["channels"], o["classes"]
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size or (o["size"], o["size"]))
    n = o["n"] if split == "train" else (o["test"] if o["test"] is not None else max(o["n"] // 5, 1))
    if min(n, k, c, h, w) < 1:
        raise DensekitError("synthetic needs n, classes, channels and size of at least 1")
    if n * c * h * w > MAX_ARRAY_BYTES or k > MAX_CLASSES:
        raise DensekitError(f"synthetic with n={n}, classes={k}, size {c}x{h}x{w}: at most {MAX_CLASSES:,} classes "
                            f"and {MAX_ARRAY_BYTES:,} bytes of images")
    g = torch.Generator().manual_seed(o["seed"])
    templates = F.interpolate(torch.rand(k, c, 4, 4, generator=g) * 255, size=(h, w), mode="bilinear",
                              align_corners=False)
    g.manual_seed(o["seed"] * 2 + (1 if split == "train" else 2))  # train and test: different streams
    labels = torch.randint(0, k, (n,), generator=g)
    images = torch.empty(n, c, h, w, dtype=torch.uint8)
    for i in range(0, n, 4096):  # in chunks: float intermediates never exceed one chunk
        lab = labels[i:i + 4096]
        x = templates[lab] + o["noise"] * torch.randn(len(lab), c, h, w, generator=g)
        x += 30 * torch.randn(len(lab), 1, 1, 1, generator=g)
        images[i:i + 4096] = x.round().clamp(0, 255).to(torch.uint8)
    return TensorImageDataset(images, labels, [f"class{j}" for j in range(k)], name=f"synthetic:{arg}" if arg else "synthetic")
