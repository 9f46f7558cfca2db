"""`densekit data shapes`: the generated multi-label set and its two table layouts agree."""
import csv
import json

import pytest
from PIL import Image

from densekit.cli import main
from densekit.data.shapes import SHAPES, write_shapes
from densekit.errors import DensekitError


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_shapes_writes_pngs_and_both_layouts_that_agree(tmp_path):
    info = write_shapes(tmp_path / "s", n=12, seed=3)
    assert info["splits"] == {"train": 12, "val": 3, "test": 3}
    narrow, wide = _rows(tmp_path / "s" / "labels.csv"), _rows(tmp_path / "s" / "labels-wide.csv")
    assert len(narrow) == len(wide) == 18
    assert [r["split"] for r in narrow].count("val") == 3
    for a, b in zip(narrow, wide):
        assert a["image"] == b["image"] and a["group"] == b["group"]
        present = set() if a["labels"] == "none" else set(a["labels"].split("|"))
        assert len(present) <= 4
        for k in SHAPES:
            assert b[k] in ("-1", "1", "0", "")
            if b[k] != "-1":                       # -1 is uncertain whatever the truth
                assert (b[k] == "1") == (k in present)
        img = Image.open(tmp_path / "s" / a["image"])
        assert img.size == (32, 32) and img.mode == "RGB"
    assert write_shapes(tmp_path / "t", n=12, seed=3)["splits"] == info["splits"]
    assert _rows(tmp_path / "t" / "labels.csv") == narrow          # deterministic from the seed


def test_shapes_refuses_a_non_empty_folder_and_bad_sizes(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(DensekitError, match="not empty"):
        write_shapes(tmp_path / "x", n=4)
    with pytest.raises(DensekitError, match="size"):
        write_shapes(tmp_path / "y", n=4, size=4)


def test_data_shapes_cli_reports_json(tmp_path, capsys):
    assert main(["data", "shapes", str(tmp_path / "s"), "--n", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"] == list(SHAPES)
