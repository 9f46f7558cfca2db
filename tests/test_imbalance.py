"""Imbalanced classes on real digits: loss weights that act, a balanced order that resumes, the
per-class precision/recall/F1 of eval and the summary, and the data info warning."""
import json

import numpy as np
import pytest
import torch

import densekit
from conftest import TINY, StopAfter
from densekit import DensekitError
from densekit.cli import main
from densekit.data import Loader, TensorImageDataset, load_dataset
from densekit.data.balance import class_weights
from densekit.data.packed import write_packed



def imbalanced_digits(tmp_path, keep_nines=10):
    """digits with all but ``keep_nines`` of the 9s dropped from train: 9 is 1/15 of the next class."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    nines = (train.labels == 9).nonzero().flatten()
    keep = torch.cat([(train.labels != 9).nonzero().flatten(), nines[:keep_nines]]).sort().values
    sets = {"train": TensorImageDataset(train.images[keep], train.labels[keep], train.classes),
            "test": test}
    write_packed(sets, tmp_path / "digits9", "digits-imbalanced")
    return f"packed:{tmp_path / 'digits9'}"


def config(out, name, dataset="digits", **kw):
    base = dict(model="densenet-bc-40-k12", model_args=TINY, dataset=dataset, epochs=2, batch_size=32, lr=0.1,
                val_split=0, out=str(out), name=name, workers=0, tensorboard=False, plots=False)
    return densekit.TrainConfig(**{**base, **kw})


def test_auto_class_weights_are_inverse_frequency():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    w = class_weights("auto", labels, ["a", "b", "c"])
    assert w.tolist() == pytest.approx([100 / (3 * 60), 100 / (3 * 30), 100 / (3 * 10)])
    with pytest.raises(DensekitError, match="class 'c' has no training items"):
        class_weights("auto", torch.tensor([0, 1, 1]), ["a", "b", "c"])


def test_class_weight_files_by_list_or_by_name(tmp_path):
    (tmp_path / "list.yaml").write_text("[1, 2.5, 0.5]\n")
    (tmp_path / "zero.yaml").write_text("[1, 2.5, 0]\n")
    (tmp_path / "names.json").write_text('{"b": 2, "a": 1, "c": 4}')
    (tmp_path / "short.yaml").write_text("[1, 2]\n")
    (tmp_path / "typo.yaml").write_text("{a: 1, b: 1, d: 1}\n")
    assert class_weights(str(tmp_path / "list.yaml"), torch.zeros(1, dtype=torch.long), list("abc")).tolist() == [1, 2.5, 0.5]
    assert class_weights(str(tmp_path / "names.json"), torch.zeros(1, dtype=torch.long), list("abc")).tolist() == [1, 2, 4]
    with pytest.raises(DensekitError, match="list of 3 numbers"):
        class_weights(str(tmp_path / "short.yaml"), torch.zeros(1, dtype=torch.long), list("abc"))
    with pytest.raises(DensekitError, match="must be positive"):
        class_weights(str(tmp_path / "zero.yaml"), torch.zeros(1, dtype=torch.long), list("abc"))
    with pytest.raises(DensekitError, match="unknown class 'd'"):
        class_weights(str(tmp_path / "typo.yaml"), torch.zeros(1, dtype=torch.long), list("abc"))
    with pytest.raises(DensekitError, match="class-weights 'nowhere.yaml'"):
        densekit.TrainConfig(class_weights="nowhere.yaml").validate()
    with pytest.raises(DensekitError, match="correct the imbalance twice"):
        densekit.TrainConfig(class_weights="auto", sampler="balanced").validate()
    with pytest.raises(DensekitError, match="choose shuffle or balanced"):
        densekit.TrainConfig(sampler="uniform").validate()


def test_the_weights_enter_the_training_loss(runs_dir, tmp_path):
    # The 3s weigh 1,000 times the rest: the model learns to answer 3 for (almost) everything.
    (tmp_path / "w.yaml").write_text(json.dumps([1e-3, 1e-3, 1e-3, 1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]))
    run = densekit.train(config(runs_dir, "only3", class_weights=str(tmp_path / "w.yaml")), verbose=False)
    per = run.summary["class_metrics"]["per_class"]
    assert per["3"]["recall"] > 0.95 and run.summary["test_top1"] < 0.3
    assert per["3"]["precision"] < 0.3                         # most "3"s are other digits


def test_balanced_order_draws_every_class_equally_is_deterministic_and_shards():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    ds = TensorImageDataset(torch.zeros(1000, 1, 2, 2, dtype=torch.uint8), labels, ["a", "b", "c"])
    loader = Loader(ds, 50, shuffle=True, seed=3, balanced=True)
    order = loader.indices(0)
    assert len(order) == 1000 and torch.equal(order, Loader(ds, 50, shuffle=True, seed=3, balanced=True).indices(0))
    assert not torch.equal(order, loader.indices(1))
    share = torch.bincount(labels[order], minlength=3) / 1000
    assert share.tolist() == pytest.approx([1 / 3] * 3, abs=0.05)
    assert len(set(order[labels[order] == 2].tolist())) == 10   # every rare item drawn, with replacement
    ranks = [Loader(ds, 50, shuffle=True, seed=3, balanced=True, rank=r, world_size=2) for r in (0, 1)]
    parts = [[y for _, y in rank.epoch(0)] for rank in ranks]
    assert torch.equal(torch.cat([torch.cat(p) for p in zip(*parts)]), labels[order])  # the ranks split each batch
    resumed = [y for _, y in loader.epoch(0, start=7)]
    assert torch.equal(torch.cat(resumed), labels[order[7 * 50:]])


def test_a_balanced_run_resumes_with_identical_metrics(runs_dir, tmp_path):
    dataset = imbalanced_digits(tmp_path)
    full = densekit.train(config(runs_dir, "full", dataset, sampler="balanced"), verbose=False)
    cfg = config(runs_dir, "cut", dataset, sampler="balanced")
    cut = densekit.train(cfg, callbacks=[StopAfter(1)], verbose=False)
    resumed = densekit.train(cfg, resume=cut.dir, verbose=False)
    keep = ("epoch", "global_step", "train_loss", "train_top1")
    assert len(resumed.metrics) == len(full.metrics) == 2
    for got, expected in zip(resumed.metrics, full.metrics):
        assert {k: got[k] for k in keep} == pytest.approx({k: expected[k] for k in keep}, rel=1e-6)
    summary = json.loads((full.dir / "summary.json").read_text())
    assert set(summary["class_metrics"]["per_class"]) == {str(i) for i in range(10)}
    nines = int((load_dataset("digits", "test").labels == 9).sum())
    assert summary["class_metrics"]["per_class"]["9"]["support"] == nines


def test_eval_prints_and_returns_precision_recall_f1(runs_dir, capsys):
    run = densekit.train(config(runs_dir, "eval", epochs=1), verbose=False)
    assert main(["eval", str(run.dir), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    cm = m["class_metrics"]
    assert set(cm["per_class"]) == set(m["per_class"]) and sum(c["support"] for c in cm["per_class"].values()) == 360
    for name, acc in m["per_class"].items():
        assert cm["per_class"][name]["recall"] == pytest.approx(acc)       # per-class accuracy is recall
    f1 = [c["f1"] for c in cm["per_class"].values()]
    assert cm["macro"]["f1"] == pytest.approx(np.mean(f1))
    assert main(["eval", str(run.dir)]) == 0
    out = capsys.readouterr().out
    # the result, a header, 10 classes, the macro row; then the calibration and selective-accuracy lines
    assert "precision" in out and "recall" in out and "F1" in out and out.count("\n") == 13 + 2


def test_data_info_warns_when_the_largest_class_is_ten_times_the_smallest(tmp_path, capsys):
    dataset = imbalanced_digits(tmp_path)
    assert main(["data", "info", dataset, "--json"]) == 0
    captured = capsys.readouterr()
    assert "imbalanced classes" in captured.err and "'9'" in captured.err
    assert json.loads(captured.out)["warnings"][0].startswith("warning: imbalanced classes")
    assert main(["data", "info", "digits"]) == 0
    assert "imbalanced" not in capsys.readouterr().err
