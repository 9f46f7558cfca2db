"""The load test of benchmarks/serve_load.py, short: a few requests at two concurrencies against
the three server configurations, every answer a 200, the figures and the ceiling well-formed."""
import importlib.util
import json
from pathlib import Path

from test_serve import run  # noqa: F401  (the module's tiny trained run)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


def load_script():
    spec = importlib.util.spec_from_file_location("serve_load", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_load_test_runs_bounded_and_reports_both_configurations(run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "load.json"
    result = load_script().main(["--run", str(run.dir), "--requests", "12", "--seconds", "20", "--rounds", "2",
                                 "--concurrency", "1,4", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["ratio_rps"].keys() == {"1", "4"} and saved["ceiling_images_per_s"] > 0
    for name in ("batching", "no batching", "in-process"):
        for c in (1, 4):
            r = result["results"][name][c]
            assert r["ok"] == 12 and r["errors"] == 0 and r["rps"] > 0
            assert 0 < r["p50_ms"] <= r["p99_ms"]
            assert r["of_ceiling"] == r["rps"] / saved["ceiling_images_per_s"]
    assert result["results"]["no batching"][4]["mean_batch"] == 1.0     # --max-batch-size 1: never more
    assert 1.0 <= result["results"]["batching"][4]["mean_batch"] <= 4.0
    text = capsys.readouterr().out
    assert "batching / no batching" in text and "forward process / in-process" in text and "p99 ms" in text
