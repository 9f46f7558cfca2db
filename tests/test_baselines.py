"""Baselines: exact parameter counts (torchvision / He et al.) and the same surface as DenseNet."""
import pytest
import torch

from densekit.models import create_model


def count(name, **overrides):
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, params", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032),              # torchvision
    ("vgg11-bn", 132_868_840), ("vgg16-bn", 138_365_992),            # torchvision
    # He et al. Table 6: 0.27M, 0.46M, 0.85M, 1.7M (option A shortcuts have no parameters).
    ("resnet20", 269_722), ("resnet32", 464_154), ("resnet56", 853_018), ("resnet110", 1_727_962),
    ("resnet32-tflearn", 465_290),                                   # seed 002, pre-activation, biased convs
    ("vgg11-bn-cifar", 9_231_114), ("vgg16-bn-cifar", 14_728_266),
    ("plain-cnn", 288_746), ("alexnet-small", 4_560_714),
])
def test_baselines_have_their_known_parameter_counts(name, params):
    assert count(name) == params


@pytest.mark.parametrize("name", ["resnet20", "resnet32-tflearn", "resnet18", "vgg11-bn-cifar", "plain-cnn",
                                  "alexnet-small"])
def test_baselines_share_the_densenet_surface(name):
    model = create_model(name, num_classes=7, in_channels=1).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4
        torch.testing.assert_close(model(x), model.forward_head(feats))
        assert model(x).shape == (2, 7)
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
        model.reset_classifier(4)
        assert model(x).shape == (2, 4)


def test_cifar_resnet_shortcut_pads_channels_and_halves_resolution():
    model = create_model("resnet20").eval()
    with torch.no_grad():
        outs = model.forward_intermediates(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert len(model.layer2[0].downsample.state_dict()) == 0          # option A: no parameters


def test_imagenet_resnet_stages_have_strides_4_to_32():
    model = create_model("resnet18").eval()
    with torch.no_grad():
        outs = model.forward_intermediates(torch.randn(1, 3, 64, 64))
    assert [64 // o.shape[-1] for o in outs] == [4, 8, 16, 32] == [r for _, _, r in model.feature_info]


def test_tflearn_resnet32_is_pre_activation_with_a_final_bn_relu():
    # seed 002: conv_2d(16) then residual_block(n=5, 16), (1, 32, downsample), (4, 32), ... BN, ReLU, GAP
    model = create_model("resnet32-tflearn").eval()
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [5, 5, 5]
    block = model.layer2[0]
    assert block.preact and block.bn1.num_features == 16 and block.conv1.bias is not None
    assert isinstance(model.bn1, torch.nn.Identity) and model.conv1.bias is not None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
    assert feats.shape == (2, 64, 8, 8) and (feats >= 0).all()      # ends in BN-ReLU
