"""Evaluation (top-1, top-5, loss, per-class accuracy, confusion matrix) and prediction.

One pass, ``run_eval(model, ds, opts)``, serves the trainer's validation and final test, the
plots and embeddings that need the test logits and features, and ``densekit eval``; ``EvalOptions``
is how a model is evaluated (input normalisation, device, precision, layout, batch size, workers,
test-time augmentation), built once from the trainer or from a checkpoint's ``TorchPredictor``
(``engine/infer.py``, the inference home: ``predict`` here is that predictor's). Both evaluation and
prediction apply exactly the normalisation and input size stored with the checkpoint, never
statistics recomputed at predict time (the bug the seed notes warn about), the run's own precision
and the one TTA function (``infer.tta_logits``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data as D
from ..data.augment import check_tta
from ..decode import expand_images  # noqa: F401  (one home, torch-free)
from ..errors import DensekitError
from ..predictions import check_abstention
from . import distributed
from .infer import TorchPredictor, tta_logits
from .metrics import class_metrics
from .precision import autocast, memory_format, pick_device


@dataclass(frozen=True)
class EvalOptions:
    """How a model is evaluated: the same for validation, test, eval and predict."""
    classes: tuple
    normalize: D.Normalize
    device: torch.device
    dtype: torch.dtype | None = None        # autocast dtype; None is float32
    channels_last: bool = False
    batch_size: int = 512
    workers: int = 2
    tta: str = "none"
    task: str = "single-label"              # or "multilabel": a sigmoid per label (engine/multilabel.py)

    def __post_init__(self):
        check_tta(self.tta)

    def replace(self, **changes) -> "EvalOptions":
        return dataclasses.replace(self, **changes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A uint8 batch on the device -> the model's normalised input in its memory layout."""
        return self.normalize(x).contiguous(memory_format=memory_format(self.channels_last))

    @classmethod
    def of(cls, predictor: TorchPredictor, batch_size: int = 512, workers: int = 2) -> "EvalOptions":
        """How ``predictor`` runs (the run's pipeline, precision and TTA), for a pass over a dataset."""
        spec = predictor.spec
        return cls(spec.classes, D.Normalize(spec.mean, spec.std), predictor.device, predictor.dtype,
                   predictor.channels_last, batch_size, workers, spec.tta, spec.task)


def top5_name(num_classes: int) -> str:
    """How ``top5`` is shown: top-5, or top-k with fewer than 5 classes (k = the number of classes)."""
    return f"top-{min(5, num_classes)}"


def tta_note(metrics: dict) -> str:
    """The suffix that names a result's test-time augmentation and its one-view top-1, e.g.
    ' (flip TTA; one view 93.29%)'; empty without test-time augmentation."""
    return f" ({metrics['tta']} TTA; one view {100 * metrics['top1_single']:.2f}%)" if "tta" in metrics else ""


@torch.no_grad()
def run_eval(model, ds, opts: EvalOptions, per_class: bool = False, outputs: bool = False, features: int = 0,
             label_map: torch.Tensor | None = None, progress=None, thresholds=None) -> dict:
    """Metrics of ``model`` over all of ``ds``; fractions in [0, 1]. With test-time augmentation the
    metrics are those of the averaged prediction, and ``top1_single`` is the plain view's.
    ``outputs`` adds ``logits`` (averaged over the views) and ``labels`` (CPU tensors over the whole
    set); ``features`` adds the penultimate features of the first ``features`` items.
    ``label_map[dataset label] = model class`` when the dataset orders the same classes differently.
    Under DDP every rank takes whole batches in turn and the counts are summed: exactly one
    process's figures (each batch computed as one process computes it, the loss summed per batch
    in the same order), N times faster; every rank must call it, with the same model.
    ``progress(done, total)`` is called after each batch, in this rank's images.
    Multi-label models (``opts.task``) get ``engine/multilabel.py``'s figures instead, at the
    per-label ``thresholds`` (None: 0.5), always with ``logits`` and ``labels``."""
    if opts.task == "multilabel":
        from .multilabel import evaluate_multilabel
        return evaluate_multilabel(model, ds, opts, thresholds, features, label_map, progress)
    num_classes, device = len(opts.classes), opts.device
    was_training = model.training
    model.eval()
    rank, world_size = distributed.active_world()
    loader = D.Loader(ds, opts.batch_size, device=device, workers=opts.workers, rank=rank, world_size=world_size,
                      shard="deal")
    batch_loss = torch.zeros(len(loader), dtype=torch.float64, device=device)
    top1, top5, single = (torch.zeros((), dtype=torch.int64, device=device) for _ in range(3))
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    k = min(5, num_classes)
    kept, seen_images = [], 0   # (batch index, logits, labels, features) to hand back
    for i, (x, y) in zip(range(rank, len(loader), world_size), loader.epoch()):
        if label_map is not None:
            y = label_map.to(device)[y]
        with autocast(device, opts.dtype):
            logits, plain, pre = tta_logits(model, opts.prepare(x), opts.tta,
                                            features=i * opts.batch_size < features)
        log_probs = logits.log_softmax(1)
        batch_loss[i] = F.nll_loss(log_probs, y, reduction="sum").double()
        pred = log_probs.topk(k, 1).indices
        single += (plain.argmax(1) == y).sum()
        top1 += (pred[:, 0] == y).sum()
        top5 += (pred == y[:, None]).any(1).sum()
        if per_class:
            confusion += torch.bincount(y * num_classes + pred[:, 0], minlength=num_classes ** 2).view(num_classes, -1)
        if outputs or pre is not None:
            feats = pre[:features - i * opts.batch_size].float().cpu() if pre is not None else None
            kept.append((i, logits.cpu() if outputs else None, y.cpu() if outputs else None, feats))
        if progress is not None:
            seen_images += len(y)
            progress(seen_images, -(-len(ds) // world_size) if world_size > 1 else len(ds))
    model.train(was_training)
    distributed.all_reduce_(batch_loss, top1, top5, single, confusion)   # integers, and x + 0: exact
    kept = sorted(distributed.gather_objects(kept) if outputs or features else kept, key=lambda b: b[0])
    n = max(len(ds), 1)
    out = {"top1": top1.item() / n, "top5": top5.item() / n, "loss": batch_loss.sum().item() / n, "count": len(ds)}
    if opts.tta != "none":
        out.update(tta=opts.tta, top1_single=single.item() / n)
    if per_class:
        counts = confusion.sum(1).clamp_min(1)
        out["per_class"] = (confusion.diag() / counts).tolist()
        out["confusion"] = confusion.tolist()
    if outputs:
        out["logits"] = torch.cat([b[1] for b in kept]) if kept else torch.zeros(0, num_classes)
        out["labels"] = torch.cat([b[2] for b in kept]) if kept else torch.zeros(0, dtype=torch.int64)
    if features:
        feats = [b[3] for b in kept if b[3] is not None]
        out["features"] = torch.cat(feats) if feats else torch.zeros(0)
    return out


def load_for_inference(run_or_checkpoint, device: str = "auto", batch_size: int = 512, tta: str | None = None,
                       workers: int = 2) -> tuple[TorchPredictor, EvalOptions]:
    """(the run's ``TorchPredictor``, loaded once; ``EvalOptions`` to run its ``net`` over a dataset)."""
    predictor = TorchPredictor(run_or_checkpoint, device=device, tta=tta)
    return predictor, EvalOptions.of(predictor, batch_size, workers)


def _label_map(ds_classes: list, classes: tuple, where: str) -> torch.Tensor | None:
    """None when the dataset's classes are the model's, a label permutation when they are the same
    names in another order; otherwise the scores would be against the wrong labels: refuse."""
    if list(ds_classes) == list(classes):
        return None
    if sorted(ds_classes) == sorted(classes) and len(set(classes)) == len(classes):
        index = {c: i for i, c in enumerate(classes)}
        return torch.tensor([index[c] for c in ds_classes])
    extra = sorted(set(ds_classes) - set(classes))[:3]
    missing = sorted(set(classes) - set(ds_classes))[:3]
    raise DensekitError(f"{where} has classes the model was not trained on ({len(ds_classes)} classes; not in the "
                        f"model: {extra or 'none'}; missing: {missing or 'none'}); evaluate on data with the "
                        f"model's {len(classes)} class names")


def evaluate(run_or_checkpoint: str | Path, dataset: str | None = None, split: str = "test",
             data_dir: str | None = None, batch_size: int = 512, device: str = "auto",
             tta: str | None = None, workers: int = 2, progress=None, table: dict | None = None,
             reject_below: float | None = None, reject_ood: bool = False, ood: str | None = None) -> dict:
    """Evaluate a run (its best checkpoint) or a checkpoint file on a dataset split.

    ``tta``: test-time augmentation, "none" or "flip"; None applies the checkpoint's own (what its
    training resolved; "none" for checkpoints that name none), except on ``split="val"``, where it
    is "none", as training validated. ``split="val"`` of a source without a val split is the one
    training carved out of train (its seed and val_split, read from the checkpoint). A dataset
    whose class names are the model's in another order is scored by name; other class names are
    refused. ``progress(done, total)``: as in ``run_eval``. ``table``: csv settings (``--image-col`` ...)
    over the run's own.
    Returns ``{"top1", "top5", "loss", "count", "per_class": {name: acc}, "class_metrics": {"per_class":
    {name: {precision, recall, f1, support}}, "macro"}, "confusion", "checkpoint"}``,
    plus ``"tta"`` and ``"top1_single"`` (the plain view's top-1) with test-time augmentation,
    ``"calibration"`` (temperature, ECE/MCE/NLL/Brier before and after) and ``"selective"``
    (accuracy at 80/90/95% coverage, AURC, the risk-coverage curve; with ``reject_below`` or the
    run's ``--coverage`` threshold, coverage and accuracy on the accepted images), and with ``ood``
    (a dataset of images from none of the classes) ``"ood"``: AUROC and FPR at 95% TPR of the OOD
    score (engine/calibration.py).
    Multi-label runs return ``engine/multilabel.py``'s figures (``"map"``, ``"auroc"``, ``"per_label"``
    ...) at the checkpoint's tuned thresholds instead of top-k, per-class accuracy and calibration."""
    if split == "val" and tta is None:
        tta = "none"      # the figure training recorded: it validates on the plain view
    distributed.init(pick_device(device))   # under torchrun the ranks share the split
    predictor, opts = load_for_inference(run_or_checkpoint, device, batch_size, tta, workers)
    check_abstention(predictor.spec, reject_below, reject_ood)
    model, path = predictor.net, predictor.path
    dataset = dataset or predictor.dataset
    c, h, w = predictor.input_shape
    ds = _load_split(dataset, split, data_dir, c, h, predictor, table)
    if tuple(ds.shape) != (c, h, w):
        raise DensekitError(f"{dataset} {split} images are {tuple(ds.shape)} but the model was trained on "
                            f"{(c, h, w)}; evaluate on the dataset it was trained on")
    label_map = _label_map(ds.classes, opts.classes, f"{dataset} {split}")
    if opts.task == "multilabel":   # at the thresholds tuned on validation, stored with the weights
        if ood:   # the reject flags were refused by check_abstention above
            raise DensekitError("--ood applies to single-label runs; this run is multi-label (each label has "
                                "its own tuned threshold)")
        out = run_eval(model, ds, opts, label_map=label_map, progress=progress,
                       thresholds=predictor.spec.thresholds)
        del out["logits"], out["labels"]
        out.update(checkpoint=str(path), dataset=dataset, split=split)
        return out
    from .calibration import figures, of_spec, ood_report   # probabilities you can trust, and "I don't know"
    out = run_eval(model, ds, opts, per_class=True, label_map=label_map, progress=progress, outputs=True)
    logits, labels = out.pop("logits").numpy(), out.pop("labels").numpy()
    out["calibration"], out["selective"] = figures(logits, labels, of_spec(predictor.spec), reject_below,
                                                   reject_ood)
    if ood:
        ood_ds = _ood_split(ood, data_dir, c, h)
        if tuple(ood_ds.shape) != (c, h, w):
            raise DensekitError(f"--ood {ood}: its images are {tuple(ood_ds.shape)} but the model takes {(c, h, w)}")
        zeros = torch.zeros(len(ood_ds.classes), dtype=torch.int64)   # its labels are unused
        ood_out = run_eval(model, ood_ds, opts, outputs=True, label_map=zeros)
        out["ood"] = {"dataset": ood, **ood_report(logits, ood_out["logits"].numpy(), of_spec(predictor.spec))}
    out["per_class"] = dict(zip(opts.classes, out["per_class"]))
    out["class_metrics"] = class_metrics(out["confusion"], list(opts.classes))   # precision, recall, F1
    out.update(checkpoint=str(path), dataset=dataset, split=split)
    return out


def _ood_split(dataset: str, data_dir, channels: int, size: int):
    """The images of ``--ood DATASET``: its test split, or its only one (a folder's train)."""
    from ..data.dataset import MissingSplit
    try:
        return D.load_dataset(dataset, "test", data_dir, channels=channels, image_size=size)
    except MissingSplit:
        return D.load_dataset(dataset, "train", data_dir, channels=channels, image_size=size)


def _load_split(dataset: str, split: str, data_dir, channels: int, size: int, predictor: TorchPredictor, table=None):
    """The split; "val" of a source without one is the split training carved from train (the
    run's own seed and val_split: the same items). A csv: table is read with the run's table
    settings, overridden by ``table``."""
    from ..data.dataset import MissingSplit
    from ..data.splits import carve_val
    from ..data.table_dataset import table_options
    cfg = predictor.config
    opts = table_options({**(table_options(cfg) if dataset.startswith("csv:") else {}), **(table or {})}, dataset)
    try:
        return D.load_dataset(dataset, split, data_dir, channels=channels, image_size=size, **opts)
    except MissingSplit as err:
        if split != "val" or not cfg.get("val_split") or dataset != predictor.dataset:
            carved = ", --split val (the part of train the run validated on)" if cfg.get("val_split") else ""
            raise MissingSplit(f"{err}; score a split it has with --split{carved}, or give --dataset a source "
                               f"with a {split} split") from None
    skip = {"skip_bad": True} if cfg.get("skip_bad") else {}
    train = D.load_dataset(dataset, "train", data_dir, channels=channels, image_size=size, **skip, **opts)
    return carve_val(train, cfg["val_split"], cfg.get("seed", 0))[1]


def predict(run_or_checkpoint: str | Path, images, top_k: int = 5, device: str = "auto",
            batch_size: int = 256, tta: str | None = None) -> list[dict]:
    """Top-k classes of each image: a list of ``{"file", "top_k": [{"label", "index", "prob"}]}``.

    ``images``: paths of files or folders, PIL images, or uint8 tensors C x H x W. Images of any
    mode and size are converted to the channels and size the model was trained on. A file that
    cannot be decoded gets ``{"file", "error"}`` instead of ``top_k``. ``tta`` as in ``evaluate``:
    None applies the checkpoint's own test-time augmentation. Many calls on one model: load its
    ``TorchPredictor`` once and call its ``predict``."""
    return TorchPredictor(run_or_checkpoint, device=device, tta=tta).predict(images, top_k, batch_size)
