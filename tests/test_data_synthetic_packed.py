"""synthetic:..., the packed import format, and in-memory sets given the model's channels and size."""
import json

import numpy as np
import pytest
import torch

from datagen import write_folder
from densekit import DensekitError
from densekit.cli import main
from densekit.data import channel_stats, load_dataset
from densekit.data.packed import PackedDataset


def test_synthetic_is_deterministic_and_configurable():
    a = load_dataset("synthetic:n=50,classes=4,size=12,channels=1,seed=3")
    b = load_dataset("synthetic:n=50,classes=4,size=12,channels=1,seed=3")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (50, 1, 12, 12) and len(a.classes) == 4
    test = load_dataset("synthetic:n=50,classes=4,size=12,channels=1,seed=3", "test")
    assert len(test) == 10 and not torch.equal(test.images, a.images[:10])
    assert not torch.equal(load_dataset("synthetic:n=50,seed=4").images, load_dataset("synthetic:n=50").images)
    with pytest.raises(DensekitError, match="synthetic option 'colour=2'"):
        load_dataset("synthetic:colour=2")


def test_synthetic_classes_differ_more_between_than_within():
    ds = load_dataset("synthetic:n=400,classes=4,size=8")
    means = torch.stack([ds.images[ds.labels == k].float().mean(0) for k in range(4)])
    within = (ds.images[ds.labels == 0].float() - means[0]).abs().mean()
    between = (means[0] - means[1]).abs().mean()
    assert between > 0.5 * within  # learnable: the class templates stand out of the noise


def test_resident_sets_take_the_configured_channels_and_size():
    ds = load_dataset("digits", "test", image_size=16, channels=3)
    assert ds.images.shape == (360, 3, 16, 16) and ds.shape == (3, 16, 16)
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])


def test_import_then_train_source_reads_identical_pixels(tmp_path):
    write_folder(tmp_path / "photos" / "train", per_class=5, size=(20, 16))
    write_folder(tmp_path / "photos" / "test", per_class=2, size=(20, 16))
    out = tmp_path / "packed"
    assert main(["data", "import", f"folder:{tmp_path / 'photos'}", "--out", str(out), "--image-size", "8",
                 "--workers", "2"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["splits"] == {"train": {"count": 15, "shape": [3, 8, 8]}, "test": {"count": 6, "shape": [3, 8, 8]}}
    packed = load_dataset(f"packed:{out}", "train")
    streamed = load_dataset(f"folder:{tmp_path / 'photos'}", "train", image_size=8)
    assert isinstance(packed, PackedDataset) and packed.images is not None  # memory-mapped, gathered by indexing
    assert torch.equal(packed.images, torch.stack([streamed[i][0] for i in range(15)]))
    assert torch.equal(packed.labels, streamed.labels) and packed.classes == streamed.classes
    assert len(load_dataset(str(out), "test")) == 6  # a bare path with meta.json is read as packed
    assert np.allclose(channel_stats(packed)[0], channel_stats(streamed)[0])


def test_import_with_skip_bad_leaves_out_unreadable_files(tmp_path):
    write_folder(tmp_path / "photos", per_class=3)
    (tmp_path / "photos" / "cat" / "001.png").write_text("broken")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert main(["data", "import", f"folder:{tmp_path / 'photos'}", "--out", str(tmp_path / "p"),
                     "--skip-bad", "--workers", "0"]) == 0
    ds = load_dataset(f"packed:{tmp_path / 'p'}")
    assert len(ds) == 8 and ds.labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]


def test_unfinished_import_is_refused(tmp_path):
    (tmp_path / "train-images.npy").write_bytes(b"")
    with pytest.raises(DensekitError, match="no meta.json, so not a finished import"):
        load_dataset(f"packed:{tmp_path}")
