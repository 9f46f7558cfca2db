"""decode_image: every format and mode a user's files come in, to the model's channels and size."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from datagen import ico_holding, write_image
from densekit import DensekitError
from densekit.data.images import conform, decode_image
from densekit.decode import read_image

FORMATS = {"png": ["L", "RGB", "RGBA", "P", "I;16", "1", "LA"], "jpeg": ["L", "RGB", "CMYK"],
           "bmp": ["L", "RGB", "P"], "gif": ["P", "L"], "webp": ["RGB", "RGBA"]}
CASES = [(fmt, mode) for fmt, modes in FORMATS.items() for mode in modes]


@pytest.mark.parametrize("fmt, mode", CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_any_format_and_mode_to_the_models_channels_and_size(tmp_path, fmt, mode, channels):
    path = write_image(tmp_path / f"x.{fmt}", size=(20, 14), mode=mode, fmt=fmt.upper())
    x = decode_image(path, channels=channels, size=(8, 10))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (channels, 8, 10)


@pytest.mark.parametrize("fmt, mode", CASES)
def test_channels_none_keeps_grayscale_gray(tmp_path, fmt, mode):
    path = write_image(tmp_path / f"x.{fmt}", size=(9, 7), mode=mode, fmt=fmt.upper())
    gray = mode in ("L", "I;16", "1", "LA") and fmt != "webp"  # WebP stores everything as RGB(A)
    assert decode_image(path).shape == ((1 if gray else 3), 7, 9)


def test_sixteen_bit_is_scaled_not_clipped():
    img = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert decode_image(buf.getvalue()).flatten().tolist() == [0, 100, 255]


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    img.putpixel((1, 0), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    x = decode_image(buf.getvalue(), channels=3)
    assert x[:, 0, 0].tolist() == [255, 0, 0] and x[:, 0, 1].tolist() == [255, 255, 255]


def test_truncated_and_non_image_files_raise_one_line_naming_the_file(tmp_path):
    good = write_image(tmp_path / "good.jpg", size=(64, 64), fmt="JPEG")
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:200])
    (tmp_path / "notes.png").write_text("these are not pixels")
    for name in ("cut.jpg", "notes.png"):
        with pytest.raises(DensekitError) as err:
            decode_image(tmp_path / name, channels=3, size=32)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DensekitError, match="missing.png: no such file"):
        decode_image(tmp_path / "missing.png")


def test_tensors_and_pil_images_take_the_same_path():
    pil = Image.fromarray(np.full((4, 6, 3), 200, np.uint8))
    assert decode_image(pil, channels=1, size=2).tolist() == [[[200, 200], [200, 200]]]
    assert decode_image(torch.full((1, 4, 4), 9, dtype=torch.uint8), channels=3).shape == (3, 4, 4)


def test_conform_gray_rgb_round_trip_and_resize():
    x = torch.randint(0, 256, (2, 1, 6, 6), dtype=torch.uint8)
    assert torch.equal(conform(conform(x, 3), 1), x)  # luma weights sum to 1
    assert conform(x, size=3).shape == (2, 1, 3, 3)


# -- issue 22: one decoder, the same for training, the runtime and the server --------------------

def test_only_the_documented_formats_are_opened(tmp_path):
    inner = io.BytesIO()
    Image.new("L", (3000, 3000)).save(inner, "PNG")          # 9 megapixels behind a 16 x 16 icon
    ico = tmp_path / "icon.png"
    ico.write_bytes(ico_holding(inner.getvalue()))
    for decode in (read_image, decode_image):
        with pytest.raises(DensekitError, match="not one of the formats densekit reads: PNG, JPEG"):
            decode(ico, channels=1, size=8)
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"):  # every documented one still reads
        buf = io.BytesIO()
        Image.new("RGB", (5, 4), (10, 20, 30)).save(buf, fmt)
        assert read_image(buf.getvalue()).shape == (3, 4, 5)


@pytest.mark.parametrize("orientation, turn", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270),
                                               (8, Image.Transpose.ROTATE_90), (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_exif_orientation_is_applied_by_every_route(tmp_path, orientation, turn):
    shown = Image.fromarray(np.arange(6 * 10, dtype=np.uint8).reshape(6, 10) * 4)   # what a viewer shows
    stored = shown.transpose(turn) if orientation in (2, 3) else shown.transpose(
        Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    stored.save(path, exif=exif)
    expected = np.asarray(shown)[None]
    assert np.array_equal(read_image(path), expected)                           # runtime and server
    assert np.array_equal(decode_image(path).numpy(), expected)                 # training and predict
    assert np.array_equal(read_image(path.read_bytes(), size=(6, 10)), expected)
