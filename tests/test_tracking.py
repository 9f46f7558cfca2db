"""Tracking: TensorBoard files read back with TensorBoard's own reader, and the PNG plots."""
import json

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import densekit
from conftest import TINY



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=3, batch_size=32,
                               lr=0.1, val_split=200, out=str(tmp_path_factory.mktemp("runs")), name="tracked",
                               workers=0, tensorboard=True, histograms=True, embeddings=50, plots=True,
                               tta="flip")   # the plots must follow the summary's test-time augmentation
    return densekit.train(cfg, verbose=False)


def accumulator(path):
    ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0})
    return ea.Reload()


def scalars(ea, tag):
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_train_and_val_writers_hold_the_epoch_scalars(run):
    train, val = accumulator(run.dir / "tensorboard" / "train"), accumulator(run.dir / "tensorboard" / "val")
    for tag in ("loss", "accuracy", "lr", "images_per_s", "epoch_time_s"):
        assert [s for s, _ in scalars(train, tag)] == [1, 2, 3], tag
    assert [v for _, v in scalars(train, "loss")] == pytest.approx([m["train_loss"] for m in run.metrics], rel=1e-5)
    assert [v for _, v in scalars(train, "lr")] == pytest.approx([m["lr"] for m in run.metrics], rel=1e-5)
    # the same tags in the val writer, so TensorBoard overlays train and val
    assert [v for _, v in scalars(val, "accuracy")] == pytest.approx([m["val_top1"] for m in run.metrics], rel=1e-5)
    assert [v for _, v in scalars(val, "loss")] == pytest.approx([m["val_loss"] for m in run.metrics], rel=1e-5)


def test_sample_images_and_weight_histograms(run):
    train = accumulator(run.dir / "tensorboard" / "train")
    tags = train.Tags()
    sample_tags = [t for t in tags["images"] if t.startswith("samples")]
    assert sample_tags
    img = train.Images(sample_tags[0])[0]
    assert img.width >= 8 and img.height >= 8 and img.encoded_image_string[:4] == b"\x89PNG"
    assert "features.conv0.weight" in tags["histograms"] and "classifier.weight" in tags["histograms"]
    assert [h.step for h in train.Histograms("classifier.weight")] == [1, 2, 3]


def test_hparams_carry_the_settings_and_final_metrics(run):
    from tensorboard.plugins.hparams import plugin_data_pb2
    ea = accumulator(run.dir / "tensorboard" / "hparams")
    content = ea.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["lr"].number_value == pytest.approx(0.1)
    assert session.hparams["optimizer"].string_value == "sgd"
    assert session.hparams["model.growth_rate"].number_value == 8
    assert scalars(ea, "final/test_top1")[0][1] == pytest.approx(run.summary["test_top1"])
    assert scalars(ea, "final/val_top1")[0][1] == pytest.approx(run.metrics[-1]["val_top1"])


def test_projector_embedding_of_test_images_with_sprite(run):
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
    root = run.dir / "tensorboard"
    config = text_format.Parse((root / "projector_config.pbtxt").read_text(), ProjectorConfig())
    emb = config.embeddings[0]
    assert emb.tensor_name.startswith("penultimate")
    tensors = (root / emb.tensor_path).read_text().splitlines()
    assert len(tensors) == 50
    width = densekit.create_model("densenet-bc-40-k12", num_classes=10, in_channels=1, **TINY).classifier.in_features
    assert len(tensors[0].split("\t")) == width      # the penultimate layer: pooled features before the classifier
    labels = (root / emb.metadata_path).read_text().splitlines()
    assert len(labels) == 50 and set(labels) <= {str(i) for i in range(10)}
    sprite = Image.open(root / emb.sprite.image_path)
    assert list(emb.sprite.single_image_dim) == [8, 8]
    assert sprite.size[0] >= 8 * 8   # ceil(sqrt(50)) = 8 images per row


def test_plots_are_written(run):
    plots = run.dir / "plots"
    for name in ("curves.png", "confusion.png", "worst.png", "samples.png"):
        img = Image.open(plots / name)
        assert img.size[0] > 300 and img.size[1] > 150, name
    listed = json.loads((plots / "predictions.json").read_text())
    assert len(listed["samples"]) == 16
    wrong = round((1 - run.summary["test_top1"]) * run.summary["test_count"])
    assert len(listed["worst"]) == min(24, wrong)
    assert all(r["true"] != r["pred"] for r in listed["worst"])
    probs = [r["prob"] for r in listed["worst"]]
    assert probs == sorted(probs, reverse=True)


def test_curves_are_rewritten_every_epoch(tmp_path):
    seen = []

    class Watch(densekit.engine.Callback):
        def on_epoch_end(self, trainer, record):
            png = trainer.run.path / "plots" / "curves.png"
            seen.append(png.stat().st_mtime_ns if png.exists() else None)

    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=2, batch_size=64,
                               val_split=200, out=str(tmp_path), name="curves", workers=0, tensorboard=False)
    # the tracking callbacks run after the caller's, so each epoch's check sees the previous epoch's file
    run = densekit.train(cfg, callbacks=[Watch()], verbose=False)
    assert seen[0] is None and seen[1] is not None     # written after epoch 1
    assert (run.dir / "plots" / "curves.png").stat().st_mtime_ns > seen[1]


def test_runs_table_lists_finished_and_diverged_runs(run, capsys):
    root = run.dir.parent
    bad = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=2, batch_size=32,
                               optimizer="rmsprop", lr=0.1, momentum=0.0, schedule="constant", weight_decay=0.0,
                               val_split=200, out=str(root), name="blown", workers=0, tensorboard=False, plots=False)
    with pytest.raises(densekit.DensekitError, match="diverged"):
        densekit.train(bad, verbose=False)
    from densekit.cli import main
    assert main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "MODEL", "DATASET", "STATUS", "EPOCHS", "BEST", "VAL", "TEST", "DURATION",
                                "WHY", "IT", "ENDED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    best_val = max(m["val_top1"] for m in run.metrics)
    assert rows["tracked"][:5] == ["tracked", "densenet-bc-40-k12", "digits", "finished", "3/3"]
    assert rows["tracked"][5:7] == [f"{100 * best_val:.2f}%", f"{100 * run.summary['test_top1']:.2f}%"]
    assert rows["blown"][3:5] == ["diverged", "0/2"] and rows["blown"][6] == "-"
    assert " ".join(rows["blown"][8:]).startswith("training diverged at epoch 1")   # why it ended

    assert main(["runs", str(root), "--json"]) == 0
    listed = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed["tracked"]["test_top1"] == pytest.approx(run.summary["test_top1"])
    assert listed["blown"]["status"] == "diverged"


def test_runs_show_prints_settings_metrics_and_artefacts(run, capsys):
    from densekit.cli import main
    assert main(["runs", "show", str(run.dir)]) == 0
    out = capsys.readouterr().out
    assert "status finished" in out and "  optimizer: sgd" in out and "  lr: 0.1" in out
    epoch_lines = [line.split() for line in out.split("metrics:")[1].split("results:")[0].splitlines()[2:] if line.strip()]
    assert [int(line[0]) for line in epoch_lines] == [1, 2, 3]
    assert [line[5] for line in epoch_lines] == [f"{100 * m['val_top1']:.2f}%" for m in run.metrics]
    assert f"test top-1 {100 * run.summary['test_top1']:.2f}%" in out
    assert f"flip TTA; one view {100 * run.summary['test_top1_single']:.2f}%" in out
    for artefact in ("checkpoints/best.pt", "metrics.jsonl", "plots/curves.png", "plots/confusion.png"):
        assert f"  {artefact}  (" in out, artefact


def test_metrics_csv_matches_metrics_jsonl(run):
    import csv
    rows = list(csv.DictReader((run.dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["val_top1"]) for r in rows] == pytest.approx([m["val_top1"] for m in run.metrics])


def test_a_run_whose_process_died_is_listed_as_failed(tmp_path, capsys):
    import subprocess
    import sys
    cfg = dict(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=3, batch_size=64, val_split=200,
               out=str(tmp_path), name="died", workers=0, tensorboard=False, plots=False)
    # the process dies hard after its first epoch, as under `kill -9` or an out-of-memory kill
    script = ("import os, densekit\n"
              "class Die(densekit.engine.Callback):\n"
              "    def on_epoch_end(self, trainer, record): os._exit(9)\n"
              f"densekit.train(densekit.TrainConfig(**{cfg!r}), callbacks=[Die()], verbose=False)\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert json.loads((tmp_path / "died" / "status.json").read_text())["status"] == "running"
    from densekit.cli import main
    assert main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[3:5] == ["failed", "1/3"]
