"""Evaluation (top-1, top-5, loss, per-class accuracy, confusion matrix) and prediction.

Both apply exactly the normalisation and input size stored with the checkpoint, never
statistics recomputed at predict time (the bug the seed notes warn about).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data as D
from ..data.augment import TTA, check_tta
from ..data.images import EXTENSIONS
from ..errors import DensekitError
from .checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint
from .metrics import class_metrics
from .precision import autocast, fast_defaults, pick_device


def tta_log_probs(model, x: torch.Tensor, tta: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """(class log-probabilities of the ``tta`` views of ``x`` together, the plain view's logits).
    The views' logits are averaged (a geometric mean of their probabilities, renormalised: on
    Fashion-MNIST it ranked as well as or slightly better than the arithmetic mean)."""
    logits = [model(view).float() for view in TTA[tta](x)]
    return torch.stack(logits).mean(0).log_softmax(1), logits[0]


def tta_note(metrics: dict) -> str:
    """The suffix that names a result's test-time augmentation and its one-view top-1, e.g.
    ' (flip TTA; one view 93.29%)'; empty without test-time augmentation."""
    return f" ({metrics['tta']} TTA; one view {100 * metrics['top1_single']:.2f}%)" if "tta" in metrics else ""


@torch.no_grad()
def run_eval(model, ds, normalize, device, dtype, memory_format, batch_size: int, num_classes: int,
             per_class: bool = False, workers: int = 2, tta: str = "none") -> dict:
    """Metrics of ``model`` over all of ``ds``; fractions in [0, 1]. With test-time augmentation
    the metrics are those of the averaged prediction, and ``top1_single`` is the plain view's."""
    check_tta(tta)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    single = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    k = min(5, num_classes)
    for x, y in D.Loader(ds, batch_size, device=device, workers=workers).epoch():
        x = normalize(x).contiguous(memory_format=memory_format)
        with autocast(device, dtype):
            log_probs, logits = tta_log_probs(model, x, tta)
        loss_sum += F.nll_loss(log_probs, y, reduction="sum").double()
        pred = log_probs.topk(k, 1).indices
        single += (logits.argmax(1) == y).sum()
        top1 += (pred[:, 0] == y).sum()
        top5 += (pred == y[:, None]).any(1).sum()
        if per_class:
            confusion += torch.bincount(y * num_classes + pred[:, 0], minlength=num_classes ** 2).view(num_classes, -1)
    model.train(was_training)
    n = max(len(ds), 1)
    out = {"top1": top1.item() / n, "top5": top5.item() / n, "loss": loss_sum.item() / n, "count": len(ds)}
    if tta != "none":
        out.update(tta=tta, top1_single=single.item() / n)
    if per_class:
        counts = confusion.sum(1).clamp_min(1)
        out["per_class"] = (confusion.diag() / counts).tolist()
        out["confusion"] = confusion.tolist()
    return out


def _load(run_or_checkpoint, device):
    path = resolve_checkpoint(run_or_checkpoint)
    payload = load_checkpoint(path)
    model = model_from_checkpoint(payload).to(device)
    fast = fast_defaults(device)
    memory_format = torch.channels_last if fast["channels_last"] else torch.contiguous_format
    return path, payload, model.to(memory_format=memory_format), fast["dtype"], memory_format


def evaluate(run_or_checkpoint: str | Path, dataset: str | None = None, split: str = "test",
             data_dir: str | None = None, batch_size: int = 512, device: str = "auto",
             tta: str | None = None) -> dict:
    """Evaluate a run (its best checkpoint) or a checkpoint file on a dataset split.

    ``tta``: test-time augmentation, "none" or "flip"; None applies the checkpoint's own (what its
    training resolved; "none" for checkpoints that name none).
    Returns ``{"top1", "top5", "loss", "count", "per_class": {name: acc}, "class_metrics": {"per_class":
    {name: {precision, recall, f1, support}}, "macro"}, "confusion", "checkpoint"}``,
    plus ``"tta"`` and ``"top1_single"`` (the plain view's top-1) with test-time augmentation."""
    dev = pick_device(device)
    path, payload, model, dtype, memory_format = _load(run_or_checkpoint, dev)
    info = payload["data"]
    dataset = dataset or info["dataset"]
    c, (h, w) = info["channels"], info["image_size"]
    ds = D.load_dataset(dataset, split, data_dir, channels=c, image_size=h)
    if tuple(ds.shape) != (c, h, w):
        raise DensekitError(f"{dataset} {split} images are {tuple(ds.shape)} but the model was trained on "
                            f"{(c, h, w)}; evaluate on the dataset it was trained on")
    if ds.classes != info["classes"] and len(ds.classes) != len(info["classes"]):
        raise DensekitError(f"{dataset} has {len(ds.classes)} classes but the model has {len(info['classes'])}")
    out = run_eval(model, ds, D.Normalize(info["mean"], info["std"]), dev, dtype, memory_format, batch_size,
                   len(info["classes"]), per_class=True, tta=tta or info.get("tta", "none"))
    out["per_class"] = dict(zip(info["classes"], out["per_class"]))
    out["class_metrics"] = class_metrics(out["confusion"], info["classes"])   # precision, recall, F1
    out.update(checkpoint=str(path), dataset=dataset, split=split)
    return out


def expand_images(paths) -> list[Path]:
    """Files as given, folders expanded to the images inside them (sorted, recursively)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS)
        elif p.exists():
            out.append(p)
        else:
            raise DensekitError(f"{p} not found; give image files or folders of images")
    return out


@torch.no_grad()
def predict(run_or_checkpoint: str | Path, images, top_k: int = 5, device: str = "auto",
            batch_size: int = 256, tta: str | None = None) -> list[dict]:
    """Top-k classes of each image: a list of ``{"file", "top_k": [{"label", "index", "prob"}]}``.

    ``images``: paths of files or folders, PIL images, or uint8 tensors C x H x W. Images of any
    mode and size are converted to the channels and size the model was trained on. A file that
    cannot be decoded gets ``{"file", "error"}`` instead of ``top_k``. ``tta`` as in ``evaluate``:
    None applies the checkpoint's own test-time augmentation."""
    from ..data.images import decode_image
    dev = pick_device(device)
    _, payload, model, dtype, memory_format = _load(run_or_checkpoint, dev)
    model.eval()
    info = payload["data"]
    tta = check_tta(tta or info.get("tta", "none"))
    c, (h, w) = info["channels"], info["image_size"]
    items = images if isinstance(images, (list, tuple)) else [images]
    if items and isinstance(items[0], (str, Path)):
        items = expand_images(items)
    results, batch = [], []
    for item in items:
        name = str(item) if isinstance(item, (str, Path)) else None
        try:
            tensor = item if torch.is_tensor(item) else decode_image(item, channels=c, size=(h, w))
        except DensekitError as err:
            results.append({"file": name, "error": str(err)})
            continue
        if tuple(tensor.shape) != (c, h, w):
            tensor = decode_image(tensor, channels=c, size=(h, w))
        results.append({"file": name})
        batch.append((len(results) - 1, tensor))
    normalize = D.Normalize(info["mean"], info["std"])
    k = min(top_k, len(info["classes"]))
    for i in range(0, len(batch), batch_size):
        chunk = batch[i:i + batch_size]
        x = normalize(torch.stack([t for _, t in chunk]).to(dev)).contiguous(memory_format=memory_format)
        with autocast(dev, dtype):
            probs = tta_log_probs(model, x, tta)[0].exp()
        p, idx = probs.topk(k, 1)
        for (slot, _), pr, ix in zip(chunk, p.tolist(), idx.tolist()):
            results[slot]["top_k"] = [{"label": info["classes"][j], "index": j, "prob": q} for q, j in zip(pr, ix)]
    return results
