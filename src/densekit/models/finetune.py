"""Fine-tuning controls: which parameters are the head, freezing the rest, and the backbone's LR.

The head is the model's last linear layer (DenseNet ``classifier``, ResNet ``fc``), the part
``load_weights`` re-initialises for a new number of classes; the backbone is everything else.
Frozen parameters keep ``requires_grad=False`` and their BatchNorm layers stay in eval mode, so
neither the weights nor the running statistics move (optimizers skip parameters without a
gradient, weight decay included); unfreezing later needs no new optimizer.
"""
from __future__ import annotations

from torch import nn

from ..errors import DensekitError


def head_name(model: nn.Module) -> str:
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise DensekitError(f"{type(model).__name__} has no linear head to fine-tune")
    return names[-1]


def is_head(param_name: str, head: str) -> bool:
    return param_name.startswith(head + ".")


def frozen_modules(model: nn.Module, spec: list[str]) -> list[str]:
    """Module names that ``--freeze`` names: "features" (the whole backbone: every top-level
    module but the head) or module names such as ``features.denseblock1`` or ``denseblock1``
    (looked up under ``features`` too)."""
    head = head_name(model)
    modules = dict(model.named_modules())
    out = []
    for item in spec:
        if item == "features":
            out += [n for n, _ in model.named_children() if not (head == n or head.startswith(n + "."))]
            continue
        name = item if item in modules else f"features.{item}"
        if name not in modules or not name:
            blocks = [n.split(".")[-1] for n, _ in model.named_modules() if n.count(".") == 1][:8]
            raise DensekitError(f"--freeze {item!r}: no such module in {getattr(model, 'model_name', 'the model')}; "
                                f"give features or module names such as {', '.join(blocks)}")
        if name == head or head.startswith(name + "."):
            raise DensekitError(f"--freeze {item!r} would freeze the head {head}: nothing would train")
        out.append(name)
    return out


def set_frozen(model: nn.Module, names: list[str], frozen: bool):
    """Freeze (or unfreeze) the parameters of the named modules; frozen BatchNorms go to eval mode.
    Call after ``model.train()``, which puts every module back in training mode."""
    for name in names:
        module = model.get_submodule(name)
        for p in module.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
