"""densekit bench --mode infer --backends: every backend timed on the same graph, ratios against eager."""
import pytest

from densekit.workflows.bench_infer import format_infer_report, run_infer_bench
from densekit.cli import main
from densekit.errors import DensekitError


def test_backends_are_timed_at_each_batch_size_with_ratios_against_the_fastest_eager():
    r = run_infer_bench("densenet-bc-40-k12", (1, 8, 8), backends=("eager", "folded", "onnx"),
                        precisions=("fp32",), batch_sizes=(1, 4), steps=3, max_s=0.5, threads=1)
    rows = {(x["backend"], x["batch_size"]): x for x in r["rows"]}
    assert set(rows) == {(b, n) for b in ("eager", "folded", "onnx") for n in (1, 4)}
    assert rows[("eager", 1)]["vs_fastest_eager"] == 1.0 and rows[("onnx", 4)]["precision"] == "float32"
    assert all(x["images_per_s"] > 0 for x in r["rows"])
    assert rows[("onnx", 1)]["p99_ms"] >= rows[("onnx", 1)]["p50_ms"] > 0 and rows[("eager", 4)]["p50_ms"] > 0
    assert "onnx          float32       4" in format_infer_report(r)
    with pytest.raises(DensekitError, match="unknown inference backend tvm"):
        run_infer_bench("densenet-bc-40-k12", (1, 8, 8), backends=("tvm",))


def test_backends_need_infer_mode(capsys):
    assert main(["bench", "densenet-bc-40-k12", "--backends", "eager"]) == 1
    assert "add --mode infer" in capsys.readouterr().err


def test_int8_and_openvino_rows_of_a_trained_run_report_file_size_and_top1_as_json(digits_run, capsys):
    import json
    run = digits_run.dir
    assert main(["bench", str(run), "--mode", "infer", "--backends", "eager,onnx-int8,openvino,openvino-int8",
                 "--precision", "fp32", "--batch-sizes", "2", "--steps", "3", "--max-seconds", "0.2",
                 "--threads", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["backend"], r["precision"], r["batch"]) for r in rows] == [
        ("eager", "float32", 2), ("onnx-int8", "int8", 2), ("openvino", "float32", 2), ("openvino-int8", "int8", 2)]
    assert all(r["images_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 and 0 <= r["top1"] <= 100 for r in rows)
    assert abs(rows[2]["top1_vs_float"]) < 1 and rows[1]["file_mb"] < rows[2]["file_mb"]
