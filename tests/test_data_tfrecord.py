"""tfrecord:PATTERN: TF-slim shards written by densekit's own writer, read back without TensorFlow."""
import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from densekit import DensekitError
from densekit.data import Loader, load_dataset
from densekit.data.dataset import MissingSplit
from densekit.data.example import encode_example, parse_example
from densekit.data.tfrecord import crc32c, crc32c_python, image_example, iter_records, masked_crc, write_tfrecord


def test_crc32c_matches_the_rfc3720_check_values():
    # RFC 3720 B.4: 32 zero bytes -> 0x8a9136aa; the common check string "123456789" -> 0xe3069283.
    for f in (crc32c, crc32c_python):
        assert f(bytes(32)) == 0x8A9136AA and f(b"123456789") == 0xE3069283
    assert masked_crc(b"") == ((0 >> 15 | 0 << 17) + 0xA282EAD8) & 0xFFFFFFFF


def test_example_round_trip_including_negative_and_unpacked_ints():
    feats = {"image/encoded": b"\x00\xff", "image/format": "png", "image/class/label": 3, "ids": [-1, 300],
             "score": [0.5, 2.0]}
    assert parse_example(encode_example(feats)) == {"image/encoded": [b"\x00\xff"], "image/format": [b"png"],
                                                    "image/class/label": [3], "ids": [-1, 300], "score": [0.5, 2.0]}
    # An Int64List written unpacked (one varint field per value) is read the same.
    unpacked = b"\x1a\x04\x08\x05\x08\x07"  # Feature{int64_list=3: {1: 5, 1: 7}}
    entry = b"\x0a\x01k" + b"\x12" + bytes([len(unpacked)]) + unpacked
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert parse_example(b"\x0a" + bytes([len(features)]) + features) == {"k": [5, 7]}


def png(color, size=(6, 5), mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def write_shards(folder, split, labels, shards=2, names=("daisy", "rose", "tulip")):
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        recs = [image_example(png((10 * lab, 0, i)), "png", lab, 5, 6) for i, lab in enumerate(labels) if i % shards == s]
        write_tfrecord(folder / f"flowers_{split}_{s:05d}-of-{shards:05d}.tfrecord", recs)
    if names:
        (folder / "labels.txt").write_text("".join(f"{i}:{n}\n" for i, n in enumerate(names)))


def test_tf_slim_shards_with_labels_txt_and_split_pattern(tmp_path):
    write_shards(tmp_path, "train", [0, 1, 2, 1, 0])
    write_shards(tmp_path, "validation", [2, 2])
    pattern = f"tfrecord:{tmp_path}/flowers_{{split}}_*.tfrecord"
    train, val = load_dataset(pattern, "train"), load_dataset(pattern, "val")
    assert train.classes == ["daisy", "rose", "tulip"] and len(train) == 5 and len(val) == 2
    assert train.labels.tolist() == [0, 2, 0, 1, 1]  # shard 0 holds items 0, 2, 4; shard 1 items 1, 3
    assert train.images is None and train.shape == (3, 5, 6)
    x, y = next(Loader(train, batch_size=5, workers=2).epoch(0))
    assert x[1, 0, 0, 0].item() == 20 and x[1, 2, 0, 0].item() == 2 and y[1].item() == 2
    with pytest.raises(MissingSplit):
        load_dataset(pattern, "test")


def test_one_pattern_without_split_is_all_train_and_names_default_to_ids(tmp_path):
    write_shards(tmp_path, "all", [0, 3], shards=1, names=None)
    ds = load_dataset(f"tfrecord:{tmp_path}/*.tfrecord", "train", image_size=4, channels=1)
    assert ds.classes == ["0", "1", "2", "3"] and ds[1][0].shape == (1, 4, 4)
    with pytest.raises(MissingSplit):
        load_dataset(f"tfrecord:{tmp_path}/*.tfrecord", "val")


def test_raw_format_records(tmp_path):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    rec = encode_example({"image/encoded": pixels.tobytes(), "image/format": "raw", "image/class/label": 0,
                          "image/height": 2, "image/width": 3, "image/channels": 3})
    write_tfrecord(tmp_path / "raw.tfrecord", [rec])
    ds = load_dataset(f"tfrecord:{tmp_path}/raw.tfrecord")
    assert torch.equal(ds[0][0], torch.from_numpy(pixels).permute(2, 0, 1))


def test_bad_data_crc_names_the_file_and_record_or_is_skipped(tmp_path):
    write_shards(tmp_path, "train", [0, 1, 2], shards=1)
    path = tmp_path / "flowers_train_00000-of-00001.tfrecord"
    raw = bytearray(path.read_bytes())
    (first, _), (second, _) = list(iter_records(path))[:2]
    raw[second + 30] ^= 0xFF  # flip a byte inside the second record's data
    path.write_bytes(bytes(raw))
    with pytest.raises(DensekitError, match=r"flowers_train_00000-of-00001.tfrecord: record 1 at byte \d+: bad data CRC"):
        load_dataset(f"tfrecord:{path}")
    with pytest.warns(UserWarning, match="skipped 1 corrupt record"):
        ds = load_dataset(f"tfrecord:{path}", skip_bad=True)
    assert ds.labels.tolist() == [0, 2]


def test_bad_length_crc_and_label_out_of_range(tmp_path):
    write_tfrecord(tmp_path / "a.tfrecord", [image_example(png(1), "png", 0)])
    raw = bytearray((tmp_path / "a.tfrecord").read_bytes())
    raw[8] ^= 1
    (tmp_path / "a.tfrecord").write_bytes(bytes(raw))
    with pytest.raises(DensekitError, match="a.tfrecord: record 0 at byte 0: bad length CRC"):
        load_dataset(f"tfrecord:{tmp_path}/a.tfrecord")
    write_tfrecord(tmp_path / "b.tfrecord", [image_example(png(1), "png", 5)])
    (tmp_path / "labels.txt").write_text("0:a\n1:b\n")
    with pytest.raises(DensekitError, match="labels.txt: label 5 is outside the 2 classes"):
        load_dataset(f"tfrecord:{tmp_path}/b.tfrecord")


def test_undecodable_image_in_a_record_names_the_shard(tmp_path):
    write_tfrecord(tmp_path / "c.tfrecord", [image_example(png(1), "png", 0), image_example(b"junk", "jpeg", 0)])
    ds = load_dataset(f"tfrecord:{tmp_path}/c.tfrecord")
    with pytest.raises(DensekitError, match="c.tfrecord record at byte .*: not a readable image"):
        list(Loader(ds, batch_size=2).epoch(0))


def test_writer_frames_records_as_tensorflow_does(tmp_path):
    write_tfrecord(tmp_path / "d.tfrecord", [b"abc"])
    raw = (tmp_path / "d.tfrecord").read_bytes()
    assert raw[:8] == struct.pack("<Q", 3) and raw[12:15] == b"abc" and len(raw) == 8 + 4 + 3 + 4
    assert struct.unpack("<I", raw[15:])[0] == masked_crc(b"abc")
