"""GoogLeNet, Inception v1 (Szegedy et al., "Going Deeper with Convolutions", arXiv 1409.4842), the
net seed 002 trains on 17-flowers before it reaches DenseNet.

The nine inception modules 3a-5b have the widths of the paper's Table 1 (1x1, 3x3 reduce, 3x3, 5x5
reduce, 5x5, pool proj), then global average pooling, dropout 0.4 and one linear layer. Two choices
differ from the paper, both as torchvision makes them:

- BatchNorm (eps 0.001, convolutions without bias) after every convolution instead of the two
  local response normalisations: Ioffe & Szegedy (arXiv 1502.03167) rebuilt this very net with BN,
  dropped LRN and trained it in a fraction of the steps; LRN did not help in Simonyan & Zisserman's
  VGG experiments either; and BN is what lets the net train from scratch at the seeds' learning
  rates without the paper's careful schedule. It also makes torchvision's ImageNet weights load.
- ``kernel_5x5``: torchvision's GoogLeNet (and its weights) uses 3x3 in the "5x5" branch, the paper
  and the seed's tflearn net use 5x5. ``googlenet`` and ``googlenet-cifar`` take the paper's 5x5;
  ``googlenet-tv`` is torchvision's exact layout, counted against it (6,624,904 parameters).

The auxiliary classifiers (``aux_logits=True``; off by default) sit on 4a and 4d: 4x4 average pool
(the paper's 5x5/3 at 14x14, adaptive so any input works), 1x1 conv 128, fc 1024, dropout 0.7, fc.
In training mode the model returns the main logits and keeps the auxiliary ones in ``aux_outputs``;
``aux_loss(target)`` turns them into the paper's 0.3-weighted losses, which the trainer adds. In
eval mode the auxiliary heads do not run and the output is the plain logits.

Module names follow torchvision (conv1, conv2, conv3, inception3a.branch1.conv, aux1.fc1, fc), so
its state_dicts load with ``load_weights`` (its files hold aux1/aux2: build with ``aux_logits=True``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .baselines import check_input_size
from .registry import register_model

# Table 1 of the paper: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of each module.
INCEPTIONS = {
    "inception3a": (64, 96, 128, 16, 32, 32), "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64), "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64), "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128), "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
AUX_TAPS = {"inception4a": "aux1", "inception4d": "aux2"}   # section 5: on top of 4a and 4d
AUX_WEIGHT = 0.3                                             # section 5: "weighted by 0.3"


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm, ReLU (torchvision's and timm's name and layout)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size, stride=1, padding=0, eps: float = 1e-3):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated: 1x1; 1x1 then 3x3; 1x1 then 5x5; 3x3 max pool then 1x1."""

    def __init__(self, in_ch: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, kernel_5x5: int = 5):
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, ch5x5red, 1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_5x5, padding=kernel_5x5 // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), BasicConv2d(in_ch, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """An auxiliary classifier: 4x4 average pool, 1x1 conv 128, fc 1024 + ReLU, dropout 0.7, fc."""

    def __init__(self, in_ch: int, num_classes: int, drop_rate: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_ch, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, 4)), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    """GoogLeNet: stem, inception modules 3a-5b with max pools between the groups, GAP, dropout, fc.

    Args:
        stem: "imagenet" (7x7/2 conv, 3x3/2 max pool, 1x1 conv 64, 3x3 conv 192, 3x3/2 max pool:
            stride 8 before 3a) or "cifar" (the same three convolutions, 3x3 first, no striding
            or pooling: 32x32 inputs reach 3a at 32x32 and the classifier at 8x8).
        kernel_5x5: kernel of the "5x5" branch: 5 (the paper) or 3 (torchvision's weights).
        aux_logits: build the two auxiliary classifiers, whose 0.3-weighted losses training adds.
        drop_rate: dropout before the classifier (0.4 in the paper).
        in_channels, num_classes: input channels and classifier outputs.
    """

    def __init__(self, stem: str = "imagenet", kernel_5x5: int = 5, aux_logits: bool = False,
                 drop_rate: float = 0.4, in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        if stem not in ("imagenet", "cifar") or kernel_5x5 not in (3, 5):
            raise ValueError(f"stem must be 'imagenet' or 'cifar' and kernel_5x5 3 or 5, got {stem!r}, {kernel_5x5}")
        self.stem, self.aux_logits = stem, aux_logits
        if stem == "imagenet":
            self.conv1 = BasicConv2d(in_channels, 64, 7, 2, 3)
            # ceil_mode and the 2x2 pool before 5a are torchvision's (from the Caffe model): 224 -> 7x7.
            self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        else:
            self.conv1 = BasicConv2d(in_channels, 64, 3, 1, 1)
            self.maxpool1 = nn.Identity()
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True) if stem == "imagenet" else nn.Identity()
        channels, reduction, prev = 192, (8 if stem == "imagenet" else 1), "conv3"
        self.feature_info = [("conv1", 64, 2), ("conv3", 192, 4)] if stem == "imagenet" else []
        self.stage_names = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
        for name, widths in INCEPTIONS.items():
            if name in ("inception4a", "inception5a"):      # a stride-2 max pool before each group
                pool = f"maxpool{3 if name == 'inception4a' else 4}"
                self.feature_info.append((prev, channels, reduction))
                self.add_module(pool, nn.MaxPool2d(3 if name == "inception4a" else 2, 2, ceil_mode=True))
                self.stage_names.append(pool)
                reduction *= 2
            module = Inception(channels, *widths, kernel_5x5=kernel_5x5)
            self.add_module(name, module)
            self.stage_names.append(name)
            channels, prev = module.out_channels, name
        self.feature_info.append((prev, channels, reduction))
        # The smallest image every ceil-mode pool still accepts (measured: 15x15 ends at 1x1 for the
        # ImageNet stem, 2x2 for the CIFAR stem); smaller ones fail with one clear line.
        self.min_input_size = 15 if stem == "imagenet" else 2
        self.num_features = channels
        self.drop_rate = drop_rate
        self.dropout = nn.Dropout(drop_rate)
        for name, head in AUX_TAPS.items():
            setattr(self, head, InceptionAux(getattr(self, name).out_channels, num_classes) if aux_logits else None)
        self.fc = nn.Linear(channels, num_classes)
        self.aux_outputs: list[torch.Tensor] = []
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def _trunk(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        check_input_size(x, self.min_input_size, f"GoogLeNet with the {self.stem} stem")
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if taps is not None and name in taps:
                taps[name] = x
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._trunk(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(x.mean((2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.aux_logits and self.training):
            return self.forward_head(self._trunk(x))
        taps = dict.fromkeys(AUX_TAPS)
        logits = self.forward_head(self._trunk(x, taps))
        self.aux_outputs = [getattr(self, head)(taps[name]) for name, head in AUX_TAPS.items()]
        return logits

    def aux_loss(self, target: torch.Tensor, **cross_entropy_args) -> torch.Tensor | float:
        """0.3 x the cross entropy of each auxiliary classifier's logits from the last training
        forward (paper, section 5), summed; 0 when there are none. Consumes ``aux_outputs``."""
        outputs, self.aux_outputs = self.aux_outputs, []
        return sum(AUX_WEIGHT * F.cross_entropy(o.float(), target, **cross_entropy_args) for o in outputs)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output at the end of each resolution (strides in ``feature_info``)."""
        taps = dict.fromkeys(name for name, _, _ in self.feature_info)
        self._trunk(x, taps)
        return list(taps.values())

    def reset_classifier(self, num_classes: int):
        self.fc = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.fc.bias)
        if self.aux_logits:
            self.aux1.fc2 = nn.Linear(1024, num_classes)
            self.aux2.fc2 = nn.Linear(1024, num_classes)

    def summary_stages(self):
        """Stem, one row per inception module (4a and 5a with the max pool before them), head."""
        pools = {"inception4a": [self.maxpool3], "inception5a": [self.maxpool4]}
        rows = [(name, pools.get(name, []) + [getattr(self, name)]) for name in INCEPTIONS]
        return [("stem", [self.conv1, self.maxpool1, self.conv2, self.conv3, self.maxpool2])] + rows + [
            ("head", [self.fc])]


_META = {"family": "inception", "paper": "ImageNet top-5 error 10.07%, one net, one crop"}
register_model("googlenet", GoogLeNet, meta={**_META, "source": "Szegedy et al. 2014, BN, 5x5 branch",
                                             "input_size": (3, 224, 224)},
               stem="imagenet", kernel_5x5=5, num_classes=1000, in_channels=3)
register_model("googlenet-tv", GoogLeNet, meta={**_META, "source": "torchvision's GoogLeNet (3x3 '5x5' branch)",
                                                "input_size": (3, 224, 224)},
               stem="imagenet", kernel_5x5=3, num_classes=1000, in_channels=3)
register_model("googlenet-cifar", GoogLeNet, meta={**_META, "source": "GoogLeNet, unstrided stem for 32x32",
                                                   "input_size": (3, 32, 32)},
               stem="cifar", kernel_5x5=5, num_classes=10, in_channels=3)
