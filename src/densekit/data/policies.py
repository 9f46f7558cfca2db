"""Sampled augmentation policies, batched on tensors: RandAugment, TrivialAugment, AugMix.

- RandAugment (Cubuk et al., arXiv 1909.13719): N ops drawn uniformly from 14, all at one global
  magnitude M of 30 (torchvision's ranges, 31 magnitude bins).
- TrivialAugmentWide (Müller & Hutter, arXiv 2103.10158): one op per image at a magnitude drawn
  uniformly from the paper's "wide" ranges (shear 0.99, rotation 135°, translation 32 px ...).
- AugMix (Hendrycks et al., arXiv 1912.02781): ``width`` chains of 1-3 ops at severity 3, mixed with
  Dirichlet weights, then blended with the original image by a Beta draw; the paper's op set,
  without the ops that overlap ImageNet-C (brightness, colour, contrast, sharpness). Only the
  augmentation: the Jensen-Shannon consistency loss is not part of it.

Every image draws its own ops and magnitudes, so a batch holds many policies at once. Each op
runs on the images that drew it only, and all draws are made before any pixel is read, so an
image's augmentation depends on (generator, its place in the batch) and never on the content of
the other images (sharded batches stay exact). The ops work on pixel values: a uint8 batch, or a
float batch in [0, 1] (``Augment`` undoes the normalisation around them); fills are black (0),
as in the papers' PIL implementations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

BINS = 31   # magnitude levels 0..30, as in torchvision and both papers' code

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
       "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_SIGNED = _GEOMETRIC + ("brightness", "color", "contrast", "sharpness")


@dataclass(frozen=True)
class Space:
    """Each op's magnitude at level 1 (levels run 0..1). Translation is ``translate[0]`` of the side
    plus ``translate[1]`` pixels; posterize keeps ``bits[0] - round(level * bits[1])`` bits."""
    ops: tuple
    shear: float
    translate: tuple
    rotate: float
    enhance: float
    bits: tuple
    round_bits: bool = True


# torchvision's RandAugment space (150/331 of the side: the paper's 150 px at 331 px).
RANDAUGMENT = Space(OPS, shear=0.3, translate=(150 / 331, 0), rotate=30.0, enhance=0.9, bits=(8, 4))
# Müller & Hutter's wide space: absolute 32 px translation, as published.
WIDE = Space(OPS, shear=0.99, translate=(0, 32), rotate=135.0, enhance=0.99, bits=(8, 6))
# AugMix's own op set and ranges (augmentations.py of the paper's code): levels up to severity/10.
AUGMIX = Space(("autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y",
                "translate_x", "translate_y"), shear=0.3, translate=(1 / 3, 0), rotate=30.0, enhance=0.9,
               bits=(4, 4), round_bits=False)


def _gray(x):
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]   # ITU-R 601-2 luma, as PIL


def _blend(image, degenerate, factor):
    """PIL's ImageEnhance: factor 1 is the image, 0 the degenerate version; clipped to [0, 1]."""
    f = factor.view(-1, 1, 1, 1)
    return (degenerate + f * (image - degenerate)).clamp(0, 1)


def _smooth(x):
    """PIL's SMOOTH filter (centre 5, neighbours 1, / 13) on the interior; borders kept, as PIL."""
    c = x.shape[1]
    k = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    k[1, 1] = 5
    k = (k / 13).expand(c, 1, 3, 3)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = F.conv2d(x, k, groups=c)
    return out


def _quantise(x):
    return (x * 255).round().to(torch.int64)


def _equalize(x):
    """PIL's ImageOps.equalize per image and channel: a histogram's CDF as the lookup table, with
    the top level's count left out of the step; constant channels are left alone."""
    n, c, h, w = x.shape
    q = _quantise(x).view(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.int64, device=x.device).scatter_add_(1, q, torch.ones_like(q))
    top = hist.gather(1, q.amax(1, keepdim=True))
    step = (h * w - top) // 255
    safe = step.clamp_min(1)
    lut = (hist.cumsum(1) - hist + safe // 2) // safe      # the CDF before each level
    out = torch.where(step > 0, lut.clamp(0, 255).gather(1, q), q)
    return (out.to(x.dtype) / 255).view(n, c, h, w)


def _autocontrast(x):
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / span.clamp_min(1e-12), x)


def _warp(x, op: str, mag):
    """One affine op per image about its centre, nearest pixels, black outside (as PIL)."""
    n, _, h, w = x.shape
    m = torch.eye(3, dtype=torch.float32, device=x.device).repeat(n, 1, 1)   # output -> input pixels
    mag = mag.float()
    if op == "shear_x":
        m[:, 0, 1] = mag
    elif op == "shear_y":
        m[:, 1, 0] = mag
    elif op == "translate_x":
        m[:, 0, 2] = -mag
    elif op == "translate_y":
        m[:, 1, 2] = -mag
    else:   # rotate counter-clockwise by mag degrees: the inverse rotation maps output to input
        t = torch.deg2rad(mag)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = t.cos(), -t.sin(), t.sin(), t.cos()
    # affine_grid's coordinates run over [-1, 1] per axis: pixel = normalised * size / 2.
    scale = torch.tensor([w / 2, h / 2], device=x.device)
    theta = torch.cat([m[:, :2, :2] * scale[None, None, :] / scale[None, :, None],
                       (m[:, :2, 2] / scale)[:, :, None]], dim=2)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(x.dtype)


def apply_op(x: torch.Tensor, op: str, level: torch.Tensor, sign: torch.Tensor, space: Space) -> torch.Tensor:
    """``op`` on a float batch in [0, 1] at ``level`` (per image, 0..1) of ``space``'s range;
    ``sign`` (+1/-1 per image) flips the signed ops' direction."""
    if op in _SIGNED:
        level = level * sign
    if op in _GEOMETRIC:
        _, _, h, w = x.shape
        side = w if op == "translate_x" else h
        big = {"shear_x": space.shear, "shear_y": space.shear, "rotate": space.rotate}.get(
            op, space.translate[0] * side + space.translate[1])
        return _warp(x, op, level * big)
    if op == "brightness":
        return _blend(x, torch.zeros_like(x), 1 + level * space.enhance)
    if op == "color":
        return _blend(x, _gray(x).expand_as(x), 1 + level * space.enhance)
    if op == "contrast":
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), 1 + level * space.enhance)
    if op == "sharpness":
        return _blend(x, _smooth(x), 1 + level * space.enhance)
    if op == "posterize":
        drop = (level * space.bits[1]).round() if space.round_bits else (level * space.bits[1]).floor()
        bits = (space.bits[0] - drop).clamp(1, 8).to(torch.int64)
        mask = (0xFF << (8 - bits)) & 0xFF
        return (_quantise(x) & mask.view(-1, 1, 1, 1)).to(x.dtype) / 255
    if op == "solarize":    # invert the pixels at or above the threshold (1: none, 0: all)
        return torch.where(x >= (1 - level).view(-1, 1, 1, 1), 1 - x, x)
    if op == "autocontrast":
        return _autocontrast(x)
    if op == "equalize":
        return _equalize(x)
    return x


def apply_layer(x, choice, level, sign, space: Space):
    """Image i gets ``space.ops[choice[i]]`` (none where choice is -1); each op runs on its images only."""
    out = x.clone()
    for k, op in enumerate(space.ops):
        idx = (choice == k).nonzero().flatten()
        if op != "identity" and idx.numel():
            out[idx] = apply_op(x[idx], op, level[idx], sign[idx], space)
    return out


def _draws(n, space, g, device):
    choice = torch.randint(0, len(space.ops), (n,), generator=g, device=device)
    sign = torch.randint(0, 2, (n,), generator=g, device=device) * 2 - 1
    return choice, sign


def _on_pixels(fn):
    """Let a policy take uint8 (returned as uint8) as well as float [0, 1] batches."""
    def run(self, x, g):
        if x.dtype == torch.uint8:
            return (fn(self, x.float() / 255, g) * 255).round().to(torch.uint8)
        return fn(self, x.clamp(0, 1), g)
    run.__doc__ = fn.__doc__
    return run


def _whole(text: str, name: str, lo: int, hi: int) -> int:
    if not text.strip().isdigit() or not lo <= int(text) <= hi:
        raise ValueError(f"{name} must be a whole number in [{lo}, {hi}]")
    return int(text)


@dataclass(frozen=True)
class RandAugment:
    """``n`` ops per image at magnitude ``m`` of 30 (the paper's N=2, M=9 by default)."""
    n: int = 2
    m: int = 9
    pixels = True     # works on pixel values: Augment undoes the normalisation around it

    @classmethod
    def with_args(cls, text: str) -> "RandAugment":
        parts = text.split(",")
        if len(parts) != 2:
            raise ValueError("give N,M (ops per image, magnitude of 30), e.g. randaugment:2,9")
        return cls(_whole(parts[0], "N", 1, len(OPS)), _whole(parts[1], "M", 0, BINS - 1))

    @_on_pixels
    def __call__(self, x, g):
        level = torch.full((x.shape[0],), self.m / (BINS - 1), device=x.device)
        for _ in range(self.n):
            choice, sign = _draws(x.shape[0], RANDAUGMENT, g, x.device)
            x = apply_layer(x, choice, level, sign, RANDAUGMENT)
        return x


@dataclass(frozen=True)
class TrivialAugment:
    """TrivialAugmentWide: one op per image, its magnitude one of 31 levels uniformly."""
    pixels = True

    @_on_pixels
    def __call__(self, x, g):
        choice, sign = _draws(x.shape[0], WIDE, g, x.device)
        level = torch.randint(0, BINS, (x.shape[0],), generator=g, device=x.device) / (BINS - 1)
        return apply_layer(x, choice, level, sign, WIDE)


@dataclass(frozen=True)
class AugMix:
    """``width`` chains of 1-3 ops at levels U(0.1, severity) / 10, mixed by Dirichlet(alpha)
    weights, then blended with the image by m ~ Beta(alpha, alpha): x' = (1 - m) x + m mix."""
    severity: int = 3
    width: int = 3
    alpha: float = 1.0
    pixels = True

    @classmethod
    def with_args(cls, text: str) -> "AugMix":
        return cls(severity=_whole(text, "the severity", 1, 10))

    @_on_pixels
    def __call__(self, x, g):
        import numpy as np    # torch's Dirichlet and Beta take no generator: numpy's, seeded from g
        n, dev = x.shape[0], x.device
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=g, device=dev).item()))
        weights = torch.as_tensor(rng.dirichlet([self.alpha] * self.width, size=n), dtype=x.dtype, device=dev)
        m = torch.as_tensor(rng.beta(self.alpha, self.alpha, size=n), dtype=x.dtype, device=dev).view(n, 1, 1, 1)
        mix = torch.zeros_like(x)
        for j in range(self.width):
            depth = torch.randint(1, 4, (n,), generator=g, device=dev)
            chain = x
            for d in range(3):
                choice, sign = _draws(n, AUGMIX, g, dev)
                level = (0.1 + (self.severity - 0.1) * torch.rand(n, generator=g, device=dev)) / 10
                chain = apply_layer(chain, torch.where(d < depth, choice, -1), level, sign, AUGMIX)
            mix += weights[:, j].view(n, 1, 1, 1) * chain
        return ((1 - m) * x + m * mix).clamp(0, 1)
