"""The Keras seed's picture of a dataset: a few random samples of each class, one row per class,
with the class name at the start of the row (multi-label: images holding that label)."""
from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from .dataset import ImageDataset


def sample_grid(ds: ImageDataset, per_class: int = 7, max_classes: int = 20, seed: int = 0,
                cell: int = 64) -> Image.Image:
    """An RGB image of ``per_class`` random samples for each of the first ``max_classes`` classes."""
    g = torch.Generator().manual_seed(seed)
    classes = list(range(min(len(ds.classes), max_classes)))
    font = ImageFont.load_default()
    label_w = 12 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(ds.classes[c], font=font))
                       for c in classes)
    grid = Image.new("RGB", (label_w + per_class * (cell + 4), len(classes) * (cell + 4) + 4), "white")
    draw = ImageDraw.Draw(grid)
    for row, c in enumerate(classes):
        # a multi-label set's row of label c: images holding c (among others)
        members = ((ds.labels[:, c] == 1) if ds.task == "multilabel" else (ds.labels == c)).nonzero().flatten()
        picks = members[torch.randperm(len(members), generator=g)[:per_class]]
        y = 4 + row * (cell + 4)
        draw.text((6, y + cell // 2 - 6), ds.classes[c], fill="black", font=font)
        for col, i in enumerate(picks.tolist()):
            x = ds[i][0]
            img = Image.fromarray(x[0].numpy(), "L") if x.shape[0] == 1 else Image.fromarray(x.permute(1, 2, 0).numpy(), "RGB")
            # Small images (28 px digits) scale up with NEAREST so their pixels stay visible.
            img = img.resize((cell, cell), Image.NEAREST if max(img.size) < cell else Image.BILINEAR)
            grid.paste(img.convert("RGB"), (label_w + col * (cell + 4), y))
    return grid
