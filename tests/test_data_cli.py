"""`densekit data list|info|show|import` through the CLI entry point, and bad data as one-line errors."""
import json

from PIL import Image

from datagen import write_cifar10, write_folder
from densekit.cli import main


def test_list_names_every_source(capsys):
    assert main(["data", "list", "--json"]) == 0
    sources = {json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()}
    assert {"mnist", "fashion-mnist", "cifar10", "cifar100", "folder", "tfrecord", "digits", "synthetic",
            "packed"} <= set(sources)


def test_info_json_has_classes_and_per_class_counts_per_split(tmp_path, capsys):
    write_cifar10(tmp_path, per_batch=4)
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"][:2] == ["airplane", "automobile"] and info["channels"] == 3 and info["size"] == [32, 32]
    assert set(info["splits"]) == {"train", "test"}
    assert info["splits"]["train"]["count"] == 20 and sum(info["splits"]["train"]["per_class"]) == 20
    assert len(info["splits"]["test"]["per_class"]) == 10


def test_info_table_for_a_folder(tmp_path, capsys):
    write_folder(tmp_path / "train", per_class=2)
    write_folder(tmp_path / "test", per_class=1)
    assert main(["data", "info", f"folder:{tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "3 classes, 3 x 10 x 12, train 6, test 3" in out and "dog" in out


def test_show_writes_a_grid_with_a_row_per_class(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["data", "show", "digits", "--per-class", "3", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.height == 10 * (64 + 4) + 4 and img.width > 3 * 64


def test_bad_data_is_one_line_on_stderr_with_exit_1(tmp_path, capsys):
    write_folder(tmp_path, per_class=1)
    (tmp_path / "owl").mkdir()
    assert main(["data", "info", f"folder:{tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'owl'}: empty class folder" in err
    assert main(["data", "info", "nonsense"]) == 1
    assert "unknown dataset 'nonsense'" in capsys.readouterr().err
