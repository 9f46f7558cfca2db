"""Feature extraction: a model used as a backbone returns every stage's output, not logits.

For a DenseNet the stages are its dense blocks (before each transition), at strides 4/8/16/32 with
the ImageNet stem, the layout detection and segmentation heads (FPN, U-Net) expect.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import DensekitError


class FeatureExtractor(nn.Module):
    """Wraps a model that has ``forward_intermediates``; ``feature_info`` lists, per output, the
    stage name, its channels and its reduction (stride) relative to the input."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_intermediates"):
            raise DensekitError(f"{type(model).__name__} has no feature-extraction mode; "
                                "use a DenseNet, ResNet, GoogLeNet, NiN or Inception-ResNet-v2 as a backbone")
        self.model = model
        self.feature_info = [{"module": name, "channels": c, "reduction": r} for name, c, r in model.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(x)
