"""``tfrecord:PATTERN``: TF-slim TFRecord shards of ``tf.train.Example``, read without TensorFlow.

Record framing (tensorflow/core/lib/io/record_writer.h)::

    uint64 length (little-endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` (mod 2**32) over CRC-32C (Castagnoli).
Features follow TF-slim's ``dataset_utils.image_to_tfexample``: ``image/encoded`` (PNG/JPEG
bytes, or raw pixels when ``image/format`` is ``raw``), ``image/format``, ``image/class/label``
and optional ``image/height`` / ``image/width`` / ``image/channels``. Class names come from a
``labels.txt`` of ``id:name`` lines beside the shards (TF-slim's ``write_label_file``).

``{split}`` in the pattern picks the split (``quiz_{split}_*.tfrecord``; ``val`` also matches
``validation``); a pattern without it is one set, all ``train``. Opening a set reads every record
once to check both CRCs and collect labels and offsets; items are then read by seeking.
"""
from __future__ import annotations

import glob
import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError
from .dataset import ImageDataset, MissingSplit, check_labels
from .example import ProtoError, encode_example, parse_example
from .images import decode_image
from .limits import MAX_CLASSES, MAX_IMAGE_PIXELS, MAX_RECORD_BYTES

try:  # the C implementation when installed; the table version below is the same function, slower
    from crc32c import crc32c as _crc32c_fast
except ImportError:
    _crc32c_fast = None


def _table() -> list[int]:
    poly, table = 0x82F63B78, []  # Castagnoli polynomial, bit-reversed (RFC 3720, appendix B.4)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c_python(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    return _crc32c_fast(data) if _crc32c_fast else crc32c_python(data)


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(path: str | Path, records) -> None:
    """Write serialized records (bytes) as one TFRecord file."""
    with open(path, "wb") as f:
        for data in records:
            header = struct.pack("<Q", len(data))
            f.write(header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data)))


def image_example(encoded: bytes, fmt: str, label: int, height: int | None = None, width: int | None = None) -> bytes:
    """A TF-slim image example, as ``dataset_utils.image_to_tfexample`` writes it."""
    features = {"image/encoded": encoded, "image/format": fmt, "image/class/label": int(label)}
    if height is not None:
        features.update({"image/height": int(height), "image/width": int(width)})
    return encode_example(features)


def iter_records(path: Path, skip_bad: bool = False):
    """Yield (offset of data, data) of every record, checking both CRCs."""
    try:
        yield from _records(path, skip_bad)
    except OSError as err:
        raise DensekitError(f"{path}: cannot read ({err})") from None


def _records(path: Path, skip_bad: bool):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        k = 0
        while True:
            start = f.tell()
            header = f.read(12)
            if not header:
                return
            where = f"{path}: record {k} at byte {start}"
            if len(header) < 12:
                raise DensekitError(f"{where}: truncated header; the shard is cut short, regenerate it")
            length, crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != crc or start + 16 + length > size or length > MAX_RECORD_BYTES:
                # Without a trusted length nothing after this point can be found: stop, or skip the rest.
                msg = (f"{where}: bad length CRC, or a length past the end or above densekit's limit of "
                       f"{MAX_RECORD_BYTES:,} bytes; the shard is corrupt, regenerate it")
                if not skip_bad:
                    raise DensekitError(msg)
                warnings.warn(msg + " (rest of the file skipped)", stacklevel=2)
                return
            data, (dcrc,) = f.read(length), struct.unpack("<I", f.read(4))
            if masked_crc(data) != dcrc:
                if not skip_bad:
                    raise DensekitError(f"{where}: bad data CRC; the shard is corrupt, regenerate it "
                                        "(or pass --skip-bad to skip such records)")
                yield start + 12, None
            else:
                yield start + 12, data
            k += 1


def read_labels_file(path: Path) -> list[str]:
    """TF-slim ``labels.txt`` (``0:daisy`` per line) to names in label order, gaps named by their id."""
    names = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DensekitError(f"{path}: unreadable ({err}); write it as UTF-8 'id:name' lines") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        idx, sep, name = line.partition(":")
        if not sep or not re.fullmatch(r"[0-9]+", idx.strip()):
            raise DensekitError(f"{path}, line {n}: expected 'id:name', got {line[:80]!r}")
        idx = idx.strip().lstrip("0") or "0"  # digits counted first: int() refuses 4,300 or more
        if len(idx) > len(str(MAX_CLASSES)) or int(idx) >= MAX_CLASSES:  # the list has an entry per id up to the largest
            shown = f"{int(idx):,}" if len(idx) <= 30 else f"of {len(idx)} digits"
            raise DensekitError(f"{path}, line {n}: class id {shown} is above densekit's limit of "
                                f"{MAX_CLASSES:,} classes; ids count from 0")
        names[int(idx)] = name.strip()
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


def _first_value(feats: dict, key: str, kind: type, where: str, default=None):
    """The first value of feature ``key`` when it is of ``kind`` (bytes or int), else ``default`` if
    the feature is absent; a feature of the wrong kind or with no value is a corrupt record."""
    values = feats.get(key)
    if values is None:
        return default
    if not values or not isinstance(values[0], kind):
        raise DensekitError(f"{where}: feature {key} is not a{'n int' if kind is int else ' bytes'} value; "
                            "write the shard with TF-slim's image_to_tfexample layout")
    return values[0]


def _files(pattern: str, split: str) -> list[Path]:
    if "{split}" not in pattern:
        if split != "train":
            raise MissingSplit(f"{pattern} has no splits (put {{split}} in the pattern to pick one); "
                               "all its records are train")
        candidates = [pattern]
    else:
        candidates = [pattern.replace("{split}", s) for s in ({"val": ["val", "validation"]}.get(split, [split]))]
    for c in candidates:
        found = sorted(glob.glob(os.path.expanduser(c)))
        if found:
            return [Path(p) for p in found]
    if "{split}" in pattern:
        raise MissingSplit(f"no {split} split: no files match {' or '.join(candidates)}")
    raise DensekitError(f"no files match {pattern}; check the path and quote the pattern in the shell")


def _record_label(data: bytes, where: str) -> int | None:
    try:
        feats = parse_example(data)
    except ProtoError as err:
        raise DensekitError(f"{where} is not a tf.train.Example ({err}); regenerate the shard") from None
    label = _first_value(feats, "image/class/label", int, where)
    if label is not None and not 0 <= label < MAX_CLASSES:
        # the class list has an entry for every id up to the largest label: bound it before building it
        raise DensekitError(f"{where}: label {label:,} is outside 0..{MAX_CLASSES - 1:,} (densekit's limit on "
                            "classes); regenerate the shard")
    return label


class TFRecordDataset(ImageDataset):
    def __init__(self, pattern: str, split: str = "train", channels: int | None = None, image_size=None,
                 skip_bad: bool = False):
        self.files = _files(pattern, split)
        self.name, self.skip_bad, self.split = f"tfrecord:{pattern}", skip_bad, split
        file_idx, offsets, lengths, labels, skipped = [], [], [], [], 0
        for fi, path in enumerate(self.files):
            for k, (offset, data) in enumerate(iter_records(path, skip_bad)):
                label = None
                if data is not None:
                    try:
                        label = _record_label(data, f"{path}: record {k}")
                    except DensekitError:
                        if not skip_bad:
                            raise
                if label is None:
                    if data is not None and not skip_bad:
                        raise DensekitError(f"{path}: record {k} has no image/class/label; write it with "
                                            "TF-slim's image_to_tfexample layout")
                    skipped += 1
                    continue
                file_idx.append(fi), offsets.append(offset), lengths.append(len(data)), labels.append(label)
        if skipped:
            warnings.warn(f"skipped {skipped} corrupt record(s) in {pattern}", stacklevel=2)
        if not labels:
            raise DensekitError(f"{pattern}: no records found; the shards are empty")
        self.file_idx, self.offsets = np.array(file_idx, np.int32), np.array(offsets, np.int64)
        self.lengths, self.labels = np.array(lengths, np.int64), torch.tensor(labels, dtype=torch.int64)
        labels_txt = self.files[0].parent / "labels.txt"
        self.classes = read_labels_file(labels_txt) if labels_txt.is_file() else []
        if not self.classes:
            self.classes = [str(i) for i in range(int(self.labels.max()) + 1)]
        check_labels(self.labels, len(self.classes), str(labels_txt) if labels_txt.is_file() else pattern)
        self._handles: dict = {}
        self.channels, self.image_size = channels, image_size
        first = self._first_readable(tries=100 if skip_bad else 1)
        self.channels = channels or first.shape[0]
        self.image_size = image_size or tuple(first.shape[1:])

    def _first_readable(self, tries: int) -> torch.Tensor:
        """The first item that decodes (with skip_bad, a few bad ones are passed over): it fixes
        what was not configured, channels and size."""
        last = min(tries, len(self.labels)) - 1
        for i in range(last):
            try:
                return self.load_item(i, self.channels, None)
            except DensekitError:
                continue
        return self.load_item(last, self.channels, None)

    def __getstate__(self):  # open files do not cross into worker processes; each opens its own
        return {**self.__dict__, "_handles": {}}

    def _read(self, i: int) -> bytes:
        fi = int(self.file_idx[i])
        f = self._handles.get(fi)
        if f is None:
            f = self._handles[fi] = open(self.files[fi], "rb")
        f.seek(int(self.offsets[i]))
        return f.read(int(self.lengths[i]))

    def load_item(self, i: int, channels=None, size=None) -> torch.Tensor:
        channels = channels or getattr(self, "channels", None)
        size = size or getattr(self, "image_size", None)
        where = f"{self.files[int(self.file_idx[i])]} record at byte {int(self.offsets[i])}"
        try:
            feats = parse_example(self._read(i))
        except (ProtoError, OSError) as err:
            raise DensekitError(f"{where}: unreadable ({err}); the shard changed since it was opened") from None
        encoded = _first_value(feats, "image/encoded", bytes, where, b"")
        if _first_value(feats, "image/format", bytes, where, b"").lower() == b"raw":
            h, w = _first_value(feats, "image/height", int, where, 0), _first_value(feats, "image/width", int, where, 0)
            c = _first_value(feats, "image/channels", int, where, len(encoded) // max(h * w, 1))
            if min(h, w) < 1 or h * w * c != len(encoded) or c not in (1, 3):
                raise DensekitError(f"{where}: raw image of {len(encoded)} bytes does not match {h}x{w}x{c}")
            if h * w > MAX_IMAGE_PIXELS:
                raise DensekitError(f"{where}: raw image of {h}x{w} pixels is above densekit's limit of "
                                    f"{MAX_IMAGE_PIXELS:,}; store smaller images")
            from .images import conform
            x = torch.from_numpy(np.frombuffer(encoded, np.uint8).reshape(h, w, c).transpose(2, 0, 1).copy())
            return conform(x[None], channels, size)[0]
        return decode_image(encoded, channels, size, name=where)

    @property
    def shape(self):
        h, w = (self.image_size, self.image_size) if isinstance(self.image_size, int) else self.image_size
        return (self.channels, h, w)
