"""densekit export: BatchNorm folding is exact, ONNX / TorchScript / safetensors files match the
PyTorch model on the real test split, carry their metadata, and a damaged file fails the check."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import densekit
from conftest import TINY
from densekit.data import Normalize
from densekit.engine.checkpoint import load_checkpoint, model_from_checkpoint
from densekit.workflows.export import InferenceModel, read_metadata, verify_export
from densekit.models.fold import count_batchnorms, fold_batchnorm
from densekit.runtime import OnnxModel



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A DenseNet-BC trained on digits with flips, so its checkpoint asks for flip TTA."""
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=3,
                               batch_size=32, lr=0.1, val_split=200, augment="flip", workers=0,
                               out=str(tmp_path_factory.mktemp("runs")), name="ship", tensorboard=False,
                               plots=False)
    run = densekit.train(cfg, verbose=False)
    assert run.summary["test_tta"] == "flip"
    return run.dir


@pytest.fixture(scope="module")
def onnx_export(run_dir):
    return densekit.export(run_dir, "onnx", dynamic_batch=True)


def random_bn_stats(model, seed=0):
    """BatchNorm with non-trivial running statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(1 + 0.3 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g))
    return model.eval()


@pytest.mark.parametrize("name, size, foldable", [
    ("densenet-bc-40-k12", (3, 32, 32), 18),    # every bottleneck's norm2 (3 blocks of 6)
    ("densenet121", (3, 64, 64), 59),           # 58 bottlenecks and the stem's norm0
    ("densenet-c-fmnist", (1, 28, 28), 0),      # no bottleneck, no stem BN: nothing folds
    ("resnet20", (3, 32, 32), 19),              # a baseline: every conv -> BN pair
    ("vgg11-bn-cifar", (3, 32, 32), 8),
])
def test_folding_batchnorm_is_exact_on_random_inputs(name, size, foldable):
    torch.manual_seed(0)
    model = random_bn_stats(densekit.create_model(name, in_channels=size[0]))
    folded, count, why = fold_batchnorm(model)
    assert why is None and count == foldable
    assert count_batchnorms(folded) == count_batchnorms(model) - foldable
    x = torch.randn(4, *size)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert (got - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    assert model.training is False and count_batchnorms(model) > 0   # the original is untouched


def test_folding_is_exact_for_the_trained_model_on_real_digits(run_dir):
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model = model_from_checkpoint(payload).eval()
    folded, count, _ = fold_batchnorm(model)
    assert count == 6                                   # one bottleneck norm2 per dense layer
    ds = densekit.load_dataset("digits", "test")
    x = Normalize(payload["data"]["mean"], payload["data"]["std"])(torch.stack([ds[i][0] for i in range(360)]))
    with torch.no_grad():
        ref, got = model(x), folded(x)
    assert (got - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())
    assert torch.equal(got.argmax(1), ref.argmax(1))


def test_onnx_export_matches_pytorch_on_the_test_split_and_carries_its_metadata(run_dir, onnx_export):
    r = onnx_export
    assert r["path"] == str(run_dir / "model.onnx") and r["exporter"] == "torch.onnx (dynamo)"
    assert r["tta"] == "flip" and r["folded_batchnorm"] == 6
    check = r["check"]
    assert check["images"] == 360 and "test images of digits" in check["source"]
    assert check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 1e-4
    meta = read_metadata(r["path"])
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("classes", "mean", "std", "channels", "image_size", "tta"):
        assert meta[key] == payload["data"][key]
    assert meta["model"] == payload["model"] and meta["tta_in_graph"] and meta["input"]["normalised_in_graph"]
    assert meta["metrics"]["test_top1"] == summary["test_top1"]
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["opset"] >= 18
    # onnx itself sees the metadata as plain metadata_props, and the graph has no BatchNorm left to fold
    proto = onnx.load(r["path"])
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["format"] == "densekit-export" and json.loads(props["classes"]) == payload["data"]["classes"]
    assert OnnxModel(r["path"]).batch_size is None    # --dynamic-batch


def test_the_graph_applies_flip_tta_and_normalisation_itself(run_dir, onnx_export):
    m = OnnxModel(onnx_export["path"])
    ds = densekit.load_dataset("digits", "test")
    x = torch.stack([ds[i][0] for i in range(32)]).numpy()
    # a mirrored image gets the same logits: the graph averages both views
    assert np.allclose(m.logits(x), m.logits(x[..., ::-1].copy()), atol=1e-5)
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    model = model_from_checkpoint(payload).eval()
    temperature = (payload.get("calibration") or {}).get("temperature", 1.0)   # the graph's logits are calibrated
    ref = InferenceModel(model, payload["data"]["mean"], payload["data"]["std"], 1, "flip", temperature)
    with torch.no_grad():
        assert np.allclose(m.logits(x), ref(torch.from_numpy(x).float()).numpy(), atol=1e-4)


def test_torchscript_and_unfolded_onnx_agree_with_the_folded_export(run_dir, onnx_export, tmp_path):
    ts = densekit.export(run_dir, "torchscript", out=tmp_path / "m.torchscript")
    assert ts["check"]["top1_agreement"] == 1.0 and ts["check"]["max_abs_diff"] < 1e-4
    plain = densekit.export(run_dir, "onnx", out=tmp_path / "plain.onnx", fold=False, verify=False)
    assert plain["folded_batchnorm"] == 0 and read_metadata(tmp_path / "m.torchscript")["tta"] == "flip"
    ds = densekit.load_dataset("digits", "test")
    x = torch.stack([ds[i][0] for i in range(100)]).float()
    folded = OnnxModel(onnx_export["path"]).logits(x.numpy())
    unfolded = OnnxModel(plain["path"]).logits(x.numpy())
    with torch.no_grad():
        traced = torch.jit.load(str(tmp_path / "m.torchscript"))(x).numpy()
    assert np.abs(folded - unfolded).max() < 1e-4 and np.abs(traced - unfolded).max() < 1e-4

    def batchnorms(path):
        return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)
    # the graph runs the network once per TTA view (sharing one copy of the weights): 2 x 6 folded
    assert batchnorms(plain["path"]) - batchnorms(onnx_export["path"]) == 2 * 6


def test_safetensors_holds_plain_weights_that_create_model_loads_with_the_metadata(run_dir, tmp_path):
    r = densekit.export(run_dir, "safetensors", out=tmp_path / "w.safetensors")
    assert r["check"]["max_abs_diff"] == 0.0
    meta = read_metadata(tmp_path / "w.safetensors")
    assert meta["tta_in_graph"] is False and meta["folded_batchnorm"] == 0 and meta["classes"] == list("0123456789")
    loaded = densekit.create_model(meta["model"]["name"], weights=str(tmp_path / "w.safetensors"),
                                   **meta["model"]["args"]).eval()
    original = model_from_checkpoint(load_checkpoint(run_dir / "checkpoints" / "best.pt")).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))


def test_a_tampered_file_fails_the_self_check_with_one_line(run_dir, onnx_export, tmp_path):
    proto = onnx.load(onnx_export["path"])
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))   # the largest weight
    w = numpy_helper.to_array(init).copy()
    w += np.random.default_rng(0).normal(0, 0.5, w.shape).astype(w.dtype)
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(densekit.DensekitError, match="disagrees with the PyTorch model") as err:
        verify_export(tmp_path / "bad.onnx", run_dir)
    assert "\n" not in str(err.value)
    # and the untampered file passes the same check on --check images instead of the test split
    from datagen import write_image
    for i in range(3):
        write_image(tmp_path / "imgs" / f"{i}.png", size=(16, 12), mode="L", seed=i)
    ok = verify_export(onnx_export["path"], run_dir, images=[tmp_path / "imgs"])
    assert ok["source"] == "3 --check images" and ok["top1_agreement"] == 1.0


def test_cli_export_reports_the_check_and_falls_back_for_an_old_opset(run_dir, tmp_path):
    def cli(*args):   # every warning shown: a user sees none of torch's or onnx's (silenced where they arise)
        return subprocess.run([sys.executable, "-m", "densekit", "export", str(run_dir), *args],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "always"})
    p = cli("--format", "onnx", "--opset", "17", "--out", str(tmp_path / "o17.onnx"))
    assert p.returncode == 0 and not p.stderr, p.stderr
    t = cli("--format", "torchscript", "--out", str(tmp_path / "m.torchscript"))
    assert t.returncode == 0 and not t.stderr, t.stderr
    assert "top-1 agreement 100.00%" in p.stdout and "TorchScript-based exporter" in p.stdout
    assert read_metadata(tmp_path / "o17.onnx")["versions"]["opset"] == 17
    assert OnnxModel(tmp_path / "o17.onnx").batch_size == 1           # no --dynamic-batch



@pytest.mark.parametrize("args, message", [(("--format", "torchscript", "--opset", "18"), "apply to --format onnx or openvino only"),
                                           (("--ema",), "has no EMA weights"),
                                           (("--format", "safetensors", "--tta", "flip"), "holds weights only")])
def test_cli_export_refuses_settings_that_cannot_act_in_one_line(run_dir, tmp_path, capsys, args, message):
    from densekit.cli import main
    assert main(["export", str(run_dir), *args, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
