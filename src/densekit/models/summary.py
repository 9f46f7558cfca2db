"""What a model is, measured: per-stage output shape, channels, parameters and FLOPs.

Everything comes from one real forward pass of the model itself: shapes from forward hooks, FLOPs
from ``torch.utils.flop_counter.FlopCounterMode`` read before and after each stage. FLOPs count a
multiply-add as 2 and cover convolutions and matrix products (BN, ReLU and pooling are not counted,
the convention of the papers' FLOP figures; divide by 2 for multiply-adds, "MACs").
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import DensekitError

FLOPS_NOTE = "FLOPs = 2 x multiply-adds of convolutions and linear layers, for one image"


def stages_of(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The model's own stage list (stem, blocks, transitions, head) or, failing that, its children."""
    if hasattr(model, "summary_stages"):
        return model.summary_stages()
    return [(name, [m]) for name, m in model.named_children()]


def summarize(model: nn.Module, input_size: tuple[int, int, int]) -> dict:
    """Run one image of ``input_size`` (C, H, W) through ``model`` and tabulate each stage."""
    stages = stages_of(model)
    rows = [{"stage": name, "shape": None, "channels": None, "flops": 0,
             "params": sum(p.numel() for p in {id(p): p for m in mods for p in m.parameters()}.values())}
            for name, mods in stages]
    counter = FlopCounterMode(display=False)
    start = {}
    hooks = []
    for row, (_, mods) in zip(rows, stages):
        for i, m in enumerate(mods):
            def before(mod, args, key=(row["stage"], i)):
                start[key] = counter.get_total_flops()

            def after(mod, args, out, row=row, key=(row["stage"], i), last=(i == len(mods) - 1)):
                row["flops"] += counter.get_total_flops() - start.pop(key)
                if last and isinstance(out, torch.Tensor):
                    row["shape"] = tuple(out.shape[1:])
                    row["channels"] = out.shape[1]
            hooks += [m.register_forward_pre_hook(before), m.register_forward_hook(after)]
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(1, *input_size, device=param.device if param is not None else "cpu")
        with torch.no_grad(), counter:
            out = model(x)
    except RuntimeError as err:
        raise DensekitError(f"input size {','.join(map(str, input_size))} does not fit this model "
                            f"({str(err).splitlines()[0][:100]}); try e.g. --input-size 3,224,224") from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total_params = sum(p.numel() for p in model.parameters())
    other = total_params - sum(r["params"] for r in rows)
    if other:
        rows.append({"stage": "other", "shape": None, "channels": None, "params": other, "flops": 0})
    return {"input_size": tuple(input_size), "output_shape": tuple(out.shape[1:]), "stages": rows,
            "total_params": total_params, "total_flops": counter.get_total_flops(), "flops_note": FLOPS_NOTE}


def format_summary(summary: dict, title: str = "") -> str:
    """The table ``densekit summary`` prints."""
    lines = [f"{title}  input {'x'.join(map(str, summary['input_size']))}" if title else ""]
    lines.append(f"{'stage':<14} {'output shape':>16} {'channels':>9} {'params':>13} {'FLOPs':>15}")
    for r in summary["stages"]:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "-"
        lines.append(f"{r['stage']:<14} {shape:>16} {r['channels'] or '-':>9} {r['params']:>13,} {r['flops']:>15,}")
    lines.append(f"{'total':<14} {'':>16} {'':>9} {summary['total_params']:>13,} {summary['total_flops']:>15,}")
    lines.append(f"({summary['flops_note']}: {summary['total_flops'] / 1e9:.3f} GFLOPs, "
                 f"{summary['total_params'] / 1e6:.3f} M params)")
    return "\n".join(line for line in lines if line)
