"""`csv:` tables: both layouts, the uncertain policies, splits and groups, multi-hot batches, data
info / import, training and evaluating a single-label table, and one line per bad table."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import densekit
from densekit import DensekitError
from densekit.cli import main
from densekit.data.shapes import SHAPES, write_shapes
from densekit.data.splits import carve_val


def png(path, value=128, size=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), "L").save(path)


def table(folder, text, images=("a.png", "b.png", "c.png", "d.png")):
    """``folder/t.csv`` holding ``text``, with small PNGs beside it; returns the csv: source."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(images):
        png(folder / name, 40 * k)
    (folder / "t.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    return f"csv:{folder / 't.csv'}"


def load(source, split="train", **opts):
    return densekit.load_dataset(source, split, **opts)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "s"
    write_shapes(out, n=16, seed=1)
    return out


def test_a_single_label_table_has_int_labels_sorted_class_names_and_streams(tmp_path):
    src = table(tmp_path, "image,label\na.png,dog\nb.png,cat\nc.png,dog\nd.png,cat\n")
    ds = load(src)
    assert ds.task == "single-label" and ds.classes == ["cat", "dog"] and ds.images is None
    assert ds.labels.tolist() == [1, 0, 1, 0] and ds[0][1] == 1 and ds[0][0].shape == (1, 6, 6)


def test_both_layouts_of_the_shapes_set_agree_and_uncertain_follows_the_policy(shapes):
    narrow = load(f"csv:{shapes / 'labels.csv'}", label_sep="|", none_label="none")
    assert narrow.task == "multilabel" and narrow.classes == sorted(SHAPES)
    rows = {u: load(f"csv:{shapes / 'labels-wide.csv'}", uncertain=u) for u in ("ones", "zeros", "ignore")}
    wide = rows["ignore"]
    assert wide.classes == list(SHAPES) and wide.labels.dtype == torch.float32 and wide.labels.shape == (16, 5)
    order = [narrow.classes.index(c) for c in wide.classes]
    truth = narrow.labels[:, order]
    known = ~torch.isnan(wide.labels)
    assert (~known).any() and torch.equal(wide.labels[known], truth[known])
    assert (rows["ones"].labels[~known] == 1).all() and (rows["zeros"].labels[~known] == 0).all()
    assert torch.equal(rows["ones"].labels[known], truth[known])
    image, row = wide[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and row.shape == (5,)
    assert len(load(f"csv:{shapes / 'labels.csv'}", "test", label_sep="|", none_label="none")) == 4


def test_the_loader_collates_multilabel_rows_into_float_batches(shapes, tmp_path):
    ds = load(f"csv:{shapes / 'labels-wide.csv'}")
    for workers in (0, 2):
        x, y = next(densekit.data.Loader(ds, 5, workers=workers).epoch(0))
        assert x.shape == (5, 3, 32, 32) and y.dtype == torch.float32 and y.shape == (5, 5)
        assert torch.equal(y.nan_to_num(-1), ds.labels[:5].nan_to_num(-1))
    assert main(["data", "import", f"csv:{shapes / 'labels-wide.csv'}", "--out", str(tmp_path / "p"),
                 "--workers", "0"]) == 0
    packed = load(f"packed:{tmp_path / 'p'}")
    assert packed.task == "multilabel" and packed.images is not None and packed.classes == list(SHAPES)
    assert torch.equal(torch.isnan(packed.labels), torch.isnan(ds.labels))
    assert torch.equal(packed.labels.nan_to_num(-1), ds.labels.nan_to_num(-1))
    x, y = next(densekit.data.Loader(packed, 4).epoch(0))
    assert y.shape == (4, 5) and y.dtype == torch.float32


def test_one_table_per_split_uses_the_training_labels(tmp_path):
    table(tmp_path, "path,class\na.png,x\nb.png,y\n")
    (tmp_path / "v.csv").write_text("path,class\nc.png,y\n")
    (tmp_path / "w.csv").write_text("path,class\nd.png,z\n")
    src = f"csv:{tmp_path / 't.csv'},val={tmp_path / 'v.csv'},test={tmp_path / 'w.csv'}"
    assert load(src, "val").labels.tolist() == [1]
    with pytest.raises(DensekitError, match=r"w\.csv line 2: label 'z' is not among the training"):
        load(src, "test")
    with pytest.raises(densekit.data.MissingSplit):
        load(f"csv:{tmp_path / 't.csv'},val={tmp_path / 'v.csv'}", "test")


def test_a_split_column_divides_the_table_and_group_col_carves_whole_groups(tmp_path):
    names = [f"i{k}.png" for k in range(24)]
    rows = "".join(f"{n},{'ab'[k % 2]},p{k // 3},{'test' if k >= 20 else 'train'}\n" for k, n in enumerate(names))
    src = table(tmp_path, "image,label,patient,split\n" + rows, images=names)
    assert len(load(src, "test")) == 4 and len(load(src)) == 20
    with pytest.raises(densekit.data.MissingSplit):
        load(src, "val")
    ds = load(src, group_col="patient")
    for seed in range(4):
        train, val = carve_val(ds, 0.25, seed)
        assert len(val) >= 5 and len(train) + len(val) == 20
        assert not set(train.groups.tolist()) & set(val.groups.tolist())
    assert main(["data", "import", src, "--group-col", "patient", "--out", str(tmp_path / "p"), "--workers", "0"]) == 0
    packed = load(f"packed:{tmp_path / 'p'}")
    assert torch.equal(packed.groups, ds.groups) and packed.task == "single-label"


def test_data_info_counts_labels_and_pairs_and_summarises_many_labels(tmp_path, capsys):
    names = [f"i{k}.png" for k in range(8)]
    labels = ["|".join(f"L{j:02d}" for j in range(60) if (j + k) % 4 == 0 or j == k) for k in range(8)]
    src = table(tmp_path, "image,labels\n" + "".join(f"{n},{l}\n" for n, l in zip(names, labels)), images=names)
    assert main(["data", "info", src, "--label-sep", "|", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["task"] == "multilabel" and len(info["classes"]) == 60
    train = info["splits"]["train"]
    assert sum(train["per_label"]) == sum(len(l.split("|")) for l in labels) and train["no_label"] == 0
    co = info["cooccurrence"]
    assert co["summarised"] and len(co["labels"]) == 50 and len(co["matrix"]) == 50
    assert co["pairs"][0]["count"] == 2
    assert main(["data", "info", src, "--label-sep", "|"]) == 0
    assert "and 10 rarer labels" in capsys.readouterr().out


def test_a_single_label_table_trains_and_evaluates_as_classification(tmp_path, capsys):
    digits = densekit.load_dataset("digits", "test")
    names, rows = [], []
    for i in range(160):
        image, label = digits[i]
        names.append(f"img/{i}.png")
        png_path = tmp_path / names[-1]
        png_path.parent.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), "L").save(png_path)
        rows.append(f"{names[-1]},digit {label},{'test' if i >= 120 else 'train'}\n")
    (tmp_path / "digits.csv").write_text("file,digit,split\n" + "".join(rows))
    src = f"csv:{tmp_path / 'digits.csv'}"
    run = densekit.train(densekit.TrainConfig(
        model="densenet-bc-40-k12", model_args={"block_config": [3, 3], "growth_rate": 8}, dataset=src,
        label_col="digit", epochs=1, batch_size=32, val_split=20, workers=0, out=str(tmp_path / "runs"),
        name="r", tensorboard=False, plots=False), verbose=False)
    assert run.summary["test_count"] == 40
    assert main(["eval", str(tmp_path / "runs" / "r"), "--json", "--split", "val"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["count"] == 20 and set(m["per_class"]) == {f"digit {d}" for d in range(10)}
    (tmp_path / "more.csv").write_text("file,digit\n" + "".join(r.rsplit(",", 1)[0] + "\n" for r in rows[120:]))
    assert main(["eval", str(tmp_path / "runs" / "r"), "--dataset", f"csv:{tmp_path / 'more.csv'}", "--split", "train",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 40           # the run's --label-col digit
    assert main(["eval", str(tmp_path / "runs" / "r"), "--dataset", f"csv:{tmp_path / 'more.csv'}", "--split",
                 "train", "--label-col", "file"]) == 1            # a flag given overrides the run's
    assert "has classes the model was not trained on" in capsys.readouterr().err
    resumed = densekit.train(None, resume=tmp_path / "runs" / "r", epochs=2, verbose=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2]
    with pytest.raises(DensekitError, match="--label-col 'file' contradicts"):
        densekit.train(None, resume=tmp_path / "runs" / "r", label_col="file", verbose=False)


def test_data_show_draws_a_row_of_images_per_label(shapes, tmp_path):
    assert main(["data", "show", f"csv:{shapes / 'labels-wide.csv'}", "--per-class", "3",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").height == 5 * 68 + 4


def test_table_settings_are_refused_where_they_cannot_act(capsys):
    with pytest.raises(DensekitError, match="--label-col 'x'.*csv:FILE"):
        densekit.TrainConfig(dataset="digits", label_col="x").validate()
    with pytest.raises(DensekitError, match="--group-col.*--val-split"):
        densekit.TrainConfig(dataset="csv:t.csv", group_col="p", val_split=0).validate()
    assert main(["data", "info", "digits", "--label-col", "x"]) != 0
    assert "--label-col acts on csv: tables only" in capsys.readouterr().err


def test_skip_bad_leaves_out_missing_and_unreadable_images_with_a_warning(tmp_path):
    src = table(tmp_path, "image,label\na.png,x\nb.png,y\nmissing.png,x\nc.png,y\nd.png,x\n")
    (tmp_path / "d.png").write_bytes(b"not a png")
    with pytest.warns(densekit.data.loader.DataWarning, match="skipped 2 unreadable"):
        ds = load(src, skip_bad=True)
    assert len(ds) == 3


# A bad table gets one line naming the file and, where a row is to blame, its line.
BAD = [
    ("image,label\n", "no train rows|no training rows"),
    ("", r"t\.csv: empty file"),
    ("image,label\na.png,x\nb.png,y\nnope.png,x\n", r"t\.csv line 4: image .*nope\.png: no such file"),
    ("image,label\na.png,x\nb.png,y\na.png,y\n", r"line 4: image 'a\.png' is listed again \(first on line 2\)"),
    ("image,label\na.png,x\nb.png,x\n", r"'label' holds one value \('x'\) in every row"),
    ("image,label\na.png,x\n../b.png,y\n", r"line 3: image path '\.\./b\.png' escapes"),
    ("image,label\na.png,x\n/etc/passwd,y\n", r"line 3: absolute image path '/etc/passwd'"),
    ("image,label\na.png,x\nb.png,y,z\n", r"line 3: 3 fields, the header has 2; quote values"),
    ("image,label\na.png,x\nb.png,\n", r"line 3: empty label"),
    ("image,label,split\na.png,x,train\nb.png,y,holdout\n", r"line 3: split 'holdout'"),
    ("image,a,b\na.png,1,0\nb.png,2,1\n", r"line 3: '2' in label column 'a'", {"label_cols": ["a", "b"]}),
    ("image,a,b\na.png,1,0\nb.png,1,1\n", r"label 'a' is present in every row"),
    ("image,label\na.png,\"x\nb.png,y\n", r"t\.csv line \d+: not valid CSV"),
    ("\xef\xbb\xbfimage,label\na.png,x\n".encode("latin-1") + b"\xff\xfe,y\n", r"line 3: not UTF-8"),
    ("image,label".encode("utf-16"), r"UTF-16"),
    ("image,image\na.png,b.png\n", r"names column 'image' twice"),
    ("path,x,y\na.png,p,q\n", r"which column holds the labels"),
    ("image,label\na.png,x\n", r"--label-sep ' ': give the text between labels", {"label_sep": " "}),
]


@pytest.mark.parametrize("text,message,opts", [(*case, {})[:3] for case in BAD])
def test_a_bad_table_gets_one_line_naming_the_row(tmp_path, text, message, opts):
    src = table(tmp_path, text)
    with pytest.raises(DensekitError, match=message) as err:
        load(src, **opts)
    assert "\n" not in str(err.value) and "t.csv" in str(err.value)


def test_an_unreadable_image_names_its_row_when_the_loader_meets_it(tmp_path):
    src = table(tmp_path, "image,label\na.png,x\nb.png,y\nt.csv,x\n")
    ds = load(src)
    with pytest.raises(DensekitError, match=r"t\.csv line 4: .*t\.csv: not a readable image.*--skip-bad"):
        list(densekit.data.Loader(ds, 2, workers=0).epoch(0))


def test_unknown_columns_are_named_with_the_columns_there_are(tmp_path):
    src = table(tmp_path, "image,label\na.png,x\nb.png,y\n")
    with pytest.raises(DensekitError, match=r"no column 'Finding Labels' \(--label-col\); its columns are image, lab"):
        load(src, label_col="Finding Labels")
    with pytest.raises(DensekitError, match=r"no column 'Edema' \(--label-cols\)"):
        load(src, label_cols=["Edema"])


def test_a_bom_and_quoted_commas_are_read(tmp_path):
    png(tmp_path / "a, b.png")
    src = table(tmp_path, b'\xef\xbb\xbfimage,label\r\n"a, b.png","cat, big"\r\nb.png, dog\r\n\r\n')
    ds = load(src)
    assert ds.classes == ["cat, big", "dog"] and ds.path(0).name == "a, b.png"


def test_a_huge_table_is_refused_at_the_row_limit_and_a_line_without_breaks_at_the_byte_limit(tmp_path, monkeypatch):
    from densekit.data import table as T
    src = table(tmp_path, "image,label\na.png,x\nb.png,y\nc.png,x\n")
    monkeypatch.setattr(T, "MAX_TABLE_ROWS", 2)
    with pytest.raises(DensekitError, match=r"more than 2 rows"):
        load(src)
    monkeypatch.undo()
    monkeypatch.setattr(T, "MAX_LABEL_ENTRIES", 2)     # the labels' matrix is bounded while it is read
    with pytest.raises(DensekitError, match=r"t\.csv line 4: the labels so far pass"):
        load(src)
    monkeypatch.undo()
    (tmp_path / "t.csv").write_bytes(b"image,label\n" + b"x" * (T.MAX_TABLE_LINE_BYTES + 10))
    with pytest.raises(DensekitError, match=r"line 2: longer than 1,048,576 bytes"):
        load(src)


def test_uncertain_ones_in_a_label_column_table_is_refused(tmp_path):
    src = table(tmp_path, "image,label\na.png,x\nb.png,y\n")
    with pytest.raises(DensekitError, match="--uncertain acts on one column per label"):
        load(src, uncertain="ones")
