"""densekit bench --mode infer --backends: every backend timed on the same graph, ratios against eager."""
import pytest

from densekit.bench_infer import format_infer_report, run_infer_bench
from densekit.cli import main
from densekit.errors import DensekitError


def test_backends_are_timed_at_each_batch_size_with_ratios_against_the_fastest_eager():
    r = run_infer_bench("densenet-bc-40-k12", (1, 8, 8), backends=("eager", "folded", "onnx"),
                        precisions=("fp32",), batch_sizes=(1, 4), steps=3, max_s=0.5, threads=1)
    rows = {(x["backend"], x["batch_size"]): x for x in r["rows"]}
    assert set(rows) == {(b, n) for b in ("eager", "folded", "onnx") for n in (1, 4)}
    assert rows[("eager", 1)]["vs_fastest_eager"] == 1.0 and rows[("onnx", 4)]["precision"] == "float32"
    assert all(x["images_per_s"] > 0 for x in r["rows"])
    assert rows[("onnx", 1)]["p99_ms"] >= rows[("onnx", 1)]["p50_ms"] > 0 and "p50_ms" not in rows[("eager", 4)]
    assert "onnx      float32       4" in format_infer_report(r)
    with pytest.raises(DensekitError, match="unknown inference backend tvm"):
        run_infer_bench("densenet-bc-40-k12", (1, 8, 8), backends=("tvm",))


def test_backends_need_infer_mode(capsys):
    assert main(["bench", "densenet-bc-40-k12", "--backends", "eager"]) == 1
    assert "add --mode infer" in capsys.readouterr().err
