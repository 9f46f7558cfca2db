"""Augmentation presets: batched, deterministic by (seed, epoch, step), mixing ones give soft targets."""
import pytest
import torch

from densekit import DensekitError
from densekit.data.augment import (PRESETS, Augment, brightness_contrast, cutmix, default_augment, default_tta, keras_affine,
                                   mixup, pad_crop, random_erasing)


def batch(n=6, c=3, h=16, w=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g), torch.arange(n) % 4


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_seed_same_batch_and_steps_differ(preset):
    x, y = batch()
    a, b = Augment(preset, seed=7, num_classes=4), Augment(preset, seed=7, num_classes=4)
    out1, t1 = a(x, y, epoch=2, step=5)
    out2, t2 = b(x, y, epoch=2, step=5)
    assert out1.shape == x.shape and torch.equal(out1, out2) and torch.equal(t1, t2)
    if preset != "none":
        assert not torch.equal(a(x, y, epoch=2, step=6)[0], out1)


def test_mixup_and_cutmix_return_soft_targets_that_sum_to_one():
    x, y = batch()
    for preset in ("mixup", "cutmix", "crop+cutmix"):
        _, t = Augment(preset, seed=1, num_classes=4)(x, y)
        assert t.shape == (6, 4) and torch.allclose(t.sum(1), torch.ones(6))
    with pytest.raises(DensekitError, match="needs the class count"):
        Augment("mixup", seed=1)(x, y)


def test_mixup_mixes_images_and_targets_with_one_lambda():
    x, y = batch()
    soft = torch.nn.functional.one_hot(y, 4).float()
    out, t = mixup(x, soft, torch.Generator().manual_seed(3))
    lams = set()
    for i in range(6):  # each output is lam * x_i + (1 - lam) * x_j for one partner j, its target likewise
        fits = []
        for j in range(6):
            d = x[i] - x[j]
            lam = 1.0 if j == i else ((out[i] - x[j]) * d).sum().item() / (d * d).sum().item()
            if torch.allclose(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-4):
                fits.append((j, lam))
        j, lam = fits[0]
        assert torch.allclose(t[i], lam * soft[i] + (1 - lam) * soft[j], atol=1e-5)
        if j != i:
            lams.add(round(lam, 4))
    assert len(lams) == 1 and 0 <= lams.pop() <= 1


def test_cutmix_target_weights_equal_pasted_area():
    x = torch.zeros(4, 1, 10, 10)
    x[1] = 1  # only image 1 is bright
    soft = torch.eye(4)
    out, t = cutmix(x, soft, torch.Generator().manual_seed(0))
    for i in range(4):
        frac_from_1 = out[i].mean().item() if i != 1 else 1 - (1 - out[1]).mean().item()
        if i != 1:
            assert t[i, 1].item() == pytest.approx(frac_from_1)


def test_keras_affine_with_zero_ranges_is_the_identity_and_fills_from_the_border():
    x, _ = batch()
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(keras_affine(x, g, 0, 0, 0, 0, flip=False), x, atol=1e-5)
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    shifted = keras_affine(ramp, torch.Generator().manual_seed(1), rotation=0, shift=0.5, shear=0, zoom=0, flip=False)
    assert shifted.min() >= 0 and shifted.max() <= 7  # "nearest" fill repeats edge values, never zeros


def test_pad_crop_keeps_content_and_random_erasing_changes_a_box():
    x, _ = batch(n=32)
    out = pad_crop(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and (out == 0).any()
    erased = random_erasing(x, torch.Generator().manual_seed(0), p=1.0)
    changed = (erased != x).any(1).float().mean((1, 2))
    assert ((changed > 0.015) & (changed < 0.45)).all()


def test_brightness_contrast_keeps_the_shape_and_moves_means():
    x, _ = batch()
    out = brightness_contrast(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.allclose(out.mean((1, 2, 3)), x.mean((1, 2, 3)))


def test_unknown_preset_lists_the_choices():
    with pytest.raises(DensekitError, match="unknown augmentation 'rotate': choose one of none, standard"):
        Augment("rotate")


@pytest.mark.parametrize("name, preset", [("mnist", "crop"), ("digits", "crop"), ("fashion-mnist", "flip"),
                                          ("cifar10", "standard"), ("folder:/data/flowers", "standard"),
                                          ("folder:/data/hwdb1.1", "crop")])
def test_auto_preset_never_flips_digits_or_characters(name, preset):
    assert default_augment(name) == preset


@pytest.mark.parametrize("preset, tta", [("flip", "flip"), ("standard", "flip"), ("keras", "flip"),
                                         ("crop+color", "none"), ("crop", "none"), ("none", "none"),
                                         ("color", "none"), ("mixup", "flip")])
def test_auto_tta_mirrors_only_what_training_mirrored(preset, tta):
    assert default_tta(preset) == tta


def test_the_presets_the_command_line_names_are_the_presets_that_exist():
    from densekit.config import AUGMENT_PRESETS   # torch-free, for the command line's help
    assert AUGMENT_PRESETS == tuple(PRESETS)
