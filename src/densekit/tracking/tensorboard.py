"""TensorBoard event files, written with TensorBoard's own writer, laid out as the seed notes do:

    tensorboard/train    loss, accuracy, lr, images_per_s, epoch_time_s; sample images; histograms
    tensorboard/val      loss, accuracy, top5 (same tags as train, so TensorBoard overlays the curves)
    tensorboard/hparams  the run's settings with its final metrics (hparams plugin)
    tensorboard/         projector: penultimate features of test images, with a sprite

`tensorboard --logdir RUN/tensorboard` (or the parent of many runs) shows them.
"""
from __future__ import annotations

from ..engine.callbacks import Callback
from ..errors import DensekitError
from .predictions import image_batch

SAMPLE_IMAGES = 32


def _writer(path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DensekitError("TensorBoard logging needs the tensorboard package (a dependency of densekit): "
                            "pip install tensorboard, or train with --no-tensorboard") from None
    return SummaryWriter(str(path))


def hparams_of(cfg) -> dict:
    """The config as hparams: scalars as they are, lists and dicts as text (the plugin takes no others)."""
    out = {}
    for key, value in cfg.to_dict().items():
        if key in ("out", "name", "data_dir"):
            continue
        if isinstance(value, dict):
            out.update({f"model.{k}": v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in value.items()})
        elif value is None or isinstance(value, (list, tuple)):
            out[key] = str(value)
        else:
            out[key] = value
    return out


class TensorBoardCallback(Callback):
    def on_train_start(self, ctx):
        root = ctx.run.path / "tensorboard"
        self.root = root
        self.train, self.val = _writer(root / "train"), _writer(root / "val")
        if ctx.epoch == 0:   # a resumed run already has its sample grid
            n = min(SAMPLE_IMAGES, len(ctx.train_ds))
            images = image_batch(ctx.train_ds, range(n))
            self.train.add_images("samples", images, 0, dataformats="NCHW")

    def on_epoch_end(self, ctx, record):
        e, w = record["epoch"], self.train
        w.add_scalar("loss", record["train_loss"], e)
        if "train_top1" in record:
            w.add_scalar("accuracy", record["train_top1"], e)
        else:   # several labels per image: the fraction of known labels right at 0.5
            w.add_scalar("label_accuracy", record["train_label_acc"], e)
        w.add_scalar("lr", record["lr"], e)
        w.add_scalar("images_per_s", record["images_per_s"], e)
        w.add_scalar("epoch_time_s", record["data_time_s"] + record["compute_time_s"], e)
        if "val_loss" in record:
            self.val.add_scalar("loss", record["val_loss"], e)
            for key, tag in (("val_top1", "accuracy"), ("val_top5", "top5"), ("val_map", "mAP"), ("val_auroc", "AUROC")):
                if record.get(key) is not None:
                    self.val.add_scalar(tag, record[key], e)
        if ctx.cfg.histograms:
            for name, p in ctx.model.named_parameters():
                w.add_histogram(name, p.detach().float().cpu(), e)
        w.flush()
        self.val.flush()

    def on_train_end(self, ctx, summary):
        metrics = {f"final/{k}": float(summary[k]) for k in ("test_top1", "test_top5", "test_loss", "test_map",
                                                              "test_auroc", "test_exact_match")
                   if summary.get(k) is not None}
        last = ctx.run.read_metrics()[-1:] or [{}]
        metrics.update({f"final/{k}": float(v) for k, v in last[0].items()
                        if k in ("val_top1", "val_loss", "train_loss", "val_map") and v is not None})
        best = summary.get("best_" + ctx.cfg.best_metric)
        if best is not None:
            metrics["final/best_" + ctx.cfg.best_metric] = float(best)
        with _writer(self.root) as w:
            w.add_hparams(hparams_of(ctx.cfg), metrics, run_name="hparams")
            self._embedding(ctx, w)
        self.train.close()
        self.val.close()

    def _embedding(self, ctx, writer):
        out = ctx.test if ctx.cfg.embeddings else None
        if out is None or not len(out.get("features", ())):
            return
        n = len(out["features"])
        images = image_batch(ctx.test_ds, range(n)).float() / 255
        if images.shape[1] == 1:     # the projector's sprite is RGB
            images = images.expand(-1, 3, -1, -1)
        classes = ctx.classes
        labels = out["labels"][:n]
        if labels.dim() == 2:   # several labels per image: the present ones, joined
            names = ["|".join(c for c, v in zip(classes, row) if v == 1) or "-" for row in labels.tolist()]
        else:
            names = [classes[i] for i in labels.tolist()]
        writer.add_embedding(out["features"], metadata=names,
                             label_img=images, global_step=ctx.epoch, tag="penultimate")
