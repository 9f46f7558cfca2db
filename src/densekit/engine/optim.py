"""Optimizers, with weight decay kept off BatchNorm and bias parameters when asked, and a lower
learning rate for a fine-tuned backbone than for its new head when asked (``lr_backbone``)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import DEFAULT_LR   # the one table, beside the --lr setting it resolves


def param_groups(model: nn.Module, weight_decay: float, exclude_norm_bias: bool,
                 lr_backbone: float | None = None) -> list[dict]:
    """Parameter groups: decayed and not (BN scales/shifts and biases), and with ``lr_backbone``
    the backbone apart from the head (``models.finetune.head_name``), its groups carrying
    ``lr_scale`` = the factor that the trainer multiplies the scheduled LR by."""
    from ..models.finetune import head_name, is_head
    head = head_name(model) if lr_backbone is not None else None
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # 1-d tensors are BN scales/shifts and biases: decaying them only fights normalisation.
        decay = weight_decay if not (exclude_norm_bias and p.ndim <= 1) else 0.0
        scale = 1.0 if head is None or is_head(name, head) else lr_backbone
        groups.setdefault((decay, scale), []).append(p)
    return [{"params": params, "weight_decay": decay, "lr_scale": scale}
            for (decay, scale), params in sorted(groups.items(), key=lambda kv: (-kv[0][1], -kv[0][0]))]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    lr = base_lr(cfg)
    groups = param_groups(model, cfg.weight_decay, cfg.wd_exclude_norm_bias, getattr(cfg, "lr_backbone", None))
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.RMSprop(groups, lr=lr, momentum=cfg.momentum if cfg.momentum else 0.0)


def base_lr(cfg) -> float:
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    return lr * cfg.batch_size * cfg.accumulate / 128 if cfg.scale_lr else lr
