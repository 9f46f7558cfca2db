"""Batched augmentation on tensors, on the training device; same seed, same batches.

Each image op takes a float batch (N, C, H, W) and a ``torch.Generator`` on the batch's device and
returns the new batch; a mixing op (mixup, cutmix) takes and returns (batch, soft targets).
``Augment`` runs a preset's ops; presets combine with ``+`` (``"crop+erasing"``) and some take
arguments after a colon (``"randaugment:2,9"``). The engine normalises before augmenting, so 0 is
the dataset mean: padding, erasing and fills use it. The sampled policies (RandAugment,
TrivialAugment, AugMix: ``policies.py``) work on pixel values, so ``Augment`` undoes the
normalisation around them when it knows it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import DensekitError
from .policies import AugMix, RandAugment, TrivialAugment


def pad_crop(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Zero-pad by ``pad`` and crop back at a random offset per image (the paper's standard)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def hflip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _uniform(n, lo, hi, g, device):
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def keras_affine(x: torch.Tensor, g: torch.Generator, rotation: float = 40.0, shift: float = 0.2,
                 shear: float = 0.2, zoom: float = 0.2, flip: bool = True) -> torch.Tensor:
    """Keras ``ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
    shear_range=0.2, zoom_range=0.2, fill_mode="nearest")`` as one batched warp.

    As in Keras's ``apply_affine_transform``, the matrix maps output to input pixels (centred) and
    is rotation @ shift @ shear @ zoom; shear is in degrees (Keras's unit) and the two zoom
    factors are drawn independently. "nearest" fill repeats the edge pixel: padding_mode="border"."""
    n, _, h, w = x.shape
    dev = x.device
    theta = torch.deg2rad(_uniform(n, -rotation, rotation, g, dev))
    tx, ty = _uniform(n, -shift, shift, g, dev) * w, _uniform(n, -shift, shift, g, dev) * h
    sh = torch.deg2rad(_uniform(n, -shear, shear, g, dev))
    zx, zy = _uniform(n, 1 - zoom, 1 + zoom, g, dev), _uniform(n, 1 - zoom, 1 + zoom, g, dev)
    eye = torch.eye(3, device=dev).repeat(n, 1, 1)
    rot, move, shr, zm = eye.clone(), eye.clone(), eye.clone(), eye.clone()
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = theta.cos(), -theta.sin(), theta.sin(), theta.cos()
    move[:, 0, 2], move[:, 1, 2] = tx, ty
    shr[:, 0, 1], shr[:, 1, 1] = -sh.sin(), sh.cos()
    zm[:, 0, 0], zm[:, 1, 1] = zx, zy
    m = rot @ move @ shr @ zm                       # centred pixel coordinates
    # affine_grid works in [-1, 1] per axis (align_corners=False): pixel = normalised * size / 2.
    scale = torch.tensor([w / 2, h / 2], device=dev)
    t = m[:, :2, :2] * scale[None, None, :] / scale[None, :, None]
    t = torch.cat([t, (m[:, :2, 2] / scale)[:, :, None]], dim=2)
    grid = F.affine_grid(t.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return hflip(out, g) if flip else out


def brightness_contrast(x: torch.Tensor, g: torch.Generator, brightness: float = 0.2,
                        contrast: float = 0.2) -> torch.Tensor:
    """TF's random_brightness (add a delta) and random_contrast (scale about each image's mean), as
    the HWDB seed used; the delta is in units of the batch's spread, so it works before or after
    normalisation."""
    n = x.shape[0]
    delta = _uniform(n, -brightness, brightness, g, x.device).view(n, 1, 1, 1) * x.std().clamp_min(1e-6)
    factor = _uniform(n, 1 - contrast, 1 + contrast, g, x.device).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean + delta


def random_erasing(x: torch.Tensor, g: torch.Generator, p: float = 0.5, area=(0.02, 0.4),
                   ratio=(0.3, 3.3)) -> torch.Tensor:
    """Random erasing (Zhong et al., arXiv 1708.04896): a box of 2-40% of the image, aspect ratio
    0.3-3.3, filled with random normal values (noise with the data's normalised statistics)."""
    n, c, h, w = x.shape
    dev = x.device
    s = _uniform(n, area[0], area[1], g, dev) * h * w
    r = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), g, dev))
    bh = (s * r).sqrt().round().clamp(1, h)
    bw = (s / r).sqrt().round().clamp(1, w)
    y0 = (torch.rand(n, generator=g, device=dev) * (h - bh + 1)).floor()
    x0 = (torch.rand(n, generator=g, device=dev) * (w - bw + 1)).floor()
    rows = torch.arange(h, device=dev)[None, :]
    cols = torch.arange(w, device=dev)[None, :]
    inside = (((rows >= y0[:, None]) & (rows < (y0 + bh)[:, None]))[:, :, None]
              & ((cols >= x0[:, None]) & (cols < (x0 + bw)[:, None]))[:, None, :])
    inside &= (torch.rand(n, generator=g, device=dev) < p)[:, None, None]
    noise = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
    return torch.where(inside[:, None], noise, x)


def _beta(alpha: float, g: torch.Generator) -> float:
    # torch's Beta sampler takes no generator; numpy's, seeded from ``g``, keeps it deterministic.
    import numpy as np
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=g, device=g.device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, alpha: float = 0.2):
    """mixup (Zhang et al., arXiv 1710.09412): one λ ~ Beta(α, α) per batch, images and soft targets
    mixed with a shuffled copy of the batch."""
    lam = _beta(alpha, g)
    perm = torch.randperm(x.shape[0], generator=g, device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def cutmix(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, alpha: float = 1.0):
    """CutMix (Yun et al., arXiv 1905.04899): a box of area 1 - λ from a shuffled copy of the batch is
    pasted in; targets mix by the box's exact area."""
    n, _, h, w = x.shape
    lam = _beta(alpha, g)
    perm = torch.randperm(n, generator=g, device=x.device)
    cy, cx = torch.randint(0, h, (1,), generator=g, device=x.device), torch.randint(0, w, (1,), generator=g, device=x.device)
    cy, cx = int(cy), int(cx)
    bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    y0, y1, x0, x1 = max(cy - bh // 2, 0), min(cy + bh // 2, h), max(cx - bw // 2, 0), min(cx + bw // 2, w)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return out, kept * y + (1 - kept) * y[perm]


mixup.mixes = cutmix.mixes = True
# Ops whose result for one image depends on the other images of the batch (partners, the spread).
mixup.couples = cutmix.couples = brightness_contrast.couples = True

PRESETS = {
    "none": [],
    "standard": [pad_crop, hflip],   # pad-4 crop + horizontal flip (Huang et al.; He et al.)
    "crop": [pad_crop],              # for digits, where a flip changes the class
    "flip": [hflip],
    "keras": [keras_affine],         # the Keras seed's ImageDataGenerator (flip included)
    "color": [brightness_contrast],  # brightness/contrast, as the HWDB seed (no flip: characters)
    "erasing": [pad_crop, hflip, random_erasing],
    "mixup": [pad_crop, hflip, mixup],
    "cutmix": [pad_crop, hflip, cutmix],
    "randaugment": [RandAugment()],         # randaugment:N,M (default 2,9)
    "trivialaugment": [TrivialAugment()],   # TrivialAugmentWide
    "augmix": [AugMix()],                   # augmix:SEVERITY (default 3)
}


def preset_ops(preset: str) -> list:
    """The ops of a preset such as ``crop+randaugment:2,9``, in order, each once; ValueError says
    what is wrong with a part."""
    ops = []
    for part in (p.strip() for p in preset.split("+")):
        name, colon, arg = part.partition(":")
        if name not in PRESETS:
            raise ValueError(f"unknown augmentation {name!r}: choose one of {', '.join(PRESETS)} "
                             "(combine with +, e.g. crop+erasing)")
        found = PRESETS[name]
        if colon:
            if not (len(found) == 1 and hasattr(found[0], "with_args")):
                raise ValueError(f"augmentation {name!r} takes no arguments")
            found = [found[0].with_args(arg)]
        ops += [op for op in found if op not in ops]
    return ops

# Sources whose classes a horizontal flip would change or blur (digits, characters).
_NO_FLIP = ("mnist", "digits", "emnist", "hwdb")


def default_augment(dataset: str, size: int | None = None, finetune: bool = False) -> str:
    """The "auto" preset for a dataset name: pad-crop + flip, but no flip for digits and characters,
    and no crop for Fashion-MNIST, whose centred 28x28 garments lose ~1.5 points of test accuracy to
    a pad-4 crop at the ~10 epochs a CPU affords in minutes (docs/time-to-accuracy.md). Fine-tuning
    pre-trained weights on images of 128 px or more adds TrivialAugment and random erasing, as
    torchvision's and timm's ImageNet recipes do: such a net has capacity to spare for harder views."""
    kind, _, arg = dataset.partition(":")
    name = (arg if kind in ("folder", "tfrecord", "packed") else kind).lower()
    if "fashion" in name:
        return "flip"
    if kind in _NO_FLIP or any(k in name for k in ("mnist", "digit", "hwdb")):
        return "crop"
    if finetune and size is not None and size >= 128:
        return "trivialaugment+erasing"
    return "standard"


# Test-time augmentation: the views of a batch whose predictions are averaged.
TTA = {"none": lambda x: [x], "flip": lambda x: [x, x.flip(3)]}


def check_tta(name: str) -> str:
    if name not in TTA:
        raise DensekitError(f"unknown test-time augmentation {name!r}: choose {' or '.join(TTA)}")
    return name


def default_tta(preset: str) -> str:
    """The "auto" test-time augmentation for a training preset: average the image and its mirror
    when training flipped images (the net has learnt that symmetry, and two views of a test image
    are a cheap two-member ensemble), else the image alone."""
    flips = any(op is hflip or op is keras_affine for op in Augment(preset).ops)
    return "flip" if flips else "none"


class Augment:
    """A preset's ops applied in order. The generator is re-seeded from (seed, epoch, step) for
    every batch, so a run resumed mid-epoch draws exactly the augmentations it would have.
    Presets with mixup or cutmix return soft targets (N, num_classes), so they need ``num_classes``.
    ``normalize`` (``data.Normalize``) says how the batches were normalised, so the pixel-value ops
    (RandAugment, TrivialAugment, AugMix) see [0, 1]; without it batches are taken to be in [0, 1].

    ``rows=(start, stop, total)`` says the batch is rows start:stop of a global batch of ``total``
    images (one rank's shard under DDP): the ops then draw for all ``total`` rows and this shard
    keeps its own, so an image's augmentation is a function of its place in the global batch,
    not of the rank that holds it. Only for presets that do not ``couple`` images; those need the
    whole batch (``engine.distributed.augment_shard`` gathers it)."""

    def __init__(self, preset: str = "standard", seed: int = 0, num_classes: int | None = None, normalize=None):
        try:
            ops = preset_ops(preset)
        except ValueError as err:
            raise DensekitError(f"{err}" if str(err).startswith("unknown") else f"augmentation {preset!r}: {err}") from None
        self.preset, self.ops, self.seed, self.num_classes = preset, ops, seed, num_classes
        self.normalize = normalize
        self.mixes = any(getattr(op, "mixes", False) for op in ops)
        self.couples = any(getattr(op, "couples", False) for op in ops)
        self._generators: dict = {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0, step: int = 0,
                 rows: tuple[int, int, int] | None = None):
        """Augment a float batch; returns (images, labels or soft targets)."""
        if not self.ops:
            return x, y
        if rows is not None and rows[1] - rows[0] != rows[2]:
            if self.couples:
                raise ValueError(f"augmentation {self.preset!r} mixes images across the batch: augment the whole batch")
            start, stop, total = rows
            # Per-image ops draw for the whole global batch; the other rows' content is never read.
            full = x.new_zeros((total, *x.shape[1:]))
            full[start:stop] = x
            labels = y.new_zeros((total, *y.shape[1:]))
            labels[start:stop] = y
            out, y = self(full, labels, epoch, step)
            return out[start:stop], y[start:stop]
        g = self._generators.setdefault(x.device, torch.Generator(device=x.device))
        g.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_003 + step)
        if self.mixes and y.dim() == 1:
            if self.num_classes is None:
                raise DensekitError(f"augmentation {self.preset!r} mixes labels and needs the class count: "
                                    "Augment(preset, seed, num_classes=...)")
            y = F.one_hot(y, self.num_classes).to(x.dtype)
        on_pixels = False
        for op in self.ops:
            if getattr(op, "pixels", False) != on_pixels:   # undo (redo) the normalisation around pixel ops
                x, on_pixels = self._to_pixels(x, not on_pixels), not on_pixels
            if getattr(op, "mixes", False):
                x, y = op(x, y, g)
            else:
                x = op(x, g)
        if on_pixels:
            x = self._to_pixels(x, False)
        return x, y

    def _to_pixels(self, x: torch.Tensor, forward: bool) -> torch.Tensor:
        """Normalised -> [0, 1] pixel values (``forward``) or back, by ``normalize``'s statistics."""
        if self.normalize is None:
            return x
        mean = torch.tensor(self.normalize.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.normalize.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        if mean.shape[1] != x.shape[1]:   # as Normalize: the model's channels differ from the stats
            mean, std = mean.mean(1, keepdim=True), std.mean(1, keepdim=True)
        return x * std + mean if forward else (x - mean) / std
