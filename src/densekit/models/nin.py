"""Network in Network (Lin, Chen & Yan, arXiv 1312.4400), the net GoogLeNet borrowed its 1x1
convolutions from, as seed 002 lays it out.

An mlpconv block is a spatial convolution followed by two 1x1 convolutions ("cccp", cascaded
cross-channel parametric pooling), each with a ReLU; there are no fully connected layers: the
last 1x1 convolution has one channel per class and global average pooling gives the logits.
Biased convolutions, no BatchNorm (it came a year later), Caffe's ceil-mode pools: as in the
authors' Caffe models. Their ReLU on the class maps before the pooling is ``relu_logits=True``;
by default the class maps are averaged as they are, because with the ReLU the net can die for
good at ordinary learning rates (measured on digits: the loss stuck at ln 10 from step 30).

- ``nin``: the ImageNet model of the seed (the authors' ``nin_imagenet``): conv 11x11/4 96,
  cccp 96, cccp 96, pool; conv 5x5 256, cccp 256 x2, pool; conv 3x3 384, cccp 384 x2, pool,
  dropout 0.5; conv 3x3 1024, cccp 1024, cccp 1000. 224x224 ends at 6x6, the seed's 6x6 average pool.
- ``nin-cifar``: the paper's CIFAR-10 model (section 4.2, the authors' ``cifar10_nin``): conv 5x5
  192, cccp 160, cccp 96, max pool, dropout; conv 5x5 192, cccp 192 x2, average pool, dropout;
  conv 3x3 192, cccp 192, cccp 10. 32x32 ends at 8x8.

Layer names are the Caffe models' own (conv1, cccp1 ... cccp8); the last cccp is ``classifier``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .baselines import check_input_size
from .registry import register_model

# Per mlpconv block: (kernel, stride, padding, (conv, cccp, cccp) widths, pool after it ("max" /
# "avg" / None), dropout after the pool). None: the last cccp, one channel per class (``classifier``).
LAYOUTS = {
    "imagenet": [(11, 4, 0, (96, 96, 96), "max", False), (5, 1, 2, (256, 256, 256), "max", False),
                 (3, 1, 1, (384, 384, 384), "max", True), (3, 1, 1, (1024, 1024, None), None, False)],
    "cifar": [(5, 1, 2, (192, 160, 96), "max", True), (5, 1, 2, (192, 192, 192), "avg", True),
              (3, 1, 1, (192, 192, None), None, False)],
}
MIN_INPUT = {"imagenet": 39, "cifar": 4}   # smallest image every ceil-mode pool still accepts (measured)


class NiN(nn.Module):
    """Network in Network: mlpconv blocks, then per-class maps averaged over the image.

    Args:
        layout: "imagenet" or "cifar" (``LAYOUTS``).
        drop_rate: the dropout after the pools that the layout marks (0.5 in both Caffe models).
        relu_logits: a ReLU on the class maps before the pooling, as the Caffe models have it. Off
            by default: at SGD learning rates near 0.1 every class map can turn negative within a
            few dozen steps, and then no gradient reaches the net again (the loss sits at ln C).
        in_channels, num_classes: input channels and classes (the last cccp's width).
    """

    def __init__(self, layout: str = "imagenet", drop_rate: float = 0.5, relu_logits: bool = False,
                 in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.layout, self.relu_logits = layout, relu_logits
        layers, channels, reduction = OrderedDict(), in_channels, 1
        self.feature_info, self.blocks = [], []     # blocks: the layer names of each mlpconv block
        for b, (kernel, stride, padding, widths, pool, drop) in enumerate(LAYOUTS[layout]):
            names = [f"conv{b + 1}", f"cccp{2 * b + 1}", f"cccp{2 * b + 2}"]
            block = []
            for i, (name, width) in enumerate(zip(names, widths)):
                if width is None:                    # the last cccp: the classifier, outside features
                    break
                layers[name] = (nn.Conv2d(channels, width, kernel, stride, padding) if i == 0
                                else nn.Conv2d(channels, width, 1))
                layers[f"relu_{name}"] = nn.ReLU(inplace=True)
                block += [name, f"relu_{name}"]
                channels = width
            reduction *= stride
            self.feature_info.append((block[-1], channels, reduction))
            if pool:
                layers[f"pool{b + 1}"] = (nn.MaxPool2d(3, 2, ceil_mode=True) if pool == "max"
                                          else nn.AvgPool2d(3, 2, ceil_mode=True))
                block.append(f"pool{b + 1}")
                reduction *= 2
            if drop:
                layers[f"drop{b + 1}"] = nn.Dropout(drop_rate)
                block.append(f"drop{b + 1}")
            self.blocks.append(block)
        self.features = nn.Sequential(layers)
        self.num_features = channels
        self.min_input_size = MIN_INPUT[layout]
        self.reset_classifier(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He init: without BN, a 12-16 layer ReLU net needs the variance-preserving scale.
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, f"NiN ({self.layout} layout)")
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Class maps (ReLU'd if ``relu_logits``), global average pool; ``pre_logits``: the pooled
        features of the last mlpconv block."""
        if pre_logits:
            return x.mean((2, 3))
        maps = self.classifier(x)
        return (torch.relu(maps) if self.relu_logits else maps).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every mlpconv block before its pool (strides in ``feature_info``)."""
        check_input_size(x, self.min_input_size, f"NiN ({self.layout} layout)")
        wanted, outs = {name for name, _, _ in self.feature_info}, []
        for name, module in self.features.named_children():
            x = module(x)
            if name in wanted:
                outs.append(x)
        return outs

    def reset_classifier(self, num_classes: int):
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1)
        nn.init.kaiming_normal_(self.classifier.weight, nonlinearity="relu")
        nn.init.zeros_(self.classifier.bias)

    def summary_stages(self):
        blocks = [(f"mlpconv{i + 1}", [getattr(self.features, n) for n in names]) for i, names in enumerate(self.blocks)]
        return blocks + [("head", [self.classifier])]


register_model("nin", NiN, meta={"family": "nin", "source": "Lin et al. 2013, the seed's nin_imagenet",
                                 "paper": "ImageNet, AlexNet-level accuracy, 29 MB", "input_size": (3, 224, 224)},
               layout="imagenet", num_classes=1000, in_channels=3)
register_model("nin-cifar", NiN, meta={"family": "nin", "source": "Lin et al. 2013 (CIFAR-10)",
                                       "paper": "CIFAR-10 test error 10.41%, 8.81% with augmentation",
                                       "input_size": (3, 32, 32)},
               layout="cifar", num_classes=10, in_channels=3)
