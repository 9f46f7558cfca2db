"""``densekit data shapes OUT``: a multi-label set to generate here, images holding several drawn shapes.

Each image (32 x 32 RGB by default) is split into four cells; every shape kind is present with
probability 0.4 (at most four per image, one per cell), drawn at a random size, position and
colour over a noisy background, so the labels are *which kinds are present* (0 to 4 of them).
Images come in groups of four sharing a background tint (the ``group`` column), like the images
of one patient, to exercise ``--group-col``.

Written as PNG files plus the two table layouts of ChestX-ray14 and CheXpert (docs/data.md,
"Data from a table"):

- ``labels.csv``: ``image,labels,split,group`` with ``labels`` like ``circle|square``, ``none``
  for an image with no shape (train with ``--label-col labels --label-sep '|' --none-label none``);
- ``labels-wide.csv``: ``image,split,group`` then one column per shape holding 1 / 0, with 5% of
  entries ``-1`` (uncertain, whatever the truth) and absent shapes sometimes left empty (not
  mentioned), as CheXpert's labeler writes them (``--label-cols circle,square,...``).

Deterministic from ``seed``; the train / val / test sizes are ``n`` / ``n // 4`` / ``n // 4``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DensekitError
from ..limits import MAX_TABLE_ROWS

SHAPES = ("circle", "square", "triangle", "cross", "bar")
PRESENT = 0.4         # chance of each shape kind in an image
UNCERTAIN = 0.05      # share of wide-layout entries written as -1
UNMENTIONED = 0.3     # share of absent shapes written as an empty entry in the wide layout


def _draw(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, colour: tuple):
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif kind == "cross":
        w = max(1.0, r / 3)
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)
    else:  # bar: a thick diagonal line
        draw.line([(cx - r, cy + r), (cx + r, cy - r)], fill=colour, width=max(2, int(r / 2)))


def shapes_image(rng: np.random.Generator, present: list[str], size: int, tint: np.ndarray) -> Image.Image:
    """One image holding ``present`` (at most four kinds), one per quarter cell."""
    noise = rng.normal(0, 12, (size, size, 3)) + tint
    img = Image.fromarray(noise.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    cell = size / 2
    for kind, c in zip(present, rng.permutation(4)):
        r = cell * rng.uniform(0.28, 0.42)
        cx = (c % 2) * cell + cell / 2 + rng.uniform(-1, 1) * (cell / 2 - r)
        cy = (c // 2) * cell + cell / 2 + rng.uniform(-1, 1) * (cell / 2 - r)
        colour = tuple(int(v) for v in rng.integers(140, 256, 3))
        _draw(draw, kind, cx, cy, r, colour)
    return img


def write_shapes(out: str | Path, n: int = 2000, size: int = 32, seed: int = 0, overwrite: bool = False) -> dict:
    """Write the set into ``out`` (PNG files under ``images/`` and the two CSVs); returns a summary."""
    out = Path(out).expanduser()
    if not 1 <= n <= MAX_TABLE_ROWS // 2 or not 8 <= size <= 1024:
        raise DensekitError(f"shapes: n {n} and size {size}: give n from 1 to {MAX_TABLE_ROWS // 2:,} and a size "
                            "from 8 to 1024")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DensekitError(f"{out} already exists and is not empty; give --overwrite or another folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {"train": n, "val": max(n // 4, 1), "test": max(n // 4, 1)}
    narrow, wide, index = [], [], 0
    for split, count in counts.items():
        for _ in range(count):
            group = index // 4
            if index % 4 == 0:
                tint = rng.uniform(10, 90, 3)
            mask = rng.random(len(SHAPES)) < PRESENT
            present = [k for k, m in zip(SHAPES, mask) if m]
            if len(present) > 4:
                present = list(rng.choice(present, 4, replace=False))
            present = [k for k in SHAPES if k in present]      # the drawing order is the label order
            name = f"images/{index:06d}.png"
            shapes_image(rng, present, size, tint).save(out / name)
            narrow.append([name, "|".join(present) or "none", split, f"g{group}"])
            entries = []
            for k in SHAPES:
                u = rng.random()
                if u < UNCERTAIN:
                    entries.append("-1")
                elif k in present:
                    entries.append("1")
                else:
                    entries.append("" if u < UNCERTAIN + UNMENTIONED else "0")
            wide.append([name, split, f"g{group}", *entries])
            index += 1
    with open(out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "labels", "split", "group"], *narrow])
    with open(out / "labels-wide.csv", "w", newline="") as f:
        csv.writer(f).writerows([["image", "split", "group", *SHAPES], *wide])
    return {"out": str(out), "labels": list(SHAPES), "splits": counts, "size": size,
            "tables": [str(out / "labels.csv"), str(out / "labels-wide.csv")]}
