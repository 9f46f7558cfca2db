"""Int8 and OpenVINO exports: the accuracy gate passes a real calibration and refuses a broken one
(writing nothing), the figures travel in the metadata to the runtime, `predict --info` and the
server's model card, `densekit verify` gates any file, and the runtime runs both without torch."""
import json
import subprocess
import sys

import numpy as np
import pytest

import densekit
from densekit.workflows import quantize
from densekit.errors import DensekitError
from densekit.workflows.export import export, read_metadata
from densekit.runtime import OnnxModel, OpenVinoModel
from densekit.serve.backends import load_backend, model_card
from conftest import without_torch

# digits' test split has ~36 images a class, so one image is ~2.8 points of a class's recall: the
# tests allow a few images; the top-1 default (0.5 points) is kept.
LOOSE = {"max_class_drop": 9.0, "max_drop": 1.5}


@pytest.fixture(scope="module")
def run_dir(digits_run):
    return digits_run.dir


@pytest.fixture(scope="module")
def int8_onnx(run_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "model-int8.onnx"
    return export(run_dir, "onnx", out=path, dynamic_batch=True, precision="int8", calibrate=128, **LOOSE)


def test_int8_onnx_passes_the_gate_and_carries_its_figures(run_dir, int8_onnx):
    g = int8_onnx["gate"]
    assert g["passed"] and g["images"] > 300 and g["top1_float"] > 50
    assert abs(g["top1_drop"]) <= 1.5 and g["agreement"] > 90
    meta = read_metadata(int8_onnx["path"])
    assert meta["quantization"] == "int8" and meta["gate"] == g
    assert meta["calibration_images"] == "128 training images of digits"
    model = OnnxModel(int8_onnx["path"], device="cpu")
    assert model.spec.quantization == "int8" and model.spec.gate["top1"] == g["top1"]
    ops = {n.op_type for n in __import__("onnx").load(int8_onnx["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    card = model_card(model)   # what the server's /v1/model answers
    assert card["precision"] == "int8" and card["gate"]["worst_class_drop"] == g["worst_class_drop"]


def test_a_broken_calibration_is_refused_and_no_file_is_kept(run_dir, tmp_path, monkeypatch):
    def constant(spec, dataset, n=512, seed=0):   # every calibration image the same grey: useless ranges
        return np.full((n, *spec.input_shape), 128, np.uint8), f"{n} constant images"
    monkeypatch.setattr(quantize, "calibration_pixels", constant)
    out = tmp_path / "bad.onnx"
    with pytest.raises(DensekitError, match="loses too much accuracy.*no file was written"):
        export(run_dir, "onnx", out=out, precision="int8", calibrate=64)
    assert list(tmp_path.iterdir()) == []


def test_verify_runs_the_gate_on_an_exported_file(run_dir, int8_onnx):
    p = subprocess.run([sys.executable, "-m", "densekit", "verify", int8_onnx["path"], "--dataset", "digits",
                        "--reference", str(run_dir), "--max-class-drop", "9", "--max-drop", "1.5", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    figures = json.loads(p.stdout)
    assert figures["passed"] and figures["images"] == int8_onnx["gate"]["images"]
    # the same file against a demand it cannot meet (no class may lose anything, and the file
    # differs from float on some images): refused in one line
    if figures["worst_class_drop"] > 0:
        with pytest.raises(DensekitError, match="loses too much accuracy"):
            densekit.verify(int8_onnx["path"], "digits", run_dir, max_class_drop=0)


def test_predict_info_shows_the_gate(int8_onnx):
    p = subprocess.run([sys.executable, "-m", "densekit", "predict", int8_onnx["path"], "--info", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    card = json.loads(p.stdout)
    assert card["precision"] == "int8" and card["gate"]["top1"] == int8_onnx["gate"]["top1"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_ir_matches_or_passes_the_gate(run_dir, tmp_path, precision):
    out = tmp_path / "model.xml"
    r = export(run_dir, "openvino", out=out, dynamic_batch=True, precision=precision,
               **({} if precision == "fp32" else LOOSE))
    assert out.is_file() and out.with_suffix(".bin").is_file()
    model = OpenVinoModel(out)
    assert model.spec.quantization == (None if precision == "fp32" else precision)
    if precision == "fp32":   # the float IR: the parity self-check against PyTorch; the server loads it
        assert r["check"]["top1_agreement"] >= 0.999
        served = load_backend(out, "openvino")
        assert served.card["backend"] == "openvino" and served.card["precision"] == "float32"
        with pytest.raises(DensekitError, match="--backend onnx serves a .onnx file"):
            load_backend(out, "onnx")
    else:
        assert r["gate"]["passed"] and model.spec.gate == r["gate"]
    files = [densekit.load_dataset("digits", "test")[i][0].numpy() for i in range(8)]
    onnx_top1 = [p["top_k"][0]["index"] for p in model.predict(files, top_k=1)]
    torch_top1 = [p["top_k"][0]["index"] for p in densekit.predict(run_dir, files, top_k=1, tta="none")]
    assert sum(a == b for a, b in zip(onnx_top1, torch_top1)) >= 7


def test_runtime_runs_int8_onnx_and_openvino_where_torch_cannot_be_imported(run_dir, int8_onnx, tmp_path):
    xml = tmp_path / "m.xml"
    export(run_dir, "openvino", out=xml, dynamic_batch=True)
    code = f"""
import json, sys
import numpy as np

from densekit.runtime import OnnxModel, OpenVinoModel
x = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
out = {{}}
for model in (OnnxModel({int8_onnx["path"]!r}), OpenVinoModel({str(xml)!r})):
    out[model.backend] = [model.spec.quantization, model.logits(x).shape[1]]
out["torch"] = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps(out))
"""
    p = without_torch(code)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"onnx": ["int8", 10], "openvino": [None, 10], "torch": []}


def test_lossy_settings_that_cannot_act_are_refused(run_dir, tmp_path):
    with pytest.raises(DensekitError, match="bf16 applies to --format openvino"):
        export(run_dir, "onnx", out=tmp_path / "m.onnx", precision="bf16")
    with pytest.raises(DensekitError, match="--calibrate sets int8"):
        export(run_dir, "onnx", out=tmp_path / "m.onnx", calibrate=10)
    with pytest.raises(DensekitError, match="gate a lossy file"):
        export(run_dir, "onnx", out=tmp_path / "m.onnx", max_drop=1)
    assert list(tmp_path.iterdir()) == []
