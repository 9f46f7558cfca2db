"""folder:PATH: class sub-folders, optional split folders, streamed through the loader's worker pool."""
import os

import pytest
import torch

from datagen import write_folder, write_image
from densekit import DensekitError
from densekit.data import Loader, load_dataset
from densekit.data.dataset import MissingSplit
from densekit.data.loader import DataWarning
from densekit.data.splits import carve_val


def test_flat_folder_is_all_train_and_streams(tmp_path):
    write_folder(tmp_path, per_class=3)
    ds = load_dataset(f"folder:{tmp_path}", "train", image_size=8, channels=3)
    assert ds.images is None and len(ds) == 9 and ds.classes == ["cat", "dog", "eel"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.shape == (3, 8, 8)
    with pytest.raises(MissingSplit):
        load_dataset(f"folder:{tmp_path}", "val")
    train, val = carve_val(ds, 3, seed=0)
    assert len(train) == 6 and len(val) == 3 and val.images is None
    batches = list(Loader(ds, batch_size=4, workers=2).epoch(0))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 8, 8), (4, 3, 8, 8), (1, 3, 8, 8)]
    assert torch.equal(batches[0][0][1], ds[1][0])


def test_split_folders_and_shape_from_the_first_image(tmp_path):
    write_folder(tmp_path / "train", per_class=2, size=(12, 10), mode="L")
    write_folder(tmp_path / "validation", classes=("cat", "eel"), per_class=1, size=(30, 30))
    train = load_dataset(str(tmp_path), "train")          # a bare path is a folder source
    val = load_dataset(f"folder:{tmp_path}", "val")
    assert train.shape == (1, 10, 12) and val.classes == train.classes
    # Unconfigured channels and size come from train's first image, for every split.
    assert val.labels.tolist() == [0, 2] and val[0][0].shape == (1, 10, 12)


def test_numeric_class_names_sort_as_numbers(tmp_path):
    write_folder(tmp_path, classes=("2", "10", "1"), per_class=1)
    assert load_dataset(f"folder:{tmp_path}").classes == ["1", "2", "10"]


def test_empty_class_folder_names_the_folder(tmp_path):
    write_folder(tmp_path, per_class=1)
    (tmp_path / "fox").mkdir()
    (tmp_path / "fox" / "readme.txt").write_text("no images")
    with pytest.raises(DensekitError, match=f"{tmp_path / 'fox'}: empty class folder"):
        load_dataset(f"folder:{tmp_path}")


def test_unknown_class_in_val_is_an_error(tmp_path):
    write_folder(tmp_path / "train", per_class=1)
    write_folder(tmp_path / "val", classes=("cat", "yak"), per_class=1)
    with pytest.raises(DensekitError, match="yak: class folder not in"):
        load_dataset(f"folder:{tmp_path}", "val")


def test_a_bad_file_stops_the_epoch_with_one_line_or_is_skipped_with_a_count(tmp_path):
    write_folder(tmp_path, per_class=3)
    (tmp_path / "dog" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "eel" / "000.png").write_text("not an image")
    ds = load_dataset(f"folder:{tmp_path}", image_size=8)
    with pytest.raises(DensekitError) as err:
        list(Loader(ds, batch_size=4, workers=2).epoch(0))
    assert "dog/001.png: not a readable image" in str(err.value) and "\n" not in str(err.value)

    # skipped items are absent from the set itself, so every consumer sees the same 7 good items
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable item\(s\) of folder:.* \(of 9\)"):
        ds = load_dataset(f"folder:{tmp_path}", image_size=8, skip_bad=True)
    assert len(ds) == 7 and [ds[i][0].shape for i in range(7)] == [(3, 8, 8)] * 7
    seen = sum(len(y) for _, y in Loader(ds, batch_size=4, workers=2).epoch(0))
    assert seen == 7


def _rss_kib(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def _tree_rss_kib():
    """This process and its children (the loader's worker processes)."""
    total = _rss_kib()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            for pid in f.read().split():
                try:
                    total += _rss_kib(pid)
                except (FileNotFoundError, StopIteration):
                    pass
    return total


def test_ten_thousand_images_stream_with_flat_memory(tmp_path):
    n, size = 10_000, 40
    for i in range(n):
        write_image(tmp_path / f"c{i % 10}" / f"{i:05d}.png", size=(size, size), seed=i)
    ds = load_dataset(f"folder:{tmp_path}", image_size=size, channels=3)
    held = n * 3 * size * size // 1024  # KiB that all decoded images would take
    samples = []
    total = 0
    for step, (x, y) in enumerate(Loader(ds, batch_size=100, shuffle=True, workers=2).epoch(0)):
        total += len(y)
        if step in (10, 99):
            samples.append(_tree_rss_kib())
    assert total == n
    growth = samples[1] - samples[0]
    print(f"RSS (main + workers) after 1,100 images {samples[0] / 1024:.0f} MiB, after 10,000 "
          f"{samples[1] / 1024:.0f} MiB; holding them decoded would add {held / 1024:.0f} MiB")
    assert growth < held / 4


def test_skip_bad_also_passes_over_a_bad_first_image(tmp_path):
    write_folder(tmp_path, per_class=2, size=(9, 7))
    (tmp_path / "cat" / "000.png").write_bytes(b"")
    with pytest.raises(DensekitError, match="cat/000.png: not a readable image"):
        load_dataset(f"folder:{tmp_path}")
    ds = load_dataset(f"folder:{tmp_path}", skip_bad=True)
    assert ds.shape == (3, 7, 9)
