"""Decoding one image file of any common format and mode into the uint8 C x H x W tensor a model takes.

Shared by the folder and TFRecord sources and by ``predict`` on user images, so training and
prediction see identical pixels. Modes: L/1 and 16-bit (I;16, I) are grayscale; RGB, RGBA/LA and
P (palette, possibly transparent) composite onto white, the usual background of a transparent
image in a viewer; CMYK goes through Pillow's conversion. ``channels`` 1 or 3 forces the model's
channel count; ``size`` (int or (H, W)) resizes with Pillow's antialiased bilinear filter.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DensekitError
from .limits import MAX_IMAGE_FILE_BYTES, MAX_IMAGE_PIXELS

# Pillow's plugins raise any of these on damaged or hostile input (found by fuzzing, tests/test_fuzz_readers.py).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  KeyError, TypeError, ZeroDivisionError, OverflowError, Image.DecompressionBombError)
# densekit refuses images above its own, lower MAX_IMAGE_PIXELS before decoding, so Pillow's warning
# would only ever come just before densekit's one-line error.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _to_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(h), int(w)


def _eight_bit_gray(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale to 8 bits by scaling, not by clipping (Pillow's convert clips)."""
    a = np.asarray(img)
    if img.mode == "F":
        a = np.clip(a, 0, 255)
    else:
        a = a.astype(np.float64) * (255 / 65535) if a.max(initial=0) > 255 or img.mode.startswith("I;16") else a
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _convert(img: Image.Image, channels: int) -> Image.Image:
    if img.mode.startswith("I") or img.mode == "F":
        img = _eight_bit_gray(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("L" if channels == 1 else "RGB")


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
    label = name or (str(source) if isinstance(source, (str, Path)) else "image bytes")
    hw = _to_size(size)
    try:
        img = source if isinstance(source, Image.Image) else _open(source, label)
        if channels is None:
            channels = 1 if img.mode in _GRAY_MODES or (img.mode == "P" and _gray_palette(img)) else 3
        if hw is not None and img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target size.
            img.draft("L" if channels == 1 else "RGB", (hw[1], hw[0]))
        if img.width * img.height > MAX_IMAGE_PIXELS:  # before any pixel is decoded
            raise DensekitError(f"{label}: {img.width}x{img.height} pixels is above densekit's limit of "
                                f"{MAX_IMAGE_PIXELS:,} per image; downscale the image first")
        img.load()
        img = _convert(img, channels)
        if hw is not None and img.size != (hw[1], hw[0]):
            img = img.resize((hw[1], hw[0]), Image.BILINEAR)
    except FileNotFoundError:
        raise DensekitError(f"{label}: no such file") from None
    except _DECODE_ERRORS as err:
        raise DensekitError(f"{label}: not a readable image ({err}); replace or delete the file") from None
    a = np.array(img)  # a writable copy: torch refuses to wrap Pillow's read-only buffer
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


def _open(source: str | Path | bytes, label: str) -> Image.Image:
    # From memory, never from a file object: Pillow reads some chunks (a PNG's IDAT) with one
    # fp.read(claimed length), which on a file allocates a lying length (2 GB) before reading.
    if not isinstance(source, (bytes, bytearray)):
        with open(source, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_IMAGE_FILE_BYTES:
                raise DensekitError(f"{label}: more than densekit's limit of {MAX_IMAGE_FILE_BYTES:,} bytes per "
                                    "image file; downscale or recompress it")
            source = f.read()
    return Image.open(io.BytesIO(source))


def _gray_palette(img: Image.Image) -> bool:
    pal = img.getpalette() or []
    rgb = np.asarray(pal[: 3 * (len(pal) // 3)]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def image_mode_channels(path) -> int:
    """1 for a grayscale image, 3 otherwise, reading only the header."""
    try:
        with _open(path, str(path)) as img:
            return 1 if img.mode in _GRAY_MODES or (img.mode == "P" and _gray_palette(img)) else 3
    except _DECODE_ERRORS as err:
        raise DensekitError(f"{path}: not a readable image ({err}); replace or delete the file") from None


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
