"""CIFAR-10/100 from Python-2 protocol-2 pickles in the official folders, and the MD5-checked download."""
import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from datagen import py2_pickle, serve, write_cifar10, write_cifar100
from densekit import DensekitError
from densekit.data import cifar, load_dataset
from densekit.data.dataset import MissingSplit
from densekit.data.pickles import load_pickle


def test_cifar10_reads_planes_in_rgb_order_and_class_names(tmp_path):
    folder = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", "train", data_dir=tmp_path)
    first = load_pickle(folder / "data_batch_1")
    assert len(ds) == 30 and ds.shape == (3, 32, 32) and ds.classes[0] == "airplane"
    row = first["data"][2]
    # A row is 1024 red, then 1024 green, then 1024 blue bytes, each plane row-major.
    assert torch.equal(ds.images[2, 1], torch.from_numpy(row[1024:2048].reshape(32, 32)))
    assert ds.labels[:6].tolist() == first["labels"]
    assert len(load_dataset("cifar10", "test", data_dir=tmp_path)) == 6


def test_cifar100_fine_and_coarse_labels(tmp_path):
    write_cifar100(tmp_path)
    fine = load_dataset("cifar100", "train", data_dir=tmp_path)
    coarse = load_dataset("cifar100:coarse", "train", data_dir=tmp_path)
    assert len(fine.classes) == 100 and len(coarse.classes) == 20
    assert (coarse.labels == fine.labels // 5).all() and (fine.coarse_labels == coarse.labels).all()
    assert torch.equal(fine.images, coarse.images)


def test_cifar_has_no_val_split_of_its_own(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(MissingSplit, match="cifar10 has splits train and test, not 'val'$"):
        load_dataset("cifar10", "val", data_dir=tmp_path)


def test_cifar_batch_of_the_wrong_shape_names_the_file(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(py2_pickle({"data": np.zeros((4, 3000), np.uint8), "labels": [0] * 4}))
    with pytest.raises(DensekitError, match=r"test_batch: data is uint8 \(4, 3000\), CIFAR batches are uint8 N x 3072"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_cifar_label_out_of_range_names_the_file(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 10]}))
    with pytest.raises(DensekitError, match="test_batch: label 10 is outside the 10 classes"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_cifar_download_extracts_the_archive_after_checking_md5(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_cifar10(src, per_batch=3)
    served = tmp_path / "mirror"
    served.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (served / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    monkeypatch.delenv("DENSEKIT_OFFLINE", raising=False)
    with serve(served) as url:
        monkeypatch.setenv("DENSEKIT_CIFAR10_MIRROR", url)
        monkeypatch.setitem(cifar.CIFAR_SETS["cifar10"], "md5", "0" * 32)  # a checksum the archive fails
        with pytest.raises(DensekitError, match="cifar-10-python.tar.gz: checksum mismatch"):
            load_dataset("cifar10", "test", data_dir=tmp_path / "cache")
        monkeypatch.setitem(cifar.CIFAR_SETS["cifar10"], "md5", hashlib.md5(buf.getvalue()).hexdigest())
        ds = load_dataset("cifar10", "test", data_dir=tmp_path / "cache")
    assert len(ds) == 3 and (tmp_path / "cache" / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_offline_cifar_missing_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEKIT_OFFLINE", "1")
    with pytest.raises(DensekitError, match="cifar-100-python not found .* extract cifar-100-python.tar.gz"):
        load_dataset("cifar100", "train", data_dir=tmp_path)
