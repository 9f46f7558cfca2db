"""Reading the images of a request within limits: bytes, files, pixels and time.

Every check happens before the work it protects: the declared ``Content-Length`` before any
byte is read, the running byte count while the body streams in (a chunked upload declares
none; so a request holds at most ``max_bytes`` in memory), the number of file parts while the
multipart body is parsed, and the pixel counts from
the image headers before Pillow decodes anything (a 100 KB PNG can claim 50,000 x 50,000
pixels: a decompression bomb), per image and summed over the request. Only the formats the
decoder reads (``densekit.decode.FORMATS``) are opened: Pillow decodes an ICO's embedded PNG
whole while "opening" it. Each failure is a ``RequestError``: an HTTP status, a short code
and one line saying what to change.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import anyio
from PIL import Image

from ..decode import DECODE_ERRORS, FORMATS
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

RAW_TYPES = ("application/octet-stream",)  # besides image/*


class RequestError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20       # one request's body
    max_files: int = 64               # images in one request
    max_pixels: int = 25_000_000      # one image's width x height, from its header
    max_request_pixels: int = 100_000_000  # all images of one request together: bounds its decoding time
    body_timeout: float = 30.0        # seconds to receive the whole body


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_length(request: Request, limits: Limits):
    """Refuse a body whose declared length is over the limit before reading any of it."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise RequestError(400, "bad_content_length", f"Content-Length {declared!r} is not a number of bytes")
    if int(declared) > limits.max_bytes:
        raise RequestError(413, "too_large", f"the body is {int(declared):,} bytes; the limit is "
                           f"{limits.max_bytes:,} (send fewer or smaller images)")


async def read_body(request: Request, limits: Limits) -> bytes:
    """The whole body, stopped with an error as soon as it passes the byte limit or the time limit."""
    check_length(request, limits)
    chunks, total = [], 0
    try:
        with anyio.fail_after(limits.body_timeout):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limits.max_bytes:
                    raise RequestError(413, "too_large", f"the body passed the limit of {limits.max_bytes:,} bytes "
                                       "(send fewer or smaller images)")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, "body_timeout", f"the body did not arrive within {limits.body_timeout:g} s; "
                           "send it faster or in a smaller request") from None
    except ClientDisconnect:
        raise RequestError(400, "client_disconnected", "the client closed the connection mid-body") from None
    return b"".join(chunks)


async def _once(data: bytes):
    yield data


async def read_images(request: Request, limits: Limits) -> list[tuple[str | None, bytes]]:
    """(file name or None, encoded bytes) of each image in the request: the file parts of a
    multipart/form-data body, or the whole body for an image/* content type."""
    kind = content_type(request)
    if kind != "multipart/form-data" and not kind.startswith("image/") and kind not in RAW_TYPES:
        raise RequestError(415, "unsupported_media_type", f"content type {kind or 'none'!r} is not accepted: send "
                           "multipart/form-data with image files, or one image as the body with an image/* type")
    body = await read_body(request, limits)
    if kind == "multipart/form-data":
        parser = MultiPartParser(request.headers, _once(body), max_files=limits.max_files,
                                 max_fields=limits.max_files)
        try:
            form = await parser.parse()
        except MultiPartException as err:
            if err.message.startswith("Too many files"):
                raise RequestError(413, "too_many_files", f"a request may hold at most {limits.max_files} "
                                   "images; split it into several requests") from None
            raise RequestError(400, "bad_multipart", f"the multipart body is malformed: {err.message}") from None
        try:
            fields = [key for key, value in form.multi_items() if isinstance(value, str)]
            if fields:
                raise RequestError(400, "unexpected_field", f"unexpected form field {fields[0]!r}: send images as "
                                   "file parts and top_k as a query parameter (?top_k=3)")
            files = [(value.filename, await value.read()) for _, value in form.multi_items()]
        finally:
            await form.close()
    else:
        files = [(None, body)]
    if not files:
        raise RequestError(400, "no_image", "the request holds no image: attach image files")
    for name, data in files:
        if not data:
            raise RequestError(400, "empty_image", f"{name or 'the body'} is empty: send the image's bytes")
    return files


def pixels(data: bytes, name: str | None, max_pixels: int) -> int:
    """Width x height of the image in ``data`` from its header (no pixel decoded), within ``max_pixels``."""
    label = name or "the body"
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = img.size
    except Image.DecompressionBombError:
        raise RequestError(413, "too_many_pixels", f"{label} claims more pixels than Pillow allows; the limit is "
                           f"{max_pixels:,} (send a smaller image)") from None
    except DECODE_ERRORS as err:
        raise RequestError(400, "not_an_image", f"{label} is not an image ({type(err).__name__}); send PNG, JPEG, "
                           "BMP, GIF, WebP or TIFF") from None
    if width * height > max_pixels:
        raise RequestError(413, "too_many_pixels", f"{label} is {width:,} x {height:,} pixels; the limit is "
                           f"{max_pixels:,} pixels (send a smaller image)")
    return width * height


def request_pixels(files, limits: Limits) -> list[int]:
    """The pixel count of each image of a request, refused when one or all together are over the limits."""
    counts = [pixels(data, name, limits.max_pixels) for name, data in files]
    if sum(counts) > limits.max_request_pixels:
        raise RequestError(413, "too_many_pixels", f"the images hold {sum(counts):,} pixels in all; a request may "
                           f"hold {limits.max_request_pixels:,} (send fewer or smaller images per request)")
    return counts
