"""Setting up a training run: the one linear step before the loop (``Trainer.__init__`` calls these
in order, nanoGPT-style: everything the loop uses is built here and visible in one read).

    settings (validated; a resume's own, ``run.resume_settings``)
    -> ``build_data``: the splits, normalisation statistics, augmentation, TTA, the loader
    -> ``build_model``: the network, frozen parts, precision and layout, optimizer, scaler, EMA, DDP, compile
    -> ``open_run``: the run folder, created (a new name) or reopened (a resume), locked by rank 0

A resumed run takes its normalisation statistics from the checkpoint and its weights from it
afterwards (``Trainer.restore``), so nothing here depends on what a first start would compute.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import data as D
from ..config import TrainConfig
from ..data import augment as A
from ..data.balance import class_weights
from ..data.dataset import MissingSplit
from ..data.splits import carve_val
from ..data.table_dataset import table_options
from ..models import create_model
from ..models.finetune import frozen_modules
from ..models.pretrained import pretrained_stats
from . import distributed
from .ema import EMA
from .losses import pos_weights
from .optim import base_lr, build_optimizer
from .precision import fast_defaults, memory_format, precision_name, resolve_precision
from .run import RunFolder, default_name


@dataclass
class Data:
    """What the loop reads: the splits (val and test may be None), the class names, the input
    pipeline (normalisation, augmentation, the sharded loader), the loss's class weights (several
    labels per image: ``pos_weight``, each label's positive weight), the test-time augmentation,
    and ``info``: the checkpoint's ``data`` part."""
    train_ds: object
    val_ds: object
    test_ds: object
    classes: list
    normalize: D.Normalize
    augment: A.Augment
    tta: str
    loader: D.Loader
    class_weights: torch.Tensor | None
    info: dict
    pos_weight: torch.Tensor | None = None


def build_data(cfg: TrainConfig, device: torch.device, rank: int, world_size: int,
               payload: dict | None) -> tuple[TrainConfig, Data]:
    """The data of ``cfg`` (and ``cfg`` as the splits leave it: a val_* metric needs a val split)."""
    opts = dict(image_size=cfg.image_size, channels=cfg.channels, skip_bad=cfg.skip_bad)
    opts = {k: v for k, v in opts.items() if v not in (None, False)}
    opts.update(table_options(cfg, cfg.dataset))   # csv: the columns and label rules
    train_ds = D.load_dataset(cfg.dataset, "train", cfg.data_dir, **opts)
    val_ds = _optional_split(cfg, "val", opts)
    if val_ds is None and cfg.val_split:
        train_ds, val_ds = carve_val(train_ds, cfg.val_split, cfg.seed)
    # the dataset says one label or several per image; a val_* metric needs a validation split
    cfg = cfg.for_task(train_ds.task).for_splits(has_val=val_ds is not None)
    test_ds = _optional_split(cfg, "test", opts)
    classes = list(train_ds.classes)
    channels, height, width = train_ds.shape
    if payload is not None:
        mean, std = payload["data"]["mean"], payload["data"]["std"]
    elif cfg.pretrained:                   # the statistics the weights were trained with
        mean, std = pretrained_stats(channels)
    else:
        mean, std = D.channel_stats(train_ds, workers=cfg.workers)
    preset = cfg.augment if cfg.augment != "auto" else \
        A.default_augment(cfg.dataset, min(height, width), finetune=cfg.pretrained or bool(cfg.weights))
    normalize = D.Normalize(mean, std)
    augment = A.Augment(preset, seed=cfg.seed, num_classes=len(classes), normalize=normalize)
    tta = A.default_tta(augment.preset) if cfg.tta == "auto" else cfg.tta
    loader = D.Loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=len(train_ds) > cfg.batch_size,
                      device=device, workers=cfg.workers, rank=rank, world_size=world_size,
                      balanced=cfg.sampler == "balanced")
    weights = class_weights(cfg.class_weights, train_ds.labels, classes)
    pos_weight = pos_weights(train_ds.labels, classes).to(device) if cfg.pos_weight else None
    info = {"classes": classes, "mean": list(mean), "std": list(std), "channels": channels,
            "image_size": [height, width], "dataset": cfg.dataset, "tta": tta, "task": cfg.task}
    return cfg, Data(train_ds, val_ds, test_ds, classes, normalize, augment, tta, loader,
                     None if weights is None else weights.to(device), info, pos_weight)


def _optional_split(cfg: TrainConfig, split: str, opts: dict):
    try:
        return D.load_dataset(cfg.dataset, split, cfg.data_dir, **opts)
    except MissingSplit:   # the source simply has no such split
        return None


@dataclass
class Model:
    """The network (``model``: plain, what checkpoints hold; ``net``: what steps call, DDP and/or
    compiled around it), its frozen parts, precision and layout, and what trains it."""
    model: torch.nn.Module
    net: torch.nn.Module
    ddp: torch.nn.Module | None
    frozen: list
    spec: dict                 # the checkpoint's ``model`` part: {"name", "args"}
    dtype: torch.dtype | None
    channels_last: bool
    memory_format: torch.memory_format
    precision: dict            # the checkpoint's ``precision`` part
    optimizer: torch.optim.Optimizer
    base_lr: float
    scaler: torch.amp.GradScaler
    ema: EMA | None


def build_model(cfg: TrainConfig, data: Data, device: torch.device, world_size: int,
                payload: dict | None) -> Model:
    """The model of ``cfg`` on ``device`` and what trains it (a resume's weights come later)."""
    channels = data.info["channels"]
    model = create_model(cfg.model, num_classes=len(data.classes), in_channels=channels, **cfg.model_args,
                         pretrained=cfg.pretrained and payload is None,
                         weights=cfg.weights if payload is None else None)
    frozen = frozen_modules(model, cfg.freeze) if cfg.freeze else []
    spec = {"name": cfg.model, "args": model.model_args}
    if cfg.sync_bn and world_size > 1:   # one process's BatchNorm is already the whole batch's
        model = distributed.convert_sync_bn(model, device)
    dtype = resolve_precision(cfg.precision, device)
    channels_last = fast_defaults(device)["channels_last"] if cfg.channels_last is None else cfg.channels_last
    layout = memory_format(channels_last)
    model.to(device, memory_format=layout)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = EMA(model, cfg.ema) if cfg.ema else None
    ddp = distributed.wrap(model, device, bool(frozen)) if world_size > 1 else None
    net = ddp or model
    if cfg.compile:
        net = torch.compile(net)
    return Model(model, net, ddp, frozen, spec, dtype, channels_last, layout,
                 {"dtype": precision_name(dtype), "channels_last": channels_last}, optimizer, base_lr(cfg),
                 scaler, ema)


def open_run(cfg: TrainConfig, resume, rank: int) -> RunFolder:
    """The run folder, locked by rank 0 (the other ranks get rank 0's path)."""
    main = rank == 0
    if resume is not None:
        run = RunFolder.open(resume, main=main)
        if main and not run.checkpoint("last").is_file():
            run.reset()            # killed before its first checkpoint: start it afresh
        return run
    run = None
    if main:
        run = RunFolder.create(cfg.out, cfg.name or default_name(cfg.model, cfg.dataset), unique=cfg.name is None)
    path = distributed.same_on_all_ranks(str(run.path) if main else None)
    return run if main else RunFolder(path, main=False)
