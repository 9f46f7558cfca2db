"""The CLI end to end on real files: train, eval --json, predict on PNG/JPEG of many modes, errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import densekit
from conftest import TINY_FLAGS
from densekit.cli import main

TINY = [*TINY_FLAGS,
        "--dataset", "digits", "--batch-size", "32", "--lr", "0.1", "--val-split", "200", "--workers", "0",
        "--no-tensorboard", "--no-plots"]


@pytest.fixture(scope="module")
def trained_run(digits_run):
    """The session's tiny digits run (conftest.py): what these flags and --epochs 6 train."""
    return digits_run.dir


def digit_images(folder, n=6):
    """Real digits test images saved in different modes and formats."""
    ds = densekit.load_dataset("digits", "test")
    folder.mkdir(exist_ok=True)
    files = []
    modes = [("L", ".png"), ("RGB", ".png"), ("RGBA", ".png"), ("P", ".gif"), ("I;16", ".png"), ("CMYK", ".jpg")]
    for i, (mode, ext) in enumerate(modes[:n]):
        a = ds[i][0][0].numpy()
        img = Image.fromarray(a, "L")
        if mode == "I;16":
            img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
        elif mode != "L":
            img = img.convert(mode)
        f = folder / f"digit{i}_label{ds[i][1]}_{mode.replace(';', '')}{ext}"
        img.save(f)
        files.append(f)
    return files


def test_predict_resizes_a_larger_image_to_the_model_input(trained_run, tmp_path):
    ds = densekit.load_dataset("digits", "test")
    big = tmp_path / "big.png"
    Image.fromarray(ds[0][0][0].numpy(), "L").resize((40, 40), Image.BILINEAR).convert("RGB").save(big)
    (r,) = densekit.predict(trained_run, [big], top_k=10)
    assert sorted(g["index"] for g in r["top_k"]) == list(range(10))
    assert sum(g["prob"] for g in r["top_k"]) == pytest.approx(1, abs=1e-4)


def test_eval_json_reports_fractions_and_per_class(trained_run, capsys):
    assert main(["eval", str(trained_run), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["count"] == 360
    assert 0.5 < m["top1"] <= m["top5"] <= 1
    assert m["loss"] > 0
    assert set(m["per_class"]) == {str(i) for i in range(10)}
    summary = json.loads((trained_run / "summary.json").read_text())
    assert m["top1"] == pytest.approx(summary["test_top1"])
    assert "tta" not in m and summary["test_tta"] == "none"   # digits are not mirrored by default
    assert main(["eval", str(trained_run), "--json", "--tta", "flip"]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["tta"] == "flip" and flipped["top1_single"] == pytest.approx(m["top1"])
    assert flipped["top1"] != m["top1"]   # a mirrored digit is another picture: the average differs


def test_predict_json_on_images_of_every_mode(trained_run, tmp_path, capsys):
    files = digit_images(tmp_path / "imgs")
    assert main(["predict", str(trained_run), str(tmp_path / "imgs"), "--top-k", "3", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]   # one object per image
    assert sorted(r["file"] for r in results) == sorted(map(str, files))
    for r in results:
        assert [g["label"] for g in r["top_k"]] == [str(g["index"]) for g in r["top_k"]]
        assert len(r["top_k"]) == 3 and 0 < r["top_k"][0]["prob"] <= 1
    # the same picture in every mode gets the same answer as the model gives its original pixels
    labels = {r["file"]: r["top_k"][0]["index"] for r in results}
    ds = densekit.load_dataset("digits", "test")
    direct = densekit.predict(trained_run, [ds[i][0] for i in range(len(files))], top_k=1)
    for i, f in enumerate(files):
        assert labels[str(f)] == direct[i]["top_k"][0]["index"], f.name


def test_predict_names_an_unreadable_image_and_still_answers_the_rest(trained_run, tmp_path, capsys):
    good = digit_images(tmp_path, n=1)[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    assert main(["predict", str(trained_run), str(good), str(bad)]) == 1
    out, err = capsys.readouterr()
    assert good.name in out and "broken.png" in err and "Traceback" not in err


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "densekit", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "densenet-9000"], "unknown model 'densenet-9000'"),
    (["train", "--model", "densenet-bc-40-k12", "--dataset", "cifar10", "--data-dir", "{tmp}/empty"],
     "cifar-10-batches-py not found"),
    (["train", "--model", "densenet-bc-40-k12", "--dataset", "folder:{tmp}/photos"], "photos: no such folder"),
    (["train", "--model", "densenet-bc-40-k12", "--dataset", "nonsense"], "unknown dataset 'nonsense'"),
    (["train", "--lr", "-1"], "lr -1"),
    (["train", "--epochs", "ten"], "epochs 'ten': expected int"),
    (["eval", "{tmp}/no-such-run"], "not found"),
    (["eval", "{tmp}/corrupt.pt"], "is corrupt or not a densekit checkpoint"),
    (["predict", "{tmp}/corrupt.pt", "x.png"], "is corrupt or not a densekit checkpoint"),
])
def test_user_errors_print_one_line_and_exit_nonzero(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt.pt").write_bytes(b"PK\x03\x04 truncated zip, not a checkpoint")
    proc = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densekit: error:") and message in lines[0], proc.stderr


def test_models_lists_exact_parameter_counts(capsys):
    assert main(["models", "densenet121", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["params"] == 7_978_856


def test_resume_keeps_the_runs_own_settings_unless_told_to_extend(tmp_path, capsys):
    import yaml
    args = ["train", *TINY, "--epochs", "2", "--out", str(tmp_path), "--name", "r", "--quiet"]
    assert main(args) == 0
    run = tmp_path / "r"
    assert main(["train", "--resume", str(run), "--quiet"]) == 0      # nothing left to do: still 2 epochs
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["dataset"] == "digits"


def test_predict_streams_a_folder_in_chunks_and_writes_a_csv(trained_run, tmp_path, capsys, monkeypatch):
    import csv

    import densekit.cli.predict as verb
    files = digit_images(tmp_path / "many", n=7)
    assert main(["predict", str(trained_run), str(tmp_path / "many"), "--top-k", "2", "--json"]) == 0
    whole = capsys.readouterr().out.splitlines()
    monkeypatch.setattr(verb, "CHUNK", 3)          # 7 images in chunks of 3, 3 and 1
    assert main(["predict", str(trained_run), str(tmp_path / "many"), "--top-k", "2", "--json",
                 "--csv", str(tmp_path / "p.csv")]) == 0
    assert capsys.readouterr().out.splitlines() == whole
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert [r["file"] for r in rows] == [json.loads(line)["file"] for line in whole] and len(rows) == len(files)
    for row, line in zip(rows, whole):
        best = json.loads(line)["top_k"][0]
        assert row["label"] == best["label"] and float(row["prob"]) == pytest.approx(best["prob"], abs=1e-6)
        assert len(row["top_k"].split(";")) == 2 and row["error"] == ""


def test_building_the_command_line_does_not_import_pytorch():
    """`densekit serve model.onnx` and every verb's --help start without PyTorch's import (~1 s, ~220 MiB)."""
    code = "import sys; from densekit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
