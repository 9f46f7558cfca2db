"""`densekit bench` measures densekit and the naive reference in one run and reports both."""
import json

import pytest

from densekit.workflows.bench import parse_input_size
from densekit.cli import main
from densekit.errors import DensekitError


def test_bench_json_reports_both_models_and_their_ratio(capsys):
    code = main(["bench", "densenet-bc-40-k12", "--input-size", "1,16,16", "--batch-size", "4",
                 "--steps", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "densenet-bc-40-k12"
    assert result["input_size"] == [1, 16, 16] and result["batch_size"] == 4
    assert result["device"] == "cpu" and result["mode"] == "train"
    assert result["reference_settings"] == {"precision": "float32", "channels_last": False, "compile": False,
                                            "malloc": "system"}
    for name in ("densekit", "reference"):
        m = result[name]
        for key in ("images_per_s", "ms_per_step", "peak_memory_mb", "gflop_per_step", "gflops"):
            assert m[key] > 0, (name, key)
        assert m["memory_kind"] == "peak RSS of a fresh process"
    # The naive reference runs with glibc's own malloc settings, densekit with its tuning.
    assert (result["densekit"]["malloc"], result["reference"]["malloc"]) == ("densekit", "system")
    assert result["speedup"] == pytest.approx(
        result["densekit"]["images_per_s"] / result["reference"]["images_per_s"])
    assert result["memory_ratio"] > 0


def test_input_size_accepts_one_side_or_three_numbers():
    assert parse_input_size("64") == (3, 64, 64)
    assert parse_input_size("1,28,28") == (1, 28, 28)
    with pytest.raises(DensekitError):
        parse_input_size("28x28")


def test_bench_errors_are_one_line(capsys):
    assert main(["bench", "densenet-bc-40-k12", "--input-size", "0,1", "--steps", "1"]) == 1
    assert "--input-size" in capsys.readouterr().err
