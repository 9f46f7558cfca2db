"""Malformed and hostile files: each case the trust issue reproduced on main, now one line naming
the file, fast, within a memory cap (a small file may not make densekit allocate what it claims)."""
import gzip
import json
import struct
import time
import zlib

import numpy as np
import pytest
import yaml
from PIL import Image

import densekit
from datagen import gz, huge_constant_png, idx_bytes, py2_pickle, write_cifar10, write_folder
from densekit import DensekitError
from densekit.cli import main
from densekit.data import load_dataset
from densekit.data.example import _fields, _put, encode_example
from densekit.data.idx import read_idx
from densekit.data.images import decode_image
from densekit.data.limits import MAX_CLASSES, MAX_IMAGE_PIXELS
from densekit.data.loader import DataWarning
from densekit.data.tfrecord import TFRecordDataset, image_example, read_labels_file, write_tfrecord
from densekit.engine.run import RunFolder
from fuzzing import memory_cap, png


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# -- raw exceptions the readers raised on main ---------------------------------------------------

def test_an_idx_header_cut_short_is_one_line_not_struct_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 60000))   # 1 of 3 dims
    with pytest.raises(DensekitError, match="train-images-idx3-ubyte: the header is cut short") as err:
        read_idx(path)
    one_line(err)


def test_a_corrupt_gzip_stream_is_one_line_not_zlib_error(tmp_path):
    data = bytearray(gz(idx_bytes(np.arange(4000, dtype=np.uint8) % 251)))
    data[len(data) // 2] ^= 0xFF    # inside the deflate stream
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DensekitError, match="t10k-labels-idx1-ubyte.gz: cannot read") as err:
        read_idx(path)
    one_line(err)


def test_a_cifar_label_beyond_int64_is_one_line_not_overflow_error(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2 ** 70]}))
    with pytest.raises(DensekitError, match="test_batch: labels is not a list of integer labels") as err:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    one_line(err)


def test_cifar_labels_as_a_list_of_lists_are_refused_not_multiplied_out(tmp_path):
    # a few bytes of pickle memo references make [[0] * 3000] * 3000: 9 million labels from a tiny file
    folder = write_cifar10(tmp_path)
    row = [0] * 3000
    (folder / "test_batch").write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [row] * 3000}))
    with memory_cap(256 << 20), pytest.raises(DensekitError, match="labels is not a list of integer labels"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_a_pickle_memo_index_of_four_billion_is_refused_before_unpickling(tmp_path):
    folder = write_cifar10(tmp_path)
    # LONG_BINPUT 0xFFFFFFFF: the unpickler would grow its memo table to 32 GB
    (folder / "test_batch").write_bytes(b"\x80\x02}r\xff\xff\xff\xff.")
    with memory_cap(256 << 20), pytest.raises(DensekitError, match="test_batch: not a readable data pickle"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


@pytest.mark.parametrize("claim", [b"\x80\x02T" + struct.pack("<i", 2 ** 31 - 1),   # BINSTRING, 2 GB
                                   b"\x80\x03B" + struct.pack("<I", 2 ** 32 - 16)])  # BINBYTES, 4 GB
def test_a_pickle_string_claiming_gigabytes_costs_nothing(tmp_path, claim):
    # Python's unpickler allocates a claimed BINBYTES length before reading it, even from memory
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(claim + b"abc")
    with memory_cap(256 << 20), pytest.raises(DensekitError, match="test_batch: not a readable data pickle") as err:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    one_line(err)


def test_labels_txt_that_is_not_utf8_is_one_line_not_unicode_decode_error(tmp_path):
    (tmp_path / "labels.txt").write_bytes(b"0:daisy\n1:\xff\xfe\n")
    with pytest.raises(DensekitError, match="labels.txt: unreadable") as err:
        read_labels_file(tmp_path / "labels.txt")
    one_line(err)
    (tmp_path / "labels.txt").write_text("0:daisy\n\u00b2:superscript two\n")   # isdigit() but not int()
    with pytest.raises(DensekitError, match="labels.txt, line 2: expected 'id:name'"):
        read_labels_file(tmp_path / "labels.txt")


def test_a_record_with_an_empty_label_is_one_line_not_index_error(tmp_path):
    write_tfrecord(tmp_path / "s.tfrecord", [encode_example({"image/encoded": png(), "image/format": "png",
                                                             "image/class/label": []})])
    with pytest.raises(DensekitError, match=r"s.tfrecord: record 0: feature image/class/label is not an int") as err:
        TFRecordDataset(str(tmp_path / "s.tfrecord"))
    one_line(err)


def test_a_record_whose_format_is_a_number_is_one_line_not_attribute_error(tmp_path):
    write_tfrecord(tmp_path / "s.tfrecord", [encode_example({"image/encoded": png(), "image/format": 7,
                                                             "image/class/label": 0})])
    with pytest.raises(DensekitError, match=r"s.tfrecord record at byte 12: feature image/format is not a bytes") as err:
        TFRecordDataset(str(tmp_path / "s.tfrecord"))
    one_line(err)


def test_a_float_list_of_odd_length_is_one_line_not_struct_error(tmp_path):
    good = encode_example({"image/encoded": png(), "image/format": "png", "image/class/label": 0})
    # Features entry {key "x": Feature{float_list: FloatList{value: 3 bytes, packed}}}
    entry = _put(1, b"x") + _put(2, _put(2, _put(1, b"\x00\xc0?")))
    features = _fields_of(good) + _put(1, entry)
    write_tfrecord(tmp_path / "s.tfrecord", [_put(1, features)])
    with pytest.raises(DensekitError, match="s.tfrecord: record 0 is not a tf.train.Example .*4-byte floats") as err:
        TFRecordDataset(str(tmp_path / "s.tfrecord"))
    one_line(err)


def _fields_of(example: bytes) -> bytes:
    """The Features body of a serialized Example (its one field 1)."""
    [(field, wire, body)] = list(_fields(example))
    return body


# -- claimed sizes checked before allocating -------------------------------------------------------

def test_a_tfrecord_label_of_ten_to_the_twelve_fails_fast_without_a_class_list(tmp_path):
    write_tfrecord(tmp_path / "s.tfrecord", [image_example(png(), "png", 10 ** 12)])
    start = time.perf_counter()
    with memory_cap(128 << 20), pytest.raises(DensekitError, match=f"label 1,000,000,000,000 is outside 0..{MAX_CLASSES - 1:,}"):
        TFRecordDataset(str(tmp_path / "s.tfrecord"))
    assert time.perf_counter() - start < 2


def test_a_labels_txt_id_of_ten_to_the_fourteen_fails_fast(tmp_path):
    (tmp_path / "labels.txt").write_text("0:daisy\n100000000000000:rose\n")
    write_tfrecord(tmp_path / "s.tfrecord", [image_example(png(), "png", 0)])
    start = time.perf_counter()
    with memory_cap(128 << 20), pytest.raises(DensekitError, match="labels.txt, line 2: class id 100,000,000,000,000"):
        TFRecordDataset(str(tmp_path / "s.tfrecord"))
    assert time.perf_counter() - start < 2


def test_a_gzip_of_zeros_is_refused_without_expanding_it(tmp_path):
    zeros = zlib.compressobj(1, zlib.DEFLATED, 31)   # gzip framing
    path = tmp_path / "train-images-idx3-ubyte.gz"
    chunk = bytes(32 << 20)
    with open(path, "wb") as f:
        for _ in range(4):     # 128 MB of zeros in a file of about 600 KB
            f.write(zeros.compress(chunk))
        f.write(zeros.flush())
    assert path.stat().st_size < 1 << 20
    with memory_cap(64 << 20), pytest.raises(DensekitError, match="not an IDX file"):
        read_idx(path)
    # a true header followed by far more data than it claims: read up to the claim, then refused
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=1) as g:
        g.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10))
        for _ in range(4):
            g.write(chunk)
    with memory_cap(64 << 20), pytest.raises(DensekitError, match=r"header says \(10,\) \(10 bytes\) but the file holds more"):
        read_idx(path)


def test_an_idx_header_claiming_petabytes_fails_before_reading(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1))
    with memory_cap(64 << 20), pytest.raises(DensekitError, match="above densekit's limit"):
        read_idx(path)


def test_a_synthetic_set_of_ten_to_the_twelve_items_is_refused(tmp_path):
    with memory_cap(64 << 20), pytest.raises(DensekitError, match="synthetic with n=1000000000000"):
        load_dataset("synthetic:n=1000000000000")


def test_a_png_chunk_length_that_lies_costs_nothing(tmp_path):
    data = bytearray(png())
    at = data.index(b"IDAT") - 4
    data[at:at + 4] = struct.pack(">I", 0x7F000000)   # Pillow would fp.read(2 GB) from a file
    (tmp_path / "x.png").write_bytes(bytes(data))
    with memory_cap(256 << 20):   # decoded from memory, where the lie asks for nothing
        assert decode_image(tmp_path / "x.png").shape == (3, 5, 6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cfg = densekit.TrainConfig(model="plain-cnn", dataset="digits", epochs=1, batch_size=64, out=str(root),
                               name="tiny", workers=0, tensorboard=False, plots=False, val_split=0)
    return densekit.train(cfg, verbose=False)


def test_a_13000_square_png_in_predict_is_refused_before_decoding(tiny_run, tmp_path):
    big = huge_constant_png(tmp_path / "big.png", 13000, 13000)    # 780 KB on disk, 507 MB as RGB
    assert big.stat().st_size < 1 << 20 and Image.open(big).size == (13000, 13000)
    start = time.perf_counter()
    with memory_cap(384 << 20):
        [result] = densekit.predict(tiny_run.dir, [big])
    assert time.perf_counter() - start < 5
    assert "big.png: 13000x13000 pixels is above densekit's limit" in result["error"]
    assert f"{MAX_IMAGE_PIXELS:,}" in result["error"] and "top_k" not in result
    # a JPEG of the same size is decoded at 1/8 scale by libjpeg's draft mode, so it is accepted
    jpeg = tmp_path / "big.jpg"
    Image.new("L", (6000, 6000), 128).save(jpeg, quality=50)
    with memory_cap(384 << 20):
        [result] = densekit.predict(tiny_run.dir, [jpeg])
    assert "top_k" in result


# -- a run's config -----------------------------------------------------------------------------

def test_a_python_tag_in_a_runs_config_is_one_line_naming_it(tiny_run, tmp_path, capsys):
    run = tmp_path / "evil"
    run.mkdir()
    (run / "config.yaml").write_text("model: !!python/object/apply:os.system ['echo pwned > pwned.txt']\n")
    with pytest.raises(DensekitError, match=r"evil/config.yaml is not valid YAML \(could not determine a constructor") as err:
        RunFolder(run).read_config()
    one_line(err)
    assert main(["runs", "show", str(run)]) == 1
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "pwned.txt").exists()
    assert main(["train", "--config", str(run / "config.yaml")]) == 1
    assert "config.yaml is not valid YAML" in capsys.readouterr().err


# -- --skip-bad skips everywhere ------------------------------------------------------------------

def bomb(path):
    """A valid PNG of 16000 x 12000 pixels: past twice Pillow's MAX_IMAGE_PIXELS, so Image.open itself
    raises DecompressionBombError."""
    return huge_constant_png(path, 16000, 12000)


def test_a_decompression_bomb_first_in_a_folder_is_skipped_with_skip_bad(tmp_path):
    write_folder(tmp_path, classes=("ant", "bee"), per_class=3, size=(9, 9))
    bomb(tmp_path / "ant" / "000.png")       # the image that fixes the set's channels and size
    with pytest.raises(DensekitError, match=r"ant/000.png: not a readable image \(Image size \(192000000 pixels\)") as err:
        load_dataset(f"folder:{tmp_path}")
    one_line(err)
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable item\(s\) .* \(of 6\)"):
        ds = load_dataset(f"folder:{tmp_path}", skip_bad=True)
    assert len(ds) == 5 and ds.shape == (3, 9, 9) and ds.labels.tolist() == [0, 0, 1, 1, 1]


def test_skip_bad_train_skips_in_plots_tensorboard_and_the_accuracy_denominator(tmp_path, capsys):
    data = tmp_path / "data"
    write_folder(data / "train", classes=("ant", "bee", "cat"), per_class=8, size=(10, 10))
    write_folder(data / "test", classes=("ant", "bee", "cat"), per_class=5, size=(10, 10))
    # the first items, which the TensorBoard sample grid and the plots' samples read directly
    for bad in ("train/ant/000.png", "test/ant/000.png", "test/bee/003.png"):
        (data / bad).write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    bomb(data / "test" / "cat" / "001.png")
    code = main(["train", "--dataset", f"folder:{data}", "--skip-bad", "--model", "plain-cnn", "--image-size", "8",
                 "--epochs", "1", "--batch-size", "8", "--workers", "0", "--val-split", "0", "--embeddings", "8",
                 "--out", str(tmp_path / "runs"), "--name", "skip"])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "skip"
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_count"] == 12                     # 15 test images, 3 unreadable
    correct = summary["test_top1"] * 12
    assert abs(correct - round(correct)) < 1e-6            # a fraction of the 12 good ones, not of 15
    listed = json.loads((run / "plots" / "predictions.json").read_text())
    assert len(listed["samples"]) == 12 and max(r["index"] for r in listed["samples"]) == 11
    for name in ("confusion.png", "worst.png", "samples.png", "curves.png"):
        assert Image.open(run / "plots" / name).size[0] > 0
    assert any((run / "tensorboard" / "train").iterdir())
    assert yaml.safe_load((run / "config.yaml").read_text())["skip_bad"] is True


def test_the_skip_bad_scan_in_worker_processes_keeps_the_same_good_items(tmp_path):
    from densekit.data.loader import drop_unreadable
    write_folder(tmp_path, classes=("ant", "bee"), per_class=6, size=(9, 9))
    for bad in ("ant/002.png", "bee/000.png", "bee/005.png"):
        (tmp_path / bad).write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}")       # without skip_bad: all 12 listed, 3 unreadable
    with pytest.warns(DataWarning, match=r"skipped 3 unreadable item\(s\)"):
        inline = drop_unreadable(ds, workers=0)
    with pytest.warns(DataWarning, match=r"skipped 3 unreadable item\(s\)"):
        pooled = drop_unreadable(ds, workers=2)
    assert len(inline) == len(pooled) == 9
    assert inline.indices.tolist() == pooled.indices.tolist() == [0, 1, 3, 4, 5, 7, 8, 9, 10]
