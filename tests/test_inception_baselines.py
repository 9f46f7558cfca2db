"""GoogLeNet, Network in Network and Inception-ResNet-v2: exact parameter counts (torchvision, timm,
or derived from the layout), the seed's layouts, the shared surface, the auxiliary losses in training."""
import json

import pytest
import torch
import torch.nn.functional as F

import densekit
from densekit import DensekitError
from densekit.cli import main
from densekit.engine.checkpoint import load_checkpoint, model_from_checkpoint
from densekit.models import create_model, summarize
from densekit.models.googlenet import INCEPTIONS


def count(name, **overrides):
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


# Swapping the "5x5" branch's 3x3 (torchvision) for the paper's 5x5 adds 16 weights per (reduce, out) pair.
FIVE_BY_FIVE = 16 * sum(red * out for _, _, _, red, out, _ in INCEPTIONS.values())
# NiN, ImageNet: conv 11x11x3x96, cccp 96x96 x2, conv 5x5x96x256, cccp 256x256 x2, conv 3x3x256x384,
# cccp 384x384 x2, conv 3x3x384x1024, cccp 1024x1024, cccp 1024x1000, each with a bias.
NIN_IMAGENET = (121 * 3 * 96 + 96) + 2 * (96 * 96 + 96) + (25 * 96 * 256 + 256) + 2 * (256 * 256 + 256) \
    + (9 * 256 * 384 + 384) + 2 * (384 * 384 + 384) + (9 * 384 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 1000 + 1000)
# NiN, CIFAR-10: conv 5x5x3x192, cccp 160, cccp 96, conv 5x5x96x192, cccp 192 x2, conv 3x3x192x192, cccp 192, cccp 10.
NIN_CIFAR = (25 * 3 * 192 + 192) + (192 * 160 + 160) + (160 * 96 + 96) + (25 * 96 * 192 + 192) + 2 * (192 * 192 + 192) \
    + (9 * 192 * 192 + 192) + (192 * 192 + 192) + (192 * 10 + 10)


@pytest.mark.parametrize("name, overrides, params", [
    # torchvision 0.28 googlenet(init_weights=False), counted in the side venv of ../shared/bench/
    ("googlenet-tv", {}, 6_624_904), ("googlenet-tv", {"aux_logits": True}, 13_004_888),
    ("googlenet-tv", {"num_classes": 10}, 5_610_154), ("googlenet-tv", {"num_classes": 10, "aux_logits": True}, 9_960_638),
    # the paper's 5x5: torchvision's count + 380,928; the CIFAR stem's 3x3 first conv: 64 x 3 x (49 - 9) fewer
    ("googlenet", {}, 6_624_904 + FIVE_BY_FIVE), ("googlenet", {"aux_logits": True}, 13_004_888 + FIVE_BY_FIVE),
    ("googlenet-cifar", {}, 5_610_154 + FIVE_BY_FIVE - 64 * 3 * 40),
    ("googlenet-cifar", {"aux_logits": True}, 9_960_638 + FIVE_BY_FIVE - 64 * 3 * 40),
    ("nin", {}, NIN_IMAGENET), ("nin-cifar", {}, NIN_CIFAR),
    # timm 1.0.31 inception_resnet_v2, counted in the same side venv
    ("inception-resnet-v2", {}, 55_843_464), ("inception-resnet-v2", {"num_classes": 10}, 54_321_834),
])
def test_inception_family_and_nin_have_their_known_parameter_counts(name, overrides, params):
    assert count(name, **overrides) == params


def test_the_counts_above_are_the_figures_the_docs_quote():
    assert (FIVE_BY_FIVE, NIN_IMAGENET, NIN_CIFAR) == (380_928, 7_595_176, 966_986)
    assert count("googlenet-cifar") == 5_983_402 and count("googlenet") == 7_005_832


def test_googlenet_has_the_papers_table_1_widths_and_torchvisions_names():
    model = create_model("googlenet-tv", aux_logits=True)
    outs = [getattr(model, name).out_channels for name in INCEPTIONS]
    assert outs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]            # Table 1, "output size" depth
    state = model.state_dict()
    assert state["inception5b.branch3.1.conv.weight"].shape == (128, 48, 3, 3)   # torchvision's 3x3 "5x5"
    for key in ["conv1.conv.weight", "conv1.bn.running_var", "inception3a.branch4.1.bn.weight",
                "aux1.conv.conv.weight", "aux2.fc1.weight", "aux2.fc2.bias", "fc.weight"]:
        assert key in state, key
    assert create_model("googlenet").inception5b.branch3[1].conv.kernel_size == (5, 5)     # the paper's
    assert model.conv1.bn.eps == 1e-3 and model.conv1.conv.bias is None
    assert create_model("googlenet").dropout.p == 0.4


def test_googlenet_aux_classifiers_add_their_losses_at_0_3_in_training_only():
    torch.manual_seed(0)
    model = create_model("googlenet-cifar", num_classes=5, in_channels=1, aux_logits=True).train()
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    logits = model(x)
    assert logits.shape == (4, 5) and len(model.aux_outputs) == 2
    aux1, aux2 = model.aux_outputs
    assert aux1.shape == aux2.shape == (4, 5)
    expected = 0.3 * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
    torch.testing.assert_close(model.aux_loss(y), expected)
    assert model.aux_outputs == [] and model.aux_loss(y) == 0          # consumed
    model.eval()
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, model.forward_head(model.forward_features(x)))
    assert out.shape == (4, 5) and model.aux_outputs == []
    plain = create_model("googlenet-cifar").train()
    plain(torch.randn(2, 3, 8, 8))
    assert plain.aux1 is None and plain.aux_outputs == []


def test_training_with_aux_logits_trains_the_auxiliary_heads(runs_dir):
    cfg = densekit.TrainConfig(model="googlenet-cifar", model_args={"aux_logits": True}, dataset="digits",
                               time_budget=1.0, batch_size=16, val_split=0, out=str(runs_dir), name="aux",
                               workers=0, tensorboard=False, plots=False)
    run = densekit.train(cfg, verbose=False)
    payload = load_checkpoint(run.dir / "checkpoints" / "last.pt")
    state = payload["state_dict"]
    # Linear biases start at zero and bias has no weight decay: only the auxiliary loss moves these.
    assert state["aux1.fc2.bias"].abs().sum() > 0 and state["aux2.fc2.bias"].abs().sum() > 0
    model = model_from_checkpoint(payload).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert 0 <= run.summary["test_top1"] <= 1


@pytest.mark.parametrize("name, size", [("googlenet", 32), ("googlenet-cifar", 8), ("nin", 40), ("nin-cifar", 8)])
def test_inception_and_nin_share_the_densenet_surface(name, size):
    model = create_model(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[1] == model.num_features
        torch.testing.assert_close(model(x), model.forward_head(feats))
        assert model(x).shape == (2, 7)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
        model.reset_classifier(4)
        assert model(x).shape == (2, 4)


@pytest.mark.parametrize("name, size, shapes", [
    ("googlenet", 64, [(64, 32, 32), (192, 16, 16), (480, 8, 8), (832, 4, 4), (1024, 2, 2)]),
    ("googlenet-cifar", 32, [(480, 32, 32), (832, 16, 16), (1024, 8, 8)]),
    ("nin-cifar", 32, [(96, 32, 32), (192, 16, 16), (192, 8, 8)]),
    # the seed's nin_imagenet: 224x224 ends at the 6x6 its final average pool covers
    ("nin", 224, [(96, 54, 54), (256, 27, 27), (384, 13, 13), (1024, 6, 6)]),
])
def test_features_only_gives_each_resolution_with_its_channels(name, size, shapes):
    backbone = create_model(name, features_only=True).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, size, size))
    assert [tuple(o.shape[1:]) for o in outs] == shapes
    assert [f["channels"] for f in backbone.feature_info] == [s[0] for s in shapes]
    if name.startswith("googlenet"):
        assert [size // s[-1] for s in shapes] == [f["reduction"] for f in backbone.feature_info]


def test_inception_resnet_v2_has_the_released_layout_and_runs_at_its_minimum_size():
    model = create_model("inception-resnet-v2", num_classes=3, in_channels=1).eval()
    assert [len(model.repeat), len(model.repeat_1), len(model.repeat_2)] == [10, 20, 9]
    assert {b.scale for b in model.repeat} == {0.17} and {b.scale for b in model.repeat_1} == {0.1}
    assert {b.scale for b in model.repeat_2} == {0.2} and model.block8.scale == 1.0 and model.block8.relu is None
    tops = {key.split(".")[0] for key in model.state_dict()}
    assert tops == {"conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a", "mixed_5b", "repeat",
                    "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b", "classif"}
    assert "repeat_1.19.branch1.2.conv.weight" in model.state_dict()        # timm's names, 0-based
    x = torch.randn(1, 1, 75, 75)
    with torch.no_grad():
        outs = model.forward_intermediates(x)
        logits = model.forward_head(outs[-1])
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 35, 35), (192, 15, 15), (320, 7, 7), (1088, 3, 3),
                                                  (1536, 1, 1)]
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    with pytest.raises(DensekitError, match="at least 75x75, got 74x74; resize them"):
        model(torch.randn(1, 1, 74, 74))


def test_the_papers_figure_15_block_counts_are_one_argument_away():
    assert count("inception-resnet-v2", repeats=(5, 10, 5)) == 33_782_664
    with pytest.raises(DensekitError, match="three entries"):
        create_model("inception-resnet-v2", repeats=(5, 10))


@pytest.mark.parametrize("name, minimum", [("googlenet", 15), ("nin", 39), ("nin-cifar", 4)])
def test_an_image_too_small_for_the_layout_fails_with_one_line_naming_the_fix(name, minimum):
    model = create_model(name, in_channels=1).eval()
    small = min(8, minimum - 1)
    with pytest.raises(DensekitError, match=f"at least {minimum}x{minimum}, got {small}x{small}.*--image-size {minimum}"):
        model(torch.zeros(1, 1, small, small))
    with torch.no_grad():
        assert model(torch.zeros(1, 1, minimum, minimum)).shape[0] == 1      # the minimum itself works


def test_summary_tabulates_every_inception_module_and_nin_block(capsys):
    s = summarize(create_model("googlenet-cifar"), (3, 32, 32))
    assert [r["stage"] for r in s["stages"]] == ["stem", *INCEPTIONS, "head"]
    assert s["total_params"] == count("googlenet-cifar") and s["output_shape"] == (10,)
    assert dict((r["stage"], r["shape"]) for r in s["stages"])["inception5b"] == (1024, 8, 8)
    assert main(["summary", "nin", "--input-size", "3,224,224"]) == 0
    out = capsys.readouterr().out
    assert "mlpconv4" in out and f"{NIN_IMAGENET:,}" in out
    assert main(["summary", "googlenet", "--input-size", "1,8,8"]) == 1
    err = capsys.readouterr().err.strip()
    assert "at least 15x15, got 8x8" in err and "\n" not in err and "Traceback" not in err


def test_compare_trains_and_tabulates_googlenet_and_nin_on_digits(tmp_path, capsys):
    code = main(["compare", "googlenet-cifar", "nin-cifar", "--dataset", "digits", "--time-budget", "1s",
                 "--batch-size", "32", "--same-process", "--json", "--out", str(tmp_path)])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]   # one object per line
    assert [r["model"] for r in rows] == ["googlenet-cifar", "nin-cifar"]
    assert [r["params"] for r in rows] == [count("googlenet-cifar", in_channels=1), count("nin-cifar", in_channels=1)]
    assert all(r["flops"] > 0 and 0 <= r["test_top1"] <= 1 for r in rows)
    assert rows[0]["flops"] > 5 * rows[1]["flops"]                  # GoogLeNet does far more arithmetic per image


def test_nin_learns_digits_and_keeps_the_caffe_relu_on_the_class_maps_as_an_option():
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    x, y = (x - x.mean()) / x.std(), torch.tensor(digits.target)
    torch.manual_seed(0)
    model = create_model("nin-cifar", in_channels=1).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(60):
        i = torch.randint(0, 1500, (64,))
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held_out = (model.eval()(x[1500:]).argmax(1) == y[1500:]).float().mean()
    assert held_out > 0.2                                               # chance is 0.1
    caffe = create_model("nin-cifar", in_channels=1, relu_logits=True).eval()
    with torch.no_grad():
        assert (caffe(x[:32]) >= 0).all() and (model(x[:32]) < 0).any()
