"""Weights files: torchvision state_dicts (old and new key names) give torchvision's outputs; the head
and stem adapt; densekit's own format and safetensors round-trip; bad files fail with a clear error."""
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from densekit import DensekitError
from densekit.models import create_model
from densekit.engine.checkpoint import save_weights
from densekit.models.weights import read_state_dict


class RefLayer(nn.Module):
    """A dense layer written as torchvision lays it out, independent of densekit's layers.py."""

    def __init__(self, cin, k, bn_size):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bn_size * k, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * k), nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * k, k, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class RefBlock(nn.ModuleDict):
    def forward(self, x):
        for layer in self.values():
            x = torch.cat([x, layer(x)], 1)
        return x


class RefDenseNet(nn.Module):
    """torchvision's DenseNet, from the paper: the reference whose keys and outputs we must match."""

    def __init__(self, k=32, blocks=(6, 12, 24, 16), init=64, bn_size=4, classes=1000):
        super().__init__()
        f = OrderedDict(conv0=nn.Conv2d(3, init, 7, 2, 3, bias=False), norm0=nn.BatchNorm2d(init),
                        relu0=nn.ReLU(), pool0=nn.MaxPool2d(3, 2, 1))
        c = init
        for i, n in enumerate(blocks):
            f[f"denseblock{i + 1}"] = RefBlock({f"denselayer{j + 1}": RefLayer(c + j * k, k, bn_size) for j in range(n)})
            c += n * k
            if i < len(blocks) - 1:
                f[f"transition{i + 1}"] = nn.Sequential(OrderedDict(
                    norm=nn.BatchNorm2d(c), relu=nn.ReLU(), conv=nn.Conv2d(c, c // 2, 1, bias=False),
                    pool=nn.AvgPool2d(2, 2)))
                c //= 2
        f["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(f)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(self.features(x)), 1), 1))


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    ref = RefDenseNet()
    with torch.no_grad():   # non-trivial BN statistics, so a mis-mapped buffer would show
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return ref.eval()


def legacy(state):
    """Rename keys the way torchvision files from before 0.4 name them: norm1 -> norm.1."""
    return OrderedDict((re.sub(r"(denselayer\d+\.)(norm|relu|conv)([12])\.", r"\1\2.\3.", k), v)
                       for k, v in state.items())


@pytest.mark.parametrize("old_keys", [False, True])
def test_torchvision_densenet121_file_gives_torchvisions_outputs(reference, tmp_path, old_keys):
    state = reference.state_dict()
    if old_keys:
        state = legacy(state)
        assert "features.denseblock1.denselayer1.norm.1.weight" in state
    torch.save(state, tmp_path / "densenet121.pth")
    model = create_model("densenet121", weights=tmp_path / "densenet121.pth").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_other_class_count_reinitialises_the_head_with_a_notice(reference, tmp_path):
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    with pytest.warns(UserWarning, match="head is re-initialised"):
        model = create_model("densenet121", num_classes=10, weights=tmp_path / "tv.pth").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (1, 10)
        torch.testing.assert_close(model.forward_features(x), torch.relu(reference.features(x)))


@pytest.mark.parametrize("channels", [1, 6])
def test_other_input_channels_adapt_the_stem_so_the_same_image_gives_the_same_output(reference, tmp_path, channels):
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    with pytest.warns(UserWarning, match="adapted from 3 input channels"):
        model = create_model("densenet121", in_channels=channels, weights=tmp_path / "tv.pth").eval()
    gray = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        # A gray image is three equal channels to the RGB net, and `channels` equal ones to ours.
        torch.testing.assert_close(model(gray.repeat(1, channels, 1, 1)), reference(gray.repeat(1, 3, 1, 1)),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_and_load_round_trip_in_densekit_format_and_safetensors(tmp_path, suffix):
    model = create_model("densenet-bc-40-k12", num_classes=5).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
    path = save_weights(model, tmp_path / f"w{suffix}")
    again = create_model("densenet-bc-40-k12", num_classes=5, weights=path).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
    if suffix == ".pt":
        payload = torch.load(path, weights_only=True)
        assert payload["format"] == "densekit-checkpoint" and payload["kind"] == "weights"
        assert payload["model"]["name"] == "densenet-bc-40-k12" and payload["model"]["args"]["num_classes"] == 5


def test_a_training_checkpoint_dict_and_a_dataparallel_file_load_too(tmp_path):
    model = create_model("densenet-bc-40-k12")
    torch.save({"format": "densekit-checkpoint", "kind": "training", "state_dict": model.state_dict(),
                "optimizer": {}}, tmp_path / "last.pt")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    for name in ("last.pt", "dp.pth"):
        state = read_state_dict(tmp_path / name)
        assert state.keys() == model.state_dict().keys()
        create_model("densenet-bc-40-k12", weights=tmp_path / name)


def test_missing_corrupt_or_mismatched_files_raise_densekit_errors_naming_the_file(tmp_path):
    with pytest.raises(DensekitError, match="nope.pth not found"):
        create_model("densenet-bc-40-k12", weights=tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00not a pickle" * 10)
    with pytest.raises(DensekitError, match="junk.pth is corrupt"):
        create_model("densenet-bc-40-k12", weights=tmp_path / "junk.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(DensekitError, match="junk.safetensors is corrupt"):
        create_model("densenet-bc-40-k12", weights=tmp_path / "junk.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DensekitError, match="list.pt holds no state_dict"):
        create_model("densenet-bc-40-k12", weights=tmp_path / "list.pt")
    save_weights(create_model("densenet-bc-40-k12"), tmp_path / "bc40.pt")
    with pytest.raises(DensekitError, match="bc40.pt does not fit this model"):
        create_model("densenet-40-k12", weights=tmp_path / "bc40.pt")
