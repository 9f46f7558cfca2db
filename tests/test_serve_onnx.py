"""`densekit serve MODEL.onnx`: the ONNX backend (densekit.runtime) behind the same HTTP API,
from the command line of a process where PyTorch cannot be imported."""
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

import densekit
from test_serve import assert_same, images, post_files, run, server  # noqa: F401  (fixtures and helpers)

NO_TORCH = """
import sys
sys.modules["torch"] = None          # any `import torch` now fails
from densekit.cli import main        # the command line itself, as a user without PyTorch runs it
sys.exit(main(["serve", sys.argv[1], "--port", "0", "--log-level", "warning", "--max-batch-size", "8"]))
"""


@pytest.fixture(scope="module")
def onnx_file(run, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("export") / "served.onnx"
    densekit.export(run.dir, "onnx", dynamic_batch=True, out=out)
    return out


def test_an_onnx_export_is_served_without_torch_and_answers_as_densekit_predict(run, images, onnx_file,  # noqa: F811
                                                                                tmp_path):
    with server(onnx_file, tmp=tmp_path, cmd=[sys.executable, "-c", NO_TORCH, str(onnx_file)]) as srv:
        sent = [images[0], images[-1], images[11]]
        res = post_files(srv.url, sent, top_k=3)
        assert res.status_code == 200
        assert [r["file"] for r in res.json()] == [p.name for p in sent]
        assert_same(res.json(), densekit.predict(onnx_file, sent, top_k=3))
        # the export computes what the checkpoint does: the same classes, probabilities to float rounding
        torch_answer = densekit.predict(run.dir, sent, top_k=3)
        for served, expected in zip(res.json(), torch_answer):
            assert served["top_k"][0]["index"] == expected["top_k"][0]["index"]
            assert served["top_k"][0]["prob"] == pytest.approx(expected["top_k"][0]["prob"], abs=2e-2)
        card = httpx.get(f"{srv.url}/v1/model").json()
        assert card["backend"] == "onnx" and card["name"] == "densenet-bc-40-k12" and card["input_size"] == [1, 8, 8]
        assert card["metrics"]["test_top1"] == pytest.approx(run.summary["test_top1"])
        assert "onnxruntime" in card["versions"] and card["serving"]["max_batch_size"] == 8
        assert card["serving"]["forward_process"] is False     # onnxruntime lets go of the GIL for a whole pass
        bad = httpx.post(f"{srv.url}/v1/predict", content=b"nope", headers={"content-type": "image/png"})
        assert bad.status_code == 400 and bad.json()["error"] == "not_an_image"


def test_serve_onnx_from_the_cli_with_two_inference_threads(images, onnx_file, tmp_path):  # noqa: F811
    with server(onnx_file, "--backend", "onnx", "--workers", "2", "--threads", "1", tmp=tmp_path) as srv:
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda p: client.post(f"{srv.url}/v1/predict?top_k=2", content=p.read_bytes(),
                                                          headers={"content-type": "image/png"}), images[:8]))
        assert_same([a.json()[0] for a in answers], densekit.predict(onnx_file, images[:8], top_k=2))
        serving = httpx.get(f"{srv.url}/v1/model").json()["serving"]
        assert serving["workers"] == 2 and serving["threads"] == 1
