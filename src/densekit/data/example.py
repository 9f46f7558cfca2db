"""``tf.train.Example`` encoded and decoded by hand, from the protocol-buffer wire format.

Schema (tensorflow/core/example/example.proto, feature.proto)::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   // map entry: { string key = 1; Feature value = 2; }
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

Wire format (protobuf encoding guide): each field is a varint key ``field << 3 | wire_type``;
wire type 0 is a varint, 2 is length-delimited, 5 is 4 little-endian bytes, 1 is 8. Repeated
scalars may arrive packed (one type-2 field) or one by one; a reader must take both.
"""
from __future__ import annotations

import struct


class ProtoError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ProtoError("truncated length-delimited field")
            value, pos = buf[pos:pos + n], pos + n
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            if pos + n > len(buf):
                raise ProtoError("truncated fixed-width field")
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        yield field, wire, value


def _signed64(v: int) -> int:
    v &= (1 << 64) - 1  # a ten-byte varint can carry bits past 64; protobuf drops them
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: bytes):
    for kind, wire, body in _fields(buf):
        if kind not in (1, 2, 3):
            continue
        if wire != 2:
            raise ProtoError(f"feature kind {kind} has wire type {wire}, not a length-delimited list")
        if kind == 1:
            return [v for f, w, v in _fields(body) if f == 1 and w == 2]
        out = []
        for f, w, v in _fields(body):
            if f != 1:
                continue
            if kind == 2:  # floats: packed (type 2) or one by one (type 5), 4 bytes each
                if w not in (2, 5) or len(v) % 4:
                    raise ProtoError("float list is not a whole number of 4-byte floats")
                out += list(struct.unpack(f"<{len(v) // 4}f", v))
            elif w == 0:
                out.append(_signed64(v))
            elif w == 2:  # packed: a run of varints
                pos = 0
                while pos < len(v):
                    x, pos = _varint(v, pos)
                    out.append(_signed64(x))
            else:
                raise ProtoError(f"int64 list value has wire type {w}")
        return out
    return []


def parse_example(buf: bytes) -> dict[str, list]:
    """{feature name: list of bytes, floats or ints} of one serialized ``tf.train.Example``."""
    features = {}
    for f, w, body in _fields(buf):
        if f != 1 or w != 2:
            continue
        for ff, ww, entry in _fields(body):
            if ff != 1 or ww != 2:
                continue
            key, value = b"", b""
            for ef, ew, ev in _fields(entry):
                if ef == 1 and ew == 2:
                    key = ev
                elif ef == 2 and ew == 2:
                    value = ev
            features[key.decode("utf-8", "replace")] = _feature(value)
    return features


def _put_varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 is its two's complement, ten bytes long
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _put(field: int, body: bytes) -> bytes:
    return _put_varint(field << 3 | 2) + _put_varint(len(body)) + body


def encode_example(features: dict[str, bytes | int | float | list]) -> bytes:
    """Serialize a ``tf.train.Example``: bytes/str values become BytesList, ints Int64List (packed),
    floats FloatList (packed); a list holds several values of one kind."""
    entries = b""
    for key, values in features.items():
        values = values if isinstance(values, list) else [values]
        values = [v.encode() if isinstance(v, str) else v for v in values]
        if all(isinstance(v, bytes) for v in values):
            feature = _put(1, b"".join(_put(1, v) for v in values))
        elif all(isinstance(v, int) for v in values):
            feature = _put(3, _put(1, b"".join(_put_varint(v) for v in values)))
        elif all(isinstance(v, (int, float)) for v in values):
            feature = _put(2, _put(1, struct.pack(f"<{len(values)}f", *values)))
        else:
            raise TypeError(f"feature {key!r}: values must all be bytes, all ints or all floats")
        entries += _put(1, _put(1, key.encode()) + _put(2, feature))
    return _put(1, entries)
