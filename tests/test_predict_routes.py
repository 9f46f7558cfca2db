"""The four prediction routes are one code path: ``densekit.predict`` (API), ``densekit predict --json``
(CLI), ``POST /v1/predict`` (server) and the ONNX runtime give the same results for the same images,
on a checkpoint with flip TTA and a calibration temperature that every route must apply."""
import json
import warnings

import pytest
import torch

with warnings.catch_warnings():   # starlette asks for httpx2, which this environment does not pin
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

import densekit
from conftest import TINY
from datagen import write_image
from densekit.cli import main
from densekit.engine.checkpoint import save_checkpoint
from densekit.serve import create_app

CLASSES = list("abcde")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A checkpoint (float32, flip TTA, temperature 1.5) of a DenseNet-BC with trained-looking
    BatchNorm statistics, its ONNX export, and images of several modes and sizes."""
    root = tmp_path_factory.mktemp("routes")
    torch.manual_seed(0)
    net = densekit.create_model("densenet-bc-40-k12", in_channels=3, num_classes=5, **TINY)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2)
    data = {"classes": CLASSES, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3], "channels": 3,
            "image_size": [12, 10], "dataset": "synthetic", "tta": "flip"}
    ckpt = save_checkpoint({"kind": "weights", "model": {"name": "densenet-bc-40-k12",
                                                         "args": dict(TINY, in_channels=3, num_classes=5)},
                            "data": data, "precision": {"dtype": "float32", "channels_last": False},
                            "calibration": {"temperature": 1.5}, "state_dict": net.state_dict()},
                           root / "model.pt")
    images = [write_image(root / f"img{i}.{fmt}", size=size, mode=mode, seed=i, fmt=fmt.upper())
              for i, (fmt, mode, size) in enumerate([("png", "RGB", (10, 12)), ("png", "L", (31, 17)),
                                                     ("jpeg", "RGB", (40, 30)), ("png", "RGBA", (9, 9)),
                                                     ("bmp", "RGB", (10, 12)), ("webp", "RGBA", (20, 24))])]
    onnx_path = densekit.export(ckpt, "onnx", dynamic_batch=True, check=images)["path"]
    return ckpt, onnx_path, images


def api(model, images):
    return densekit.predict(model, images, top_k=3)


def cli(model, images, capsys):
    assert main(["predict", str(model), *map(str, images), "--top-k", "3", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def server(model, images):
    """One request holding every image, answered in one forward pass (as the API's one batch)."""
    app = create_app(model, max_batch_size=len(images), max_delay_ms=1000)
    with TestClient(app) as client:
        files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in images]
        res = client.post("/v1/predict", params={"top_k": 3}, files=files)
    assert res.status_code == 200, res.text
    return res.json()


def test_api_cli_and_server_give_identical_results_on_each_backend(models, capsys):
    ckpt, onnx_path, images = models
    for model in (ckpt, onnx_path):
        a, c, s = api(model, images), cli(model, images, capsys), server(model, images)
        assert [r["file"] for r in a] == [r["file"] for r in c] == [str(p) for p in images]
        assert [r["file"] for r in s] == [p.name for p in images]
        assert [r["top_k"] for r in a] == [r["top_k"] for r in c] == [r["top_k"] for r in s]   # to the last bit
        assert all(set(r) == {"file", "top_k"} and set(r["top_k"][0]) == {"label", "index", "prob"} for r in a)


def test_the_onnx_runtime_gives_what_pytorch_gives(models):
    ckpt, onnx_path, images = models
    torch_results, onnx_results = api(ckpt, images), api(onnx_path, images)
    for t, o in zip(torch_results, onnx_results):
        assert [g["index"] for g in t["top_k"]] == [g["index"] for g in o["top_k"]]
        assert [g["prob"] for g in t["top_k"]] == pytest.approx([g["prob"] for g in o["top_k"]], abs=1e-5)
    # the temperature is applied once, in the graph and in the PyTorch predictor alike
    model = densekit.load_predictor(onnx_path)
    assert model.spec.temperature == 1.5 and model.spec.tta == "flip"
    plain = densekit.load_predictor(ckpt)
    x = model.decode(images[0])[None]
    with torch.no_grad():
        normalised = plain.model.normalise(torch.from_numpy(x).float())
        expected = (plain.net(normalised) + plain.net(normalised.flip(3))) / 2 / 1.5
    assert plain.logits(x).ravel() == pytest.approx(expected.numpy().ravel(), abs=1e-5)
    assert model.logits(x).ravel() == pytest.approx(expected.numpy().ravel(), abs=1e-5)


def test_predict_on_a_folder_loads_the_model_once_and_streams_it_in_chunks(models, capsys, monkeypatch):
    import densekit.cli.predict as verb
    import densekit.engine.infer as infer
    ckpt, _, images = models
    loads, read = [], infer.load_checkpoint
    monkeypatch.setattr(infer, "load_checkpoint", lambda path: loads.append(path) or read(path))
    monkeypatch.setattr(verb, "CHUNK", 2)                 # 6 images in 3 chunks
    assert main(["predict", str(ckpt), str(images[0].parent), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(images) and loads == [ckpt]
