"""Writers of small datasets in their real on-disk formats, and of hostile image files, for the tests
(and benchmarks/serve_abuse.py)."""
from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import io
import pickle
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did at protocol 2: ``str`` and array buffers as 8-bit
    BINSTRING opcodes (not Python 3's BINUNICODE / ``_codecs.encode``), so the readers are tested on
    what CIFAR's and Nielsen's files really contain."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def idx_bytes(array: np.ndarray) -> bytes:
    """LeCun's IDX: 0, 0, type 0x08 (uint8), ndim, big-endian dims, then the data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def random_images(n, c, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def write_cifar10(root: Path, per_batch=6, seed=0) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(py2_pickle({"label_names": names, "num_cases_per_batch": per_batch,
                                                      "num_vis": 3072}))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        (folder / name).write_bytes(py2_pickle({"batch_label": f"{name} of 5", "labels": labels, "data": data,
                                                "filenames": [f"img_{i}.png" for i in range(per_batch)]}))
    return folder


def write_cifar100(root: Path, n=8, seed=0) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    (folder / "meta").write_bytes(py2_pickle({"fine_label_names": fine, "coarse_label_names": coarse}))
    for name in ("train", "test"):
        f = rng.integers(0, 100, n)
        (folder / name).write_bytes(py2_pickle({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                                                "fine_labels": [int(v) for v in f],
                                                "coarse_labels": [int(v) // 5 for v in f],
                                                "filenames": [f"x{i}" for i in range(n)], "batch_label": name}))
    return folder


def write_image(path: Path, size=(12, 10), mode="RGB", seed=0, fmt=None):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, size[::-1], dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8), "RGB").convert(mode)
    img.save(path, format=fmt)
    return path


def write_folder(root: Path, classes=("cat", "dog", "eel"), per_class=4, size=(12, 10), ext=".png", mode="RGB"):
    for k, cls in enumerate(classes):
        for i in range(per_class):
            write_image(root / cls / f"{i:03d}{ext}", size, mode, seed=k * 1000 + i)
    return root


@contextlib.contextmanager
def serve(folder: Path):
    """An HTTP server on 127.0.0.1 serving ``folder``; yields its base URL (with a trailing slash).
    On exit the serving thread has ended: closing a socket under a thread still waiting on it
    leaves a traceback in whichever test runs next."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()          # returns once serve_forever's loop has stopped
        thread.join()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def blank_png(width: int, height: int) -> bytes:
    """A real, fully decodable gray PNG of width x height, all zeros: a few KB that decode to
    width x height bytes (a decompression bomb that is a valid image)."""
    rows = zlib.compress(b"\0" * ((width + 1) * height), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b""))


def ico_holding(png_bytes: bytes) -> bytes:
    """An ICO whose one directory entry says 16 x 16 but holds ``png_bytes``: Pillow decodes that PNG
    whole inside Image.open, before any size check could look at it."""
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png_bytes), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png_bytes


def huge_constant_png(path: Path, width: int, height: int, color=(10, 200, 30)) -> Path:
    """A valid RGB PNG of one colour, of any size, written in well under a second.

    Every row after the first is filter "Up" (zero differences); compressed after a full flush
    (which resets deflate's state) such a row always compresses to the same bytes, so the image
    data is one short block repeated, not hundreds of megabytes run through zlib."""
    first, rest = b"\x00" + bytes(color) * width, b"\x02" + bytes(3 * width)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(first) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(rest) + c.flush(zlib.Z_FULL_FLUSH)
    adler = zlib.adler32(first)
    for _ in range(height - 1):
        adler = zlib.adler32(rest, adler)
    idat = b"\x78\xda" + head + block * (height - 1) + c.flush() + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path
