"""densekit.runtime: an exported .onnx predicts like densekit.predict, decodes every image mode as
training does, and imports without PyTorch."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import densekit
from conftest import TINY, without_torch
from datagen import write_image
from densekit.data import Normalize
from densekit.data.images import decode_image
from densekit.engine.checkpoint import save_checkpoint
from densekit.runtime import OnnxModel



@pytest.fixture(scope="module")
def shipped(digits_run, tmp_path_factory):
    """The session's DenseNet-BC trained on digits (conftest.py), exported to ONNX, and its first 40
    test images as PNG files."""
    root = tmp_path_factory.mktemp("ship")
    run = digits_run
    path = densekit.export(run.dir, "onnx", dynamic_batch=True, out=root / "model.onnx")["path"]
    ds = densekit.load_dataset("digits", "test")
    files = []
    for i in range(40):
        files.append(root / "images" / f"{i:02d}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(ds[i][0][0].numpy(), "L").save(files[-1])
    return run.dir, Path(path), files


def top1(preds):
    return [p["top_k"][0]["index"] for p in preds]


def assert_same_top1(onnx_preds, torch_preds):
    """The same top-1 wherever PyTorch's own top-2 are more than 0.05 apart: densekit.predict runs
    in bf16 where the CPU has it (about 3 significant digits), the runtime in float32, so a near
    tie may go either way. Most images of a trained model are far from a tie."""
    clear = [i for i, p in enumerate(torch_preds) if p["top_k"][0]["prob"] - p["top_k"][1]["prob"] > 0.05]
    assert len(clear) >= 0.8 * len(torch_preds)
    assert [top1(onnx_preds)[i] for i in clear] == [top1(torch_preds)[i] for i in clear]


def test_onnx_predictions_match_densekit_predict_on_real_images(shipped):
    run_dir, path, files = shipped
    torch_preds = densekit.predict(run_dir, files, top_k=3)
    onnx_preds = densekit.predict(path, files, top_k=3)          # dispatched to the runtime
    assert [p["file"] for p in onnx_preds] == [p["file"] for p in torch_preds] == [str(f) for f in files]
    assert_same_top1(onnx_preds, torch_preds)
    for a, b in zip(onnx_preds, torch_preds):
        assert a["top_k"][0]["prob"] == pytest.approx(b["top_k"][0]["prob"], abs=0.03)
    assert sum(t == densekit.load_dataset("digits", "test")[i][1] for i, t in enumerate(top1(onnx_preds))) >= 30


def test_runtime_imports_and_predicts_where_torch_cannot_be_imported(shipped):
    run_dir, path, files = shipped
    code = f"""
import json, sys

try:
    import torch
    sys.exit("torch imported")
except ImportError:
    pass
import densekit
from densekit.runtime import OnnxModel
model = OnnxModel({str(path)!r})
preds = model.predict({[str(f) for f in files]!r}, top_k=2)
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps({{"preds": preds, "torch_modules": loaded, "classes": model.meta["classes"]}}))
"""
    p = without_torch(code)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["torch_modules"] == [] and out["classes"] == list("0123456789")
    assert_same_top1(out["preds"], densekit.predict(run_dir, files, top_k=2))


def test_predict_cli_on_an_onnx_file_prints_what_it_prints_for_the_run(shipped, tmp_path):
    run_dir, path, files = shipped
    (tmp_path / "broken.png").write_bytes(b"no pixels here")

    def cli(model):
        return subprocess.run([sys.executable, "-m", "densekit", "predict", str(model), *map(str, files[:10]),
                               str(tmp_path / "broken.png"), "--top-k", "2", "--json"],
                              capture_output=True, text=True, timeout=120)
    a, b = cli(path), cli(run_dir)
    assert a.returncode == b.returncode == 1                          # one unreadable file
    assert a.stderr == b.stderr and "broken.png: not a readable image" in a.stderr
    onnx_out, torch_out = ([json.loads(line) for line in r.stdout.splitlines()] for r in (a, b))
    # (the single-label schema since calibration: the label, its calibrated confidence, the OOD score, the top-k)
    assert [set(r) for r in onnx_out] == [set(r) for r in torch_out] == \
        [{"file", "label", "confidence", "ood_score", "top_k"}] * 10 + [{"file", "error"}]
    assert_same_top1(onnx_out[:10], torch_out[:10])


def checkpoint(tmp_path, channels, size, tta="none"):
    """A checkpoint of an untrained 3- or 1-channel DenseNet-BC with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = densekit.create_model("densenet-bc-40-k12", in_channels=channels, num_classes=5, **TINY)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2)
    data = {"classes": list("abcde"), "mean": [0.4, 0.5, 0.6][:channels], "std": [0.2, 0.25, 0.3][:channels],
            "channels": channels, "image_size": list(size), "dataset": "synthetic", "tta": tta}
    args = dict(TINY, in_channels=channels, num_classes=5)
    return save_checkpoint({"kind": "weights", "model": {"name": "densenet-bc-40-k12", "args": args}, "data": data,
                            "state_dict": model.state_dict()}, tmp_path / f"c{channels}.pt"), model.eval(), data


# Every mode densekit decodes (decode.py), in the formats that can hold it.
MODES = [("png", m) for m in ("L", "LA", "RGB", "RGBA", "P", "I;16", "1")] + \
        [("jpeg", m) for m in ("L", "RGB", "CMYK")] + [("gif", "P"), ("bmp", "RGB"), ("webp", "RGBA")]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """ONNX exports of an RGB and a grayscale model at a non-square size (12 x 10), with flip TTA."""
    root = tmp_path_factory.mktemp("untrained")
    out = {}
    for c in (1, 3):
        ckpt, model, data = checkpoint(root, c, (12, 10), tta="flip")
        images = [write_image(root / f"check{i}.png", size=(10, 12), seed=i) for i in range(2)]
        densekit.export(ckpt, "onnx", dynamic_batch=True, check=images)
        out[c] = (OnnxModel(ckpt.with_suffix(".onnx")), model, data)
    return out


@pytest.mark.parametrize("fmt, mode", MODES)
@pytest.mark.parametrize("channels", [1, 3])
def test_preprocessing_and_logits_match_the_torch_path_for_every_mode(untrained, tmp_path, fmt, mode, channels):
    onnx_model, model, data = untrained[channels]
    path = write_image(tmp_path / f"x.{fmt}", size=(23, 17), mode=mode, fmt=fmt.upper())
    pixels = onnx_model.preprocess(path)
    expected = decode_image(path, channels=channels, size=(12, 10))
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, expected.numpy())
    x = Normalize(data["mean"], data["std"])(expected[None])
    with torch.no_grad():
        ref = torch.stack([model(x), model(x.flip(3))]).mean(0)
    assert np.allclose(onnx_model.logits(pixels[None]), ref.numpy(), atol=1e-4)


def test_a_fixed_batch_graph_takes_any_number_of_images(untrained, tmp_path):
    dynamic, _, _ = untrained[3]
    ckpt = Path(str(dynamic.path).replace(".onnx", ".pt"))
    fixed = OnnxModel(densekit.export(ckpt, "onnx", out=tmp_path / "b1.onnx", verify=False)["path"])
    assert fixed.batch_size == 1 and dynamic.batch_size is None
    x = np.random.default_rng(0).integers(0, 256, (5, 3, 12, 10), dtype=np.uint8)
    assert np.allclose(fixed.predict_arrays(x), dynamic.predict_arrays(x), atol=1e-6)
    assert np.allclose(dynamic.predict_arrays(x).sum(1), 1, atol=1e-6)


def test_runtime_errors_are_one_line_and_a_tta_it_cannot_apply_is_refused(untrained, tmp_path):
    model, _, _ = untrained[3]
    preds = model.predict([b"\x89PNG not really", Image.new("RGB", (4, 4))], top_k=9)
    assert "not a readable image" in preds[0]["error"] and len(preds[1]["top_k"]) == 5   # k capped at the classes
    with pytest.raises(densekit.DensekitError, match="applies tta=flip inside its graph"):
        densekit.predict(model.path, [Image.new("RGB", (4, 4))], tta="none")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(densekit.DensekitError, match="not a loadable ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")
    with pytest.raises(densekit.DensekitError, match=r"expected pixels of shape \(N, 3, 12, 10\)"):
        model.logits(np.zeros((1, 3, 8, 8), np.uint8))
