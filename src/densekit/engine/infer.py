"""The inference home on PyTorch: the graph every prediction runs, and the predictor that loads it.

``InferenceModel`` is raw pixels in (float32 N x C x H x W, 0..255), logits out: the checkpoint's
normalisation (``data.transforms.scale_shift``, the arithmetic of ``data.Normalize``), the network,
the test-time augmentation's views averaged (``tta_logits``, the one TTA function, which evaluation
uses too) and the division by the calibration temperature. ``densekit export`` writes this very
module into ONNX and TorchScript graphs, and ``TorchPredictor`` runs it in the run's own precision,
so every route hands ``predictions.results`` the same logits.

``TorchPredictor`` loads a run folder or checkpoint once (``densekit.predict``, ``densekit predict``,
``densekit serve``, ``eval``, ``explain`` and export's self-check all use it); everything after
the logits (probabilities, top-k, the result schema) is ``densekit.predictions``'.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.augment import TTA, check_tta
from ..data.transforms import scale_shift
from ..predictions import Predictor
from ..spec import InputSpec
from .checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
from .precision import autocast, memory_format, pick_device, precision_name, run_precision


# A batch of at most this many images runs its views as one batch (torch.cat of the views): one pass
# over 2N images costs far less than two over N while N is small (flip TTA, densenet-c-fmnist, one
# thread, bf16: 1.7-2x the images/s at N = 1, 1.3-1.6x at N = 8, even by N = 32-64); larger batches
# keep one pass per view, so evaluation's peak memory stays that of its batch size.
JOINED_VIEWS_MAX = 64


def _tracing() -> bool:
    """Being exported or compiled: the graph must not depend on the batch size."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def tta_logits(net, x: torch.Tensor, tta: str = "none", features: bool = False):
    """(the ``tta`` views' logits averaged, the plain view's logits, the plain view's penultimate
    features or None) of a normalised batch. Averaging logits is a geometric mean of the views'
    probabilities, renormalised: on Fashion-MNIST it ranked as well as or slightly better than the
    arithmetic mean. Small batches run all views in one pass (``JOINED_VIEWS_MAX``); exported graphs
    keep one pass per view (a joined batch split by its size would make torch.export specialise
    the graph to the example's batch size)."""
    views = TTA[tta](x)
    if len(views) > 1 and not features and not _tracing() and x.shape[0] <= JOINED_VIEWS_MAX:
        out = net(torch.cat(views)).float().reshape(len(views), x.shape[0], -1)
        return out.mean(0), out[0], None
    pre = None
    if features:   # every registered model has this surface (timm's)
        feat = net.forward_features(views[0])
        pre = net.forward_head(feat, pre_logits=True)
        plain = net.forward_head(feat).float()
    else:
        plain = net(views[0]).float()
    logits = [plain] + [net(v).float() for v in views[1:]]
    return torch.stack(logits).mean(0) if len(logits) > 1 else plain, plain, pre


class InferenceModel(nn.Module):
    """Raw pixels in (float32 N x C x H x W, 0..255), logits out: normalisation, the network, the
    test-time augmentation's views averaged, divided by ``temperature`` (1: uncalibrated)."""

    def __init__(self, net: nn.Module, mean, std, channels: int, tta: str = "none", temperature: float = 1.0):
        super().__init__()
        scale, shift = scale_shift(mean, std, channels)
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)
        self.net, self.tta, self.temperature = net, check_tta(tta), float(temperature)

    @classmethod
    def from_spec(cls, net: nn.Module, spec: InputSpec) -> "InferenceModel":
        return cls(net, spec.mean, spec.std, spec.channels, spec.tta, spec.temperature)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * self.scale - self.shift

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = tta_logits(self.net, self.normalise(pixels), self.tta)[0]
        return logits if self.temperature == 1.0 else logits / self.temperature


class TorchPredictor(Predictor):
    """A run folder (its best checkpoint) or a checkpoint file, loaded once, as a ``Predictor``.

    ``device``: auto, cpu, cuda...; ``tta``: None for the checkpoint's own; ``precision``: "run" (the
    run's recorded precision and layout, or the device's fast defaults) or "fp32" (float32, the
    plain layout: the reference export checks against); ``ema``: the EMA weights when the checkpoint
    has them; ``threads``: torch's intra-op threads (None: leave them). ``net`` is the plain network
    on the device (evaluation and explanations use it), ``model`` the ``InferenceModel`` around it."""

    backend = "torch"

    def __init__(self, run_or_checkpoint: str | Path, device: str = "auto", tta: str | None = None,
                 precision: str = "run", ema: bool = True, threads: int | None = None):
        if threads:
            torch.set_num_threads(int(threads))
        self.device = pick_device(device)
        self.path = resolve_checkpoint(run_or_checkpoint)
        payload = load_checkpoint(self.path)
        spec = InputSpec.from_checkpoint(payload, str(self.path))
        if tta is not None:
            spec = spec.replace(tta=check_tta(tta))
        if precision == "fp32":
            self.dtype, self.channels_last = None, False
        else:
            self.dtype, self.channels_last = run_precision(spec.dtype, spec.channels_last, self.device)
        self.spec = spec
        self.architecture = payload["model"]          # {"name", "args"}
        self.dataset = payload["data"].get("dataset")
        self.config = payload.get("config") or {}
        self.net = model_from_checkpoint(payload, use_ema=ema).to(
            self.device, memory_format=memory_format(self.channels_last)).eval()
        self.model = InferenceModel.from_spec(self.net, spec).to(self.device).eval()

    @property
    def precision(self) -> str:
        return precision_name(self.dtype)

    def decode(self, image, name: str | None = None) -> np.ndarray:
        """As ``Predictor.decode``, and a uint8 tensor (C, H, W) of any channels and size is converted
        (``data.images.decode_image``: the conversion training applies)."""
        if torch.is_tensor(image):
            from ..data.images import decode_image
            c, h, w = self.input_shape
            return decode_image(image.cpu(), channels=c, size=(h, w), name=name).numpy()
        return super().decode(image, name)

    @torch.inference_mode()
    def logits(self, pixels) -> np.ndarray:
        x = torch.as_tensor(np.require(pixels, requirements="W")).to(self.device)   # torch wants writable arrays
        x = x.float().contiguous(memory_format=memory_format(self.channels_last))
        with autocast(self.device, self.dtype):
            return self.model(x).float().cpu().numpy()
