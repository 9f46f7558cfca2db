"""Every verb takes --json and prints one JSON object per line, and nothing else on stdout;
`--input-size` means the same to every verb that takes it."""
import json

import pytest
import yaml

from densekit.cli import build_parser, main
from conftest import TINY_FLAGS

TINY = [*TINY_FLAGS,
        "--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--val-split", "200", "--workers", "0",
        "--no-tensorboard", "--no-plots"]


def json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "no output"
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects), text[:200]
    return objects


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("json")
    assert main(["train", *TINY, "--out", str(out), "--name", "run", "--quiet"]) == 0
    return out / "run"


def test_every_verb_prints_one_object_per_line(run_dir, tmp_path, capsys):
    capsys.readouterr()
    cases = [
        ["train", *TINY, "--out", str(tmp_path), "--name", "again"],
        ["eval", str(run_dir), "--split", "val", "--tta", "none"],
        ["models", "densenet-bc*"],
        ["data", "list"],
        ["data", "info", "digits"],
        ["data", "show", "digits", "--per-class", "2", "--max-classes", "3", "--out", str(tmp_path / "grid.png")],
        ["predict", str(run_dir), str(tmp_path / "grid.png"), str(tmp_path / "grid.png"), "--top-k", "2"],
        ["data", "import", "digits", "--workers", "0", "--out", str(tmp_path / "packed")],
        ["data", "shapes", str(tmp_path / "shapes"), "--n", "8", "--size", "16"],
        ["summary", "densenet-bc-40-k12", "--input-size", "1,16,16"],
        ["recipes"],
        ["recipes", "fast"],
        ["runs", str(run_dir.parent)],
        ["runs", "show", str(run_dir)],
        ["report", str(run_dir), "--out", str(tmp_path / "report.html")],
        ["sweep", "--grid", "lr=0.1", *TINY, "--out", str(tmp_path), "--name", "sw"],
        ["compare", "plain-cnn", "--dataset", "digits", "--same-process", "--workers", "0", "--batch-size", "64",
         "--val-split", "100", "--label-smoothing", "0.1", "--out", str(tmp_path / "cmp")],
        ["bench", "densenet-bc-40-k12", "--input-size", "1,16,16", "--batch-size", "2", "--steps", "1", "--mode", "infer"],
        ["calibrate", str(run_dir)],
        ["bench", "densenet-bc-40-k12", "--input-size", "1,16,16", "--batch-size", "2", "--steps", "1", "--mode", "train"],
        ["bench", "plain-cnn", "--input-size", "1,8,8", "--mode", "infer", "--backends", "eager,folded",
         "--batch-sizes", "1,2", "--steps", "2", "--max-seconds", "1", "--precision", "fp32"],
        ["explain", str(run_dir), str(tmp_path / "grid.png"), str(tmp_path / "grid.png"), "--out", str(tmp_path / "maps"),
         "--method", "saliency"],
        ["export", str(run_dir), "--format", "safetensors", "--out", str(tmp_path / "model.safetensors")],
        ["export", str(run_dir), "--out", str(tmp_path / "v.onnx")],
        ["verify", str(tmp_path / "v.onnx"), "--dataset", "digits", "--reference", str(run_dir), "--limit", "50"],
        ["lr-find", "--model", "plain-cnn", "--dataset", "digits", "--batch-size", "32", "--workers", "0", "--num-iter", "12", "--plot", str(tmp_path / "lr.png")],
    ]
    seen = {}
    for argv in cases:
        code = main([*argv, "--json"])
        out = capsys.readouterr().out
        assert code == 0, argv
        seen.setdefault(" ".join(argv[:2]), []).extend(json_lines(out))
    # every verb (and data's sub-verbs) is in the cases above; serve has its own test below
    verbs = build_parser()._subparsers._group_actions[0].choices
    covered = {argv[0] if argv[0] != "data" else f"data {argv[1]}" for argv in cases} | {"serve"}
    assert covered == {f"data {v}" for v in verbs["data"]._subparsers._group_actions[0].choices} | \
        set(verbs) - {"data"}, "a verb without a --json case here"
    assert len(seen["explain " + str(run_dir)]) == 2 and seen["explain " + str(run_dir)][0]["method"] == "saliency"
    rows = seen["bench plain-cnn"]
    assert [(r["backend"], r["batch_size"]) for r in rows] == [("eager", 1), ("eager", 2), ("folded", 1), ("folded", 2)] \
        and all(r["model"] == "plain-cnn" for r in rows)
    assert seen["lr-find --model"][0]["suggestion"] > 0
    assert seen["train --model"][0]["status"] == "finished"
    assert len(seen["predict " + str(run_dir)]) == 2 and len(seen["predict " + str(run_dir)][0]["top_k"]) == 2
    assert seen["eval " + str(run_dir)][0]["split"] == "val" and "ece_after" in seen["eval " + str(run_dir)][0]["calibration"]
    assert seen["calibrate " + str(run_dir)][0]["temperature"] > 0
    assert len(seen["models densenet-bc*"]) > 1 and all("params" in r for r in seen["models densenet-bc*"])
    assert {"digits", "mnist"} <= {r["name"] for r in seen["data list"]}
    assert {r["name"] for r in seen["recipes"]} >= {"fast", "paper-cifar"}
    assert seen["recipes fast"][0]["fields"]
    assert seen["runs show"][0]["metrics"][0]["epoch"] == 1 and seen["runs show"][0]["config"]["dataset"] == "digits"
    assert (tmp_path / "packed").is_dir() and (tmp_path / "grid.png").is_file()
    assert seen["summary densenet-bc-40-k12"][0]["model"] == "densenet-bc-40-k12"
    # compare takes every training flag, as train and sweep do
    (row,) = seen["compare plain-cnn"]
    saved = yaml.safe_load(open(f"{row['run_dir']}/config.yaml"))
    assert saved["label_smoothing"] == 0.1 and saved["val_split"] == 100 and saved["epochs"] == 1


def test_every_verb_accepts_json():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    for name, sub in verbs.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        for p in (nested[0].choices.values() if nested else [sub]):
            assert any("--json" in a.option_strings for a in p._actions), f"{p.prog} has no --json"


@pytest.mark.parametrize("text, size", [("1,16,16", [1, 16, 16]), ("1x16x16", [1, 16, 16]), ("16", [3, 16, 16])])
def test_input_size_means_the_same_to_summary_and_bench(text, size, capsys):
    assert main(["summary", "densenet-bc-40-k12", "--input-size", text, "--json"]) == 0
    assert json_lines(capsys.readouterr().out)[0]["input_size"] == size
    assert main(["bench", "densenet-bc-40-k12", "--input-size", text, "--batch-size", "2", "--steps", "1",
                 "--mode", "infer", "--json"]) == 0
    assert json_lines(capsys.readouterr().out)[0]["input_size"] == size


@pytest.mark.parametrize("verb", ["summary", "bench"])
def test_a_bad_input_size_is_one_line_for_every_verb(verb, capsys):
    assert main([verb, "densenet-bc-40-k12", "--input-size", "16x16"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--input-size '16x16': write C,H,W" in err[0]


def test_serve_prints_its_address_as_one_json_object(run_dir):
    import os
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "densekit", "serve", str(run_dir), "--port", "0", "--json",
                             "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        first = json.loads(proc.stdout.readline())
        assert first["url"].startswith("http://127.0.0.1:") and first["classes"][:2] == ["0", "1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    assert not rest.strip(), (rest, err)   # nothing else on stdout, also while it stops
