"""Hypothesis strategies and targets for fuzzing densekit's file readers.

Each target starts from a small valid file in its real format (written by ``datagen``), lets a
strategy damage it (byte flips, truncation, insertion, a header field overwritten with a huge or
boundary value), writes it and reads it back the way densekit does. The only acceptable failure is
a one-line ``DensekitError`` that names the file; any other exception, a multi-line message, or an
allocation beyond ``MEMORY_HEADROOM`` (enforced with RLIMIT_AS around each read, so a small file
that claims a huge size raises MemoryError instead of quietly succeeding) fails the example.

Used by tests/test_fuzz_readers.py (bounded, deterministic) and benchmarks/fuzz_readers.py (long,
random).
"""
from __future__ import annotations

import contextlib
import io
import json
import resource
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from datagen import gz, idx_bytes, py2_pickle, write_cifar10
from densekit.config import load_yaml
from densekit.data.cifar import load_cifar
from densekit.data.idx import read_idx
from densekit.data.images import decode_image, image_mode_channels
from densekit.data.packed import load_packed
from densekit.data.tfrecord import TFRecordDataset, image_example, read_labels_file, write_tfrecord
from densekit.errors import DensekitError

MEMORY_HEADROOM = 768 << 20  # address space one read may add; every limit in limits.py is far below a
# small file's honest needs, so only a claimed size being believed can exceed it

BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 10 ** 12,
            2 ** 63 - 1, 2 ** 64 - 1]


@st.composite
def damaged(draw, seed: bytes, tokens: tuple[bytes, ...] = ()):
    """``seed`` with one to three damages applied; ``tokens`` (a format's own syntax, as in AFL's
    dictionaries) may be inserted too, which random bytes would almost never spell."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "field", "delete"] + ["token"] * bool(tokens)))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "token":
            data[pos:pos] = draw(st.sampled_from(tokens))
        elif kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:  # a size or count field: a boundary value in 1, 2, 4 or 8 bytes, either byte order
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(BOUNDARY)) % (1 << (8 * width))
            data[pos:pos + width] = value.to_bytes(width, draw(st.sampled_from(["big", "little"])))
    return bytes(data)


def png(size=(6, 5), mode="RGB", color=(200, 30, 90)) -> bytes:
    return image_bytes("PNG", size, mode, color)


def image_bytes(fmt: str, size=(6, 5), mode="RGB", color=(200, 30, 90), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    img.paste(color, (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    img.convert(mode).save(buf, fmt)
    return buf.getvalue()


@dataclass
class Target:
    """``seed()`` -> valid bytes; ``read(folder, data)`` writes ``data`` as the file under test in
    ``folder`` (a fresh empty one), with any valid files beside it that the reader needs, and reads
    it like densekit does."""
    seed: Callable[[], bytes]
    read: Callable[[Path, bytes], None]
    tokens: tuple[bytes, ...] = ()
    documents: st.SearchStrategy | None = None   # whole files built from the format's grammar, besides damage

    def strategy(self):
        damage = damaged(self.seed(), self.tokens)
        return damage if self.documents is None else st.one_of(damage, self.documents)


_YAML_TOKENS = (b"!!int ", b"!!float ", b"!!timestamp ", b"!!binary ", b"!!set ", b"!!python/object/apply:os.system ",
                b"!!python/name:os.system ", b"*a ", b"&a ", b"[", b"{", b"? ", b": ", b"- ", b"\t", b"'", b'"',
                b"1" * 5000, b"0x" + b"f" * 50, b"1e999", b".nan", b"2020-13-45", b"[" * 2000, b"\xff\xfe")
_YAML_DOCUMENTS = st.lists(st.tuples(
    st.sampled_from(["epochs", "lr", "model", "milestones", "model_args", "name", "seed", "x"]),
    st.sampled_from(["", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!str ", "!!bool ", "!!null ",
                     "!!python/object/apply:os.system ", "!!python/name:os.system ", "!!map ", "!!seq "]),
    st.sampled_from(["3", "0.1", "x", "[1, 2]", "{a: 1}", "1" * 5000, "2020-13-45", "2020-01-01", "*a", "&a 1",
                     ".inf", "'", "[" * 300 + "]" * 300, "{[1]: 2}", "ZZZ", "-", "~", "0x1f", "1_000", "1:30"]),
), min_size=1, max_size=6).map(lambda rows: "\n".join(f"{k}: {tag}{v}" for k, tag, v in rows).encode())

_LABELS_TOKENS = (b"1" * 5000 + b":", b"0" * 5000 + b"1:", b"100000000000000:", b"99999:", b"\xc2\xb2:",
                  b"\xd9\xa3:", b"\xff", b"-1:", b" : ", b"\r\n", b"\x00")


def _read_idx(folder: Path, data: bytes, name="train-images-idx3-ubyte") -> str:
    (folder / name).write_bytes(data)
    read_idx(folder / name)
    return name


def _read_idx_gz(folder: Path, data: bytes) -> str:
    return _read_idx(folder, data, "train-labels-idx1-ubyte.gz")


def _read_idx_gz_inner(folder: Path, data: bytes) -> str:
    # damage under the compression, so the IDX header itself is hit (a compressed flip is mostly a CRC error)
    return _read_idx(folder, gz(data), "t10k-images-idx3-ubyte.gz")


def _read_cifar(folder: Path, data: bytes, which: str = "test_batch") -> str:
    root = write_cifar10(folder, per_batch=3)
    (root / which).write_bytes(data)
    load_cifar("cifar10", "test", folder)
    return which


def _read_cifar_meta(folder: Path, data: bytes) -> str:
    return _read_cifar(folder, data, "batches.meta")


def _cifar_batch() -> bytes:
    rng = np.random.default_rng(0)
    return py2_pickle({"batch_label": "testing batch 1 of 1", "labels": [3, 1, 4],
                       "data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "filenames": ["a", "b", "c"]})


def _cifar_meta() -> bytes:
    return py2_pickle({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                       "ship", "truck"], "num_cases_per_batch": 3, "num_vis": 3072})


def _examples() -> list[bytes]:
    return [image_example(png(color=(40 * k, 0, 0)), "png", k % 3, 5, 6) for k in range(3)]


def _shard() -> bytes:
    with tempfile.TemporaryDirectory(prefix="densekit-fuzz-") as tmp:
        write_tfrecord(Path(tmp) / "s.tfrecord", _examples())
        return (Path(tmp) / "s.tfrecord").read_bytes()


def _load_all(ds):
    for i in range(len(ds)):
        ds[i]


def _read_tfrecord(folder: Path, data: bytes) -> str:
    (folder / "quiz_train_0.tfrecord").write_bytes(data)
    (folder / "labels.txt").write_text("0:a\n1:b\n2:c\n")
    _load_all(TFRecordDataset(str(folder / "quiz_{split}_*.tfrecord"), "train", image_size=8))
    return "quiz_train_0.tfrecord"


def _read_example(folder: Path, data: bytes) -> str:
    # damage inside a record that keeps valid CRCs, so it reaches the tf.train.Example parser
    examples = _examples()
    write_tfrecord(folder / "quiz_train_0.tfrecord", [examples[0], data, examples[2]])
    _load_all(TFRecordDataset(str(folder / "quiz_{split}_*.tfrecord"), "train", image_size=8))
    return "quiz_train_0.tfrecord"


def _read_labels_txt(folder: Path, data: bytes) -> str:
    (folder / "labels.txt").write_bytes(data)
    read_labels_file(folder / "labels.txt")
    write_tfrecord(folder / "s.tfrecord", _examples())
    TFRecordDataset(str(folder / "s.tfrecord"), "train", image_size=8)
    return "labels.txt"


def _image_reader(suffix: str):
    def read(folder: Path, data: bytes) -> str:
        path = folder / f"x{suffix}"
        path.write_bytes(data)
        image_mode_channels(path)
        decode_image(path)
        decode_image(path, channels=1, size=(7, 9))
        return path.name
    return read


def _packed_meta() -> bytes:
    return json.dumps({"format": "densekit-packed", "version": 1, "source": "fuzz", "classes": ["a", "b"],
                       "splits": {"train": {"count": 3, "shape": [1, 4, 4]}}}).encode()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _write_packed(folder: Path, meta: bytes, images: bytes, labels: bytes):
    (folder / "meta.json").write_bytes(meta)
    (folder / "train-images.npy").write_bytes(images)
    (folder / "train-labels.npy").write_bytes(labels)
    _load_all(load_packed(folder, "train"))


_IMAGES = _npy(np.arange(48, dtype=np.uint8).reshape(3, 1, 4, 4))
_LABELS = _npy(np.array([0, 1, 1], dtype=np.int64))


def _read_packed_meta(folder: Path, data: bytes) -> str:
    _write_packed(folder, data, _IMAGES, _LABELS)
    return folder.name


def _read_packed_images(folder: Path, data: bytes) -> str:
    _write_packed(folder, _packed_meta(), data, _LABELS)
    return folder.name


def _read_packed_labels(folder: Path, data: bytes) -> str:
    _write_packed(folder, _packed_meta(), _IMAGES, data)
    return folder.name


_TABLE_TOKENS = (b"\xef\xbb\xbf", b"\xff\xfe", b'"', b",", b"\r\n", b"\n", b"|", b"-1", b"../", b"/", b"~",
                 b"none", b"train", b"val", b"test", b"a.png", b"x" * 5000, b"," * 300, b"\x00", b"\xff")


def _table_images(folder: Path):
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(png(color=(40 * len(name), 0, 0)))


def _read_table(folder: Path, data: bytes, **opts) -> str:
    _table_images(folder)
    (folder / "t.csv").write_bytes(data)
    from densekit.data.table_dataset import TableDataset
    for split in ("train", "test"):
        try:
            _load_all(TableDataset(str(folder / "t.csv"), split, image_size=8, **opts))
        except DensekitError as err:
            if split == "train" or "no test rows" not in str(err):
                raise
    return "t.csv"


def _read_wide_table(folder: Path, data: bytes) -> str:
    return _read_table(folder, data, uncertain="ones")


_MULTI_META = json.dumps({"format": "densekit-packed", "version": 2, "source": "fuzz", "classes": ["a", "b"],
                          "task": "multilabel", "splits": {"train": {"count": 3, "shape": [1, 4, 4]}}}).encode()
_MULTI_LABELS = _npy(np.array([[1, 0], [0, np.nan], [1, 1]], dtype=np.float32))


def _read_packed_multilabels(folder: Path, data: bytes) -> str:
    _write_packed(folder, _MULTI_META, _IMAGES, data)
    return folder.name


def _read_yaml(folder: Path, data: bytes) -> str:
    (folder / "config.yaml").write_bytes(data)
    load_yaml(folder / "config.yaml")
    return "config.yaml"


TARGETS = {
    "idx": Target(lambda: idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)), _read_idx),
    "idx-gz": Target(lambda: gz(idx_bytes(np.arange(5, dtype=np.uint8))), _read_idx_gz),
    "idx-gz-header": Target(lambda: idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)),
                            _read_idx_gz_inner),
    "cifar-batch": Target(_cifar_batch, _read_cifar),
    "cifar-meta": Target(_cifar_meta, _read_cifar_meta),
    "tfrecord": Target(_shard, _read_tfrecord),
    "tf-example": Target(lambda: _examples()[1], _read_example),
    "labels-txt": Target(lambda: b"0:daisy\n1:dandelion\n2:roses\n", _read_labels_txt, _LABELS_TOKENS),
    "png": Target(lambda: png(), _image_reader(".png")),
    "png-gray16": Target(lambda: image_bytes("PNG", mode="I;16"), _image_reader(".png")),
    "png-palette": Target(lambda: image_bytes("PNG", mode="P"), _image_reader(".png")),
    "jpeg": Target(lambda: image_bytes("JPEG"), _image_reader(".jpg")),
    "gif": Target(lambda: image_bytes("GIF"), _image_reader(".gif")),
    "bmp": Target(lambda: image_bytes("BMP"), _image_reader(".bmp")),
    "tiff": Target(lambda: image_bytes("TIFF"), _image_reader(".tif")),
    "webp": Target(lambda: image_bytes("WEBP"), _image_reader(".webp")),
    "packed-meta": Target(_packed_meta, _read_packed_meta),
    "packed-images": Target(lambda: _IMAGES, _read_packed_images),
    "packed-labels": Target(lambda: _LABELS, _read_packed_labels),
    "packed-multilabels": Target(lambda: _MULTI_LABELS, _read_packed_multilabels),
    "csv-table": Target(lambda: b"image,labels,split\na.png,x|y,train\nb.png,none,train\nc.png,y,test\n",
                        lambda folder, data: _read_table(folder, data, label_sep="|", none_label="none"),
                        _TABLE_TOKENS),
    "csv-wide-table": Target(lambda: b"image,split,x,y\na.png,train,1,0\nb.png,train,0,-1\nc.png,test,,1\n",
                             _read_wide_table, _TABLE_TOKENS),
    "yaml-config": Target(lambda: b"epochs: 3\nlr: 0.1\nmodel_args: {growth_rate: 12}\nmilestones: [1, 2]\n",
                          _read_yaml, _YAML_TOKENS, _YAML_DOCUMENTS),
}


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmSize")) * 1024


@contextlib.contextmanager
def memory_cap(headroom: int = MEMORY_HEADROOM):
    """Cap this process's address space at its current size plus ``headroom`` for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class Unexpected(AssertionError):
    """A reader failed in a way other than one line of DensekitError naming the file."""


def check(target: Target, folder: Path, data: bytes):
    """Read ``data`` through ``target`` in ``folder``; pass on success or on a one-line DensekitError
    that names one of the files read (or their folder)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        with memory_cap():
            target.read(folder, data)
    except DensekitError as err:
        message = str(err)
        if "\n" in message:
            raise Unexpected(f"multi-line error: {message!r}") from None
        if not any(name in message for name in [p.name for p in folder.iterdir()] + [folder.name]):
            raise Unexpected(f"the error names no file it read: {message}") from None
