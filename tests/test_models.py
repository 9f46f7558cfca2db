"""Named models: exact parameter counts (paper Table 1/2, torchvision) and the shared model surface."""
import pytest
import torch

from densekit import DensekitError
from densekit.models import DenseNet, create_model, list_models


def count(name, **overrides):
    # The meta device allocates nothing, so even densenet264 is counted in milliseconds.
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, params", [
    # Huang et al. Table 2: 1.0M, 7.0M, 27.2M, 0.8M, 15.3M, 25.6M.
    ("densenet-40-k12", 1_019_722), ("densenet-100-k12", 6_979_642), ("densenet-100-k24", 27_249_082),
    ("densenet-bc-100-k12", 769_162), ("densenet-bc-250-k24", 15_324_406),
    ("densenet-bc-190-k40", 25_624_430),
])
def test_paper_cifar_densenets_have_the_papers_parameter_counts(name, params):
    assert count(name) == params


@pytest.mark.parametrize("name, params", [
    ("densenet121", 7_978_856), ("densenet169", 14_149_480), ("densenet201", 20_013_928),
    ("densenet161", 28_681_000), ("densenet264", 33_337_704),
])
def test_imagenet_densenets_have_torchvisions_parameter_counts(name, params):
    assert count(name) == params


def test_every_named_model_builds_and_classifies_a_small_batch():
    from densekit.models import get_entry
    small = [n for n in list_models() if count(n) < 3_000_000]
    assert len(small) >= 7
    for name in small:
        c, h, w = get_entry(name).meta.get("input_size", (3, 32, 32))
        size = min(h, 64)
        model = create_model(name).eval()
        with torch.no_grad():
            out = model(torch.randn(2, c, size, size))
        assert out.ndim == 2 and out.shape[0] == 2, name
        assert torch.isfinite(out).all(), name


def test_every_structural_knob_is_a_constructor_argument():
    model = DenseNet(growth_rate=8, block_config=(2, 3), num_init_features=10, bn_size=2, compression=0.75,
                     drop_rate=0.1, stem="cifar", in_channels=5, num_classes=7, bn_eps=1e-3, bn_momentum=0.01)
    assert model.features.conv0.in_channels == 5
    assert model.features.denseblock1.denselayer1.conv1.out_channels == 2 * 8
    assert model.features.transition1.conv.out_channels == int((10 + 2 * 8) * 0.75)
    assert model.num_features == 19 + 3 * 8
    assert model.features.norm5.eps == 1e-3 and model.features.norm5.momentum == 0.01
    assert model(torch.randn(2, 5, 16, 16)).shape == (2, 7)
    plain = DenseNet(growth_rate=8, block_config=(2,), num_init_features=8, bn_size=None, stem="cifar")
    assert not hasattr(plain.features.denseblock1.denselayer1, "conv2")


def test_forward_is_forward_head_of_forward_features_and_reset_classifier_changes_outputs():
    model = create_model("densenet-bc-40-k12").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, model.num_features, 8, 8)
        torch.testing.assert_close(model(x), model.forward_head(feats))
        assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)


def test_create_model_overrides_defaults_and_rejects_unknown_names_and_arguments():
    model = create_model("densenet-bc-40-k12", num_classes=100, in_channels=1, growth_rate=6)
    assert model.classifier.out_features == 100 and model.features.conv0.in_channels == 1
    assert model.model_args["growth_rate"] == 6
    with pytest.raises(DensekitError, match="densenet121"):
        create_model("densenet12")
    with pytest.raises(DensekitError, match="does not take"):
        create_model("densenet-bc-40-k12", wings=2)
    with pytest.raises(DensekitError, match="stem must be one of"):
        create_model("densenet-bc-40-k12", stem="fancy")
    with pytest.raises(DensekitError, match="compression"):
        create_model("densenet-bc-40-k12", compression=0)


def test_figures_shown_by_densekit_models_and_the_readme_come_from_one_source(capsys):
    """The registry's measured figures (models/compact.py) are what `densekit models` prints and what
    the README's Results table shows for the same command."""
    import json
    from pathlib import Path

    from densekit.cli import main
    from densekit.models import get_entry, list_models
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {line.split("`")[1]: line for line in readme.splitlines() if line.startswith("| `")}
    measured = [(name, m) for name in list_models() for m in get_entry(name).meta.get("measured", [])]
    assert measured
    for name, m in measured:
        assert m["command"] in rows, f"the README's Results table has no row for {m['command']}"
        assert f"**{m['top1']:.2f}%**" in rows[m["command"]], (m, rows[m["command"]])
        assert main(["models", name]) == 0
        assert f"{m['dataset']} {m['top1']:.2f}%" in capsys.readouterr().out
        assert main(["models", name, "--json"]) == 0
        assert m in json.loads(capsys.readouterr().out)["measured"]
