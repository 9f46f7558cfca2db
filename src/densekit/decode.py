"""Decoding one image file of any common format and mode into the uint8 C x H x W array a model
takes, with numpy and Pillow only (no torch), so that the torch-free runtime and training decode
identical pixels: ``data/images.py`` wraps this for torch.

Only the formats of ``FORMATS`` are opened: Pillow decodes some others whole while "opening"
them (an ICO whose 16 x 16 directory entry holds a 13000 x 13000 PNG), before any size check
could run. The EXIF orientation tag is applied, as a browser or a photo viewer shows the image,
so that training, ``predict`` and the server see a phone photo upright alike.

Modes: L/1 and 16-bit (I;16, I) are grayscale; RGB, RGBA/LA and P (palette, possibly transparent)
composite onto white, the usual background of a transparent image in a viewer; CMYK goes through
Pillow's conversion. ``channels`` 1 or 3 forces the model's channel count; ``size`` (int or (H, W))
resizes with Pillow's antialiased bilinear filter.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DensekitError
from .limits import MAX_IMAGE_FILE_BYTES, MAX_IMAGE_PIXELS

# Pillow's plugins raise any of these on damaged or hostile input (found by fuzzing, tests/test_fuzz_readers.py).
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  KeyError, TypeError, ZeroDivisionError, OverflowError, Image.DecompressionBombError)
# densekit refuses images above its own, lower MAX_IMAGE_PIXELS before decoding, so Pillow's warning
# would only ever come just before densekit's one-line error.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# The documented formats (docs/data.md) and their Pillow names; EXTENSIONS are their file suffixes.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ORIENTATION = 0x0112  # the EXIF/TIFF tag
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def to_size(size) -> tuple[int, int] | None:
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


def _gray_palette(img: Image.Image) -> bool:
    pal = img.getpalette() or []
    rgb = np.asarray(pal[: 3 * (len(pal) // 3)]).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


def is_gray(img: Image.Image) -> bool:
    return img.mode in _GRAY_MODES or (img.mode == "P" and _gray_palette(img))


def read_image(source: str | Path | bytes | Image.Image, channels: int | None = None, size=None,
               name: str | None = None) -> np.ndarray:
    """Decode a file path, encoded bytes or a PIL image into a uint8 (C, H, W) array.

    ``channels`` None keeps grayscale images at 1 channel and makes everything else RGB.
    Any unreadable, truncated or non-image input raises ``DensekitError`` naming ``name`` (or the path)."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "image bytes")
    hw = to_size(size)
    try:
        img = source if isinstance(source, Image.Image) else _open(source, label)
        if channels is None:
            channels = 1 if is_gray(img) else 3
        if hw is not None and img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target size.
            img.draft("L" if channels == 1 else "RGB", (hw[1], hw[0]))
        if img.width * img.height > MAX_IMAGE_PIXELS:  # before any pixel is decoded
            raise DensekitError(f"{label}: {img.width}x{img.height} pixels is above densekit's limit of "
                                f"{MAX_IMAGE_PIXELS:,} per image; downscale the image first")
        img.load()
        img = _upright(img)
        img = _convert(img, channels)
        if hw is not None and img.size != (hw[1], hw[0]):
            img = img.resize((hw[1], hw[0]), Image.BILINEAR)
    except FileNotFoundError:
        raise DensekitError(f"{label}: no such file") from None
    except DECODE_ERRORS as err:
        raise DensekitError(f"{label}: not a readable image ({_why(err)}); replace or delete the file") from None
    a = np.array(img)  # a writable copy of Pillow's buffer
    a = a[:, :, None] if a.ndim == 2 else a
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation tag says (2..8); unchanged (no copy) without one."""
    if img.getexif().get(ORIENTATION, 1) in (1, None):
        return img
    return ImageOps.exif_transpose(img)


def _why(err: Exception) -> str:
    # Pillow names the in-memory buffer it was given ("cannot identify image file <_io.BytesIO ...>")
    return ("not one of the formats densekit reads: PNG, JPEG, BMP, GIF, WebP, TIFF"
            if isinstance(err, UnidentifiedImageError) else str(err) or type(err).__name__)


def _open(source: str | Path | bytes, label: str) -> Image.Image:
    # From memory, never from a file object: Pillow reads some chunks (a PNG's IDAT) with one
    # fp.read(claimed length), which on a file allocates a lying length (2 GB) before reading.
    if not isinstance(source, (bytes, bytearray, memoryview)):
        with open(source, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_IMAGE_FILE_BYTES:
                raise DensekitError(f"{label}: more than densekit's limit of {MAX_IMAGE_FILE_BYTES:,} bytes per "
                                    "image file; downscale or recompress it")
            source = f.read()
    return Image.open(io.BytesIO(source), formats=FORMATS)


def image_mode_channels(path) -> int:
    """1 for a grayscale image, 3 otherwise, reading only the header."""
    try:
        with _open(path, str(path)) as img:
            return 1 if is_gray(img) else 3
    except DECODE_ERRORS as err:
        raise DensekitError(f"{path}: not a readable image ({_why(err)}); replace or delete the file") from None


def expand_images(paths) -> list[Path]:
    """Files as given, folders expanded to the images inside them (sorted, recursively)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS)
        elif p.exists():
            out.append(p)
        else:
            raise DensekitError(f"{p} not found; give image files or folders of images")
    return out


def decode_all(images, decode) -> tuple[list[dict], list[tuple[int, object]]]:
    """The first half of predict, for both backends: ``images`` (one or a list; paths and folders
    expanded) decoded by ``decode(item, name)``. Returns the results list, ``{"file"}`` per image or
    ``{"file", "error"}`` for one that cannot be decoded, and (slot in results, decoded) pairs."""
    items = images if isinstance(images, (list, tuple)) else [images]
    if items and isinstance(items[0], (str, Path)):
        items = expand_images(items)
    results, batch = [], []
    for item in items:
        name = str(item) if isinstance(item, (str, Path)) else None
        try:
            decoded = decode(item, name)
        except DensekitError as err:
            results.append({"file": name, "error": str(err)})
            continue
        results.append({"file": name})
        batch.append((len(results) - 1, decoded))
    return results, batch
