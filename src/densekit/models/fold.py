"""BatchNorm folded into the convolution before it, for inference (eval-mode statistics).

In eval mode BatchNorm is a per-channel affine map, y = gamma * (x - mu) / sqrt(var + eps) + beta,
so when its input is a convolution's output used by nothing else, the map can be absorbed into
that convolution's weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``): one pass over
the activations fewer, and the same function up to float rounding. In a DenseNet this applies to
the bottleneck's ``norm2`` after ``conv1`` and to the ImageNet stem's ``conv0 -> norm0``; in the
baselines to every conv -> BN pair (ResNet, VGG-BN).

What cannot fold: a pre-activation BatchNorm (each dense layer's ``norm1``, a transition's
``norm``, ``norm5``) normalises the *concatenation* of many earlier outputs, each also read
unchanged by the other layers of the block, so no producing convolution may absorb it; and the
convolution after it sits behind a ReLU, which does not commute with an affine map. The Keras
seed's stem (conv, ReLU, BN) has the ReLU between too.

Pairs are found on the ``torch.fx`` graph of the model rather than by module names, so any model
whose forward traces symbolically is handled; dropout (an identity in eval mode) between the two
is removed first. A model that cannot be traced is returned unchanged, with the reason.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_DROPOUT_MODULES = (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout)


def _is_identity_in_eval(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _DROPOUT_MODULES)
    return node.op == "call_function" and node.target in (F.dropout, F.dropout2d, F.dropout1d)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int, str | None]:
    """``(inference copy of model, BatchNorms folded, why not)``: an eval-mode ``fx.GraphModule``
    in which every BatchNorm2d whose input is a Conv2d's only use is folded into that Conv2d.
    The original is untouched. Returns an eval copy unchanged (0, reason) if tracing fails."""
    model = copy.deepcopy(model).eval()
    if hasattr(model, "memory_efficient"):
        model.memory_efficient = False  # recomputation is a training-time device; its Function does not trace
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # FX raises many types on untraceable Python control flow
        return model, 0, f"the model does not trace with torch.fx ({type(err).__name__}: {err})"
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):  # dropout is the identity in eval mode
        if _is_identity_in_eval(node, modules):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module"
                and isinstance(modules[src.target], nn.Conv2d) and len(src.users) == 1):
            continue
        bn, conv = modules[node.target], modules[src.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue  # batch statistics at inference too: not an affine map of fixed coefficients
        parent, _, leaf = src.target.rpartition(".")
        fused = fuse_conv_bn_eval(conv, bn)
        setattr(gm.get_submodule(parent) if parent else gm, leaf, fused)
        modules[src.target] = fused
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.eval(), folded, None


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@torch.no_grad()
def max_logit_difference(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """max |a(x) - b(x)| in float32, for the tests and the export's report."""
    return (a(x).float() - b(x).float()).abs().max().item()
