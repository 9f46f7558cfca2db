"""Decoding one image file of any common format and mode into the uint8 C x H x W tensor a model takes.

Shared by the folder and TFRecord sources and by ``predict`` on user images, so training and
prediction see identical pixels. The decoding itself lives in ``densekit/decode.py`` (numpy and
Pillow only, so that the torch-free runtime decodes the same pixels; the modes it accepts are
listed there); this wraps it for torch and converts uint8 tensors batched.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..errors import DensekitError
from ..decode import EXTENSIONS, image_mode_channels, read_image, to_size as _to_size

__all__ = ["EXTENSIONS", "conform", "decode_image", "image_mode_channels"]


def decode_image(source: str | Path | bytes | Image.Image | torch.Tensor, channels: int | None = None, size=None,
                 name: str | None = None) -> torch.Tensor:
    """Decode a file path, encoded bytes or a PIL image into uint8 (C, H, W); a uint8 tensor
    (C, H, W) is converted to ``channels`` and ``size`` the same way.

    ``channels`` None keeps grayscale images at 1 channel and makes everything else RGB.
    Any unreadable, truncated or non-image input raises ``DensekitError`` naming ``name`` (or the path)."""
    if torch.is_tensor(source):
        if source.dtype != torch.uint8 or source.dim() != 3:
            raise DensekitError(f"{name or 'image tensor'}: expected uint8 C x H x W, got {source.dtype} "
                                f"{tuple(source.shape)}")
        return conform(source[None], channels, size)[0]
    return torch.from_numpy(read_image(source, channels, size, name))


def conform(images: torch.Tensor, channels: int | None = None, size=None) -> torch.Tensor:
    """A uint8 batch (N, C, H, W) to ``channels`` and ``size``, batched: gray repeats to RGB, RGB goes
    to gray with the ITU-R 601-2 luma weights Pillow uses, sizes change by antialiased bilinear."""
    hw = _to_size(size)
    if channels is not None and images.shape[1] != channels:
        if channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        elif channels == 1 and images.shape[1] == 3:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DensekitError(f"cannot turn {images.shape[1]}-channel images into {channels} channels; "
                                "use --channels 1 or 3")
    if hw is not None and tuple(images.shape[2:]) != hw:
        x = torch.nn.functional.interpolate(images.float(), size=hw, mode="bilinear", antialias=True,
                                            align_corners=False)
        images = x.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()
