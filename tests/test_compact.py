"""The compact DenseNets for 28x28 images (models/compact.py): the quick-start default and the fast recipe."""
import torch

import densekit
from densekit.config import load_recipe
from densekit.models import DenseNet


def test_default_model_is_registered_with_exact_parameter_count():
    assert densekit.TrainConfig().model == "densenet-c-fmnist"
    model = densekit.create_model("densenet-c-fmnist")
    assert isinstance(model, DenseNet) and model.model_args["stem_stride"] == 2
    assert sum(p.numel() for p in model.parameters()) == 271_050
    rgb = densekit.create_model("densenet-c-fmnist", in_channels=3, num_classes=100)
    assert sum(p.numel() for p in rgb.parameters()) == 272_202 + 90 * 161


def test_strided_stem_halves_the_input_and_blocks_run_at_14_7_3():
    model = densekit.create_model("densenet-c-fmnist").eval()
    conv0 = model.features.conv0
    assert conv0.stride == (2, 2) and conv0.kernel_size == (3, 3) and conv0.bias is None
    assert [red for _, _, red in model.feature_info] == [2, 4, 8]
    shapes = [tuple(t.shape) for t in model.forward_intermediates(torch.randn(2, 1, 28, 28))]
    assert shapes == [(2, 128, 14, 14), (2, 192, 7, 7), (2, 160, 3, 3)]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # no bottleneck: each dense layer is BN-ReLU-conv3x3 (DenseNet-C)
    assert not model.features.denseblock1.denselayer1.bottleneck


def test_fast_recipe_is_valid_and_names_the_compact_model():
    fields = load_recipe("fast")
    cfg = densekit.TrainConfig.from_dict(fields).validate()
    assert cfg.model in densekit.list_models("densenet-c-*")
    assert cfg.augment == "flip" and cfg.dataset == "fashion-mnist"


def test_one_epoch_on_digits_with_the_defaults_trains(runs_dir):
    # The quick-start defaults (model, schedule, smoothing) on 8x8 digits: the stride-2 stem and two
    # transitions take 8x8 down to 1x1, so every stage still runs.
    cfg = densekit.TrainConfig(dataset="digits", epochs=1, batch_size=64, val_split=200, out=str(runs_dir),
                               name="compact", workers=0, tensorboard=False, plots=False)
    run = densekit.train(cfg, verbose=False)
    assert run.summary["params"] == 271_050
    assert run.summary["test_count"] == 360 and 0.0 <= run.summary["test_top1"] <= 1.0
    assert run.metrics[0]["train_loss"] > 0
