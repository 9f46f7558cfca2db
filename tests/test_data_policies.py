"""RandAugment, TrivialAugment and AugMix: deterministic by (seed, epoch, step), pixel-exact ops
checked against Pillow's ImageOps on real images, 1 and 3 channels, uint8 and float batches."""
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from sklearn.datasets import load_digits

import densekit
from conftest import StopAfter
from densekit import DensekitError
from densekit.data.augment import Augment, default_augment, default_tta
from densekit.data.policies import WIDE, AugMix, RandAugment, TrivialAugment, apply_op
from densekit.data.transforms import Normalize

POLICIES = ["randaugment", "randaugment:3,15", "trivialaugment", "augmix", "augmix:6"]


def digits(n=64, channels=1, size=16):
    """Real images: scikit-learn's digits (0..16) scaled to uint8 and upsampled; 3 channels tinted."""
    d = load_digits()
    x = torch.from_numpy(d.images[:n] * 255 / 16).float().unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if channels == 3:
        x = torch.cat([x, x.flip(3) * 0.7, 255 - x], dim=1)
    return x.round().clamp(0, 255).to(torch.uint8), torch.from_numpy(d.target[:n])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("preset", POLICIES)
def test_same_seed_epoch_step_same_batch_other_steps_differ(preset, channels):
    x, y = digits(channels=channels)
    x = x.float() / 255
    a, b = Augment(preset, seed=3), Augment(preset, seed=3)
    out = a(x, y, epoch=1, step=4)[0]
    assert torch.equal(out, b(x, y, epoch=1, step=4)[0])
    assert not torch.equal(out, a(x, y, epoch=1, step=5)[0])
    assert not torch.equal(out, a(x, y, epoch=2, step=4)[0])
    assert not torch.equal(out, Augment(preset, seed=4)(x, y, epoch=1, step=4)[0])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", [RandAugment(), TrivialAugment(), AugMix()], ids=["ra", "ta", "augmix"])
def test_output_keeps_dtype_shape_and_range_and_changes_most_images(policy, channels):
    x, _ = digits(n=128, channels=channels)
    out = policy(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    floats = policy(x.float() / 255, torch.Generator().manual_seed(0))
    assert floats.dtype == torch.float32 and floats.min() >= 0 and floats.max() <= 1
    assert (floats * 255 - out.float()).abs().max() <= 1          # uint8 is the float result, rounded
    changed = (out != x).flatten(1).any(1).float().mean().item()
    # TrivialAugment leaves the images that drew identity (1 of 14) as they are; the others move all.
    assert changed > (0.8 if isinstance(policy, TrivialAugment) else 0.95)
    # Pixel statistics stay those of images: the mean within a third of the range of the original's.
    assert abs(out.float().mean().item() - x.float().mean().item()) < 255 / 3


def test_trivialaugment_draws_every_op_and_the_identity_keeps_images():
    x, _ = digits(n=64)
    g = torch.Generator().manual_seed(0)
    out = TrivialAugment()(x.repeat(8, 1, 1, 1), g)
    same = (out == x.repeat(8, 1, 1, 1)).flatten(1).all(1).float().mean().item()
    assert 0.02 < same < 0.25      # identity: 1/14 of 512 images, plus ops that happen not to change one


def pil_op(img: np.ndarray, fn) -> np.ndarray:
    """Pillow's result for one C x H x W uint8 image."""
    mode = "L" if img.shape[0] == 1 else "RGB"
    pil = Image.fromarray(img[0] if mode == "L" else img.transpose(1, 2, 0), mode)
    out = np.asarray(fn(pil))
    return out[None] if mode == "L" else out.transpose(2, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op, level, pil, tol", [
    ("equalize", 0.0, ImageOps.equalize, 0),
    ("autocontrast", 0.0, ImageOps.autocontrast, 1),
    ("posterize", 1.0, lambda im: ImageOps.posterize(im, 2), 0),   # WIDE: 8 - 6 bits
    ("solarize", 0.5, lambda im: ImageOps.solarize(im, 128), 1),    # threshold 1 - 0.5 = 128 / 255, up to rounding
    ("rotate", 90 / 135, lambda im: im.rotate(90), 0),              # a quarter turn, counter-clockwise as Pillow
    ("translate_x", 3 / 32, lambda im: im.transform(im.size, Image.AFFINE, (1, 0, -3, 0, 1, 0)), 0),
])
def test_ops_agree_with_pillow(op, level, pil, tol, channels):
    x, _ = digits(n=8, channels=channels)
    out = apply_op(x.float() / 255, op, torch.full((8,), level), torch.ones(8), WIDE)
    out = (out * 255).round().to(torch.uint8).numpy().astype(int)
    for i in range(8):
        expected = pil_op(x[i].numpy(), pil).astype(int)
        assert np.abs(out[i] - expected).max() <= tol, (op, i)


def test_normalised_batches_are_augmented_as_their_pixels():
    x, y = digits(n=32, channels=3)
    norm = Normalize([0.2, 0.5, 0.7], [0.3, 0.2, 0.25])
    on_norm, _ = Augment("flip+trivialaugment", seed=1, normalize=norm)(norm(x), y, epoch=0, step=2)
    on_pixels, _ = Augment("flip+trivialaugment", seed=1)(x.float() / 255, y, epoch=0, step=2)
    expected = norm((on_pixels * 255))            # Normalize takes 0..255 values
    # The same up to float rounding, which moves a rare pixel across a quantisation step (posterize).
    assert ((on_norm - expected).abs() > 1e-4).float().mean() < 1e-3


@pytest.mark.parametrize("preset, message", [
    ("randaugment:2", "give N,M"), ("randaugment:2,31", "M must be a whole number in [0, 30]"),
    ("randaugment:0,9", "N must be"), ("trivialaugment:3", "takes no arguments"), ("augmix:x", "severity"),
])
def test_bad_arguments_are_one_line(preset, message):
    with pytest.raises(DensekitError, match=re.escape(message)):
        Augment(preset)
    with pytest.raises(DensekitError, match=f"--augment '{preset}'"):
        densekit.TrainConfig(augment=preset).validate()
    densekit.TrainConfig(augment="crop+randaugment:1,5").validate()


@pytest.mark.parametrize("dataset, size, finetune, preset", [
    ("folder:/data/flowers", 224, True, "trivialaugment+erasing"),
    ("folder:/data/flowers", 224, False, "standard"),
    ("folder:/data/flowers", 64, True, "standard"),
    ("fashion-mnist", 224, True, "flip"),
    ("folder:/data/hwdb", 224, True, "crop"),
])
def test_auto_adds_trivialaugment_and_erasing_when_fine_tuning_large_images(dataset, size, finetune, preset):
    assert default_augment(dataset, size, finetune) == preset
    assert default_tta("trivialaugment+erasing") == "flip" and default_tta("randaugment") == "none"


def test_a_run_with_a_policy_resumes_bit_exact(runs_dir):
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args={"block_config": [2, 2], "growth_rate": 6},
                               dataset="digits", epochs=2, batch_size=64, lr=0.1, val_split=200, out=str(runs_dir),
                               workers=0, tensorboard=False, plots=False, augment="crop+trivialaugment+augmix")
    full = densekit.train(cfg.replace(name="full"), verbose=False)
    cut = densekit.train(cfg.replace(name="cut"), callbacks=[StopAfter(1)], verbose=False)
    resumed = densekit.train(resume=cut.dir, verbose=False)
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in full.metrics]
    assert resumed.summary["test_top1"] == full.summary["test_top1"]


def test_a_shard_of_the_batch_gets_exactly_its_rows_of_the_whole_batch():
    x, y = digits(n=32, channels=3)
    x = x.float() / 255
    a = Augment("randaugment+trivialaugment+augmix", seed=2)
    whole = a(x, y, 0, 1)[0]
    assert torch.equal(a(x[8:20], y[8:20], 0, 1, rows=(8, 20, 32))[0], whole[8:20])   # one rank's rows (DDP)
