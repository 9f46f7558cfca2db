"""``csv:FILE``: images listed in a CSV table with their labels, streamed like ``folder:``.

``csv:train.csv`` (a ``split`` column, or ``--split-col``, may divide it into train / val / test)
or ``csv:train.csv,val=valid.csv,test=test.csv``. Image paths are relative to each table's folder
or to ``--image-root``. The training rows fix the label set and the task: single-label when every
row has one label (labels are ints, as for ``folder:``), else multi-label (labels are a float32
N x K matrix, 1 present, 0 absent, NaN ignored). The set keeps only paths, line numbers and labels
in memory; images decode on demand in the loader's workers.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DensekitError
from ..limits import MAX_ARRAY_BYTES
from .dataset import ImageDataset, MissingSplit
from .folder import _sorted_classes, probe_shape
from .images import decode_image
from .table import PEEK, PEEK_FIELDS, SPLITS, Layout, read_rows, relative_path, resolve_layout, scan

# The settings of a table (config.py's TrainConfig fields of the same names); ``task`` may force
# "single-label" or "multilabel" instead of inferring it from the training rows.
TABLE_OPTIONS = ("image_col", "image_root", "label_col", "label_sep", "none_label", "label_cols", "uncertain",
                 "split_col", "group_col")


def table_options(settings, dataset: str | None = None) -> dict:
    """The table options set in ``settings`` (a TrainConfig, a run's config dict or parsed arguments),
    plus ``task`` when forced; refused when ``dataset`` is not a ``csv:`` table, where they cannot act."""
    get = settings.get if isinstance(settings, dict) else (lambda k: getattr(settings, k, None))
    opts = {k: get(k) for k in TABLE_OPTIONS if get(k) is not None}
    if dataset is not None and not dataset.startswith("csv:"):
        if opts:
            raise DensekitError(f"--{next(iter(opts)).replace('_', '-')} acts on csv: tables only; drop it or "
                                "give --dataset csv:FILE")
        return {}
    if get("task") not in (None, "auto"):
        opts["task"] = get("task")
    return opts


def parse_tables(arg: str) -> dict[str, Path]:
    """``a.csv`` or ``a.csv,val=b.csv,test=c.csv`` (``train=`` optional on the first) -> {split: path}."""
    tables = {}
    for k, part in enumerate(filter(None, (p.strip() for p in (arg or "").split(",")))):
        name, eq, path = part.partition("=")
        if not eq:
            if k:
                raise DensekitError(f"csv:{arg}: write the other tables as val=FILE or test=FILE")
            name, path = "train", part
        split = SPLITS.get(name.strip().lower())
        if split is None or split in tables or not path.strip():
            raise DensekitError(f"csv:{arg}: {part!r}: name each table once as train=, val= or test=FILE")
        tables[split] = Path(path.strip()).expanduser()
    if "train" not in tables:
        raise DensekitError("csv needs a table: --dataset csv:FILE.csv (or csv:train.csv,val=valid.csv)")
    return tables


def _layout(path: Path, opts: dict) -> Layout:
    header, rows = read_rows(path)
    peek = []
    for _, row in rows:
        peek.append(row)
        if len(peek) >= min(PEEK, max(1, PEEK_FIELDS // len(header))):
            break
    return resolve_layout(path, header, peek, opts)


def _schema(path: Path, opts: dict, train=None) -> dict:
    """The label set and task the training rows fix (``train``: their scan, when already made).
    Read again for each other split rather than cached: a cache keyed on the file's size and time
    would miss a rewrite within the clock's granularity, and a pass costs well under a second per
    100,000 rows."""
    layout = _layout(path, opts)
    s = train or scan(path, layout, "train", opts)
    if not s.paths:
        raise MissingSplit(f"{path}: no training rows (its split column names {', '.join(sorted(s.splits))})")
    forced = opts.get("task")
    where = f"{path} (training rows)"
    if layout.wide:
        if forced == "single-label":
            raise DensekitError(f"--task single-label reads one label column (--label-col); {path} has one column "
                                "per label")
        classes, task = list(layout.names), "multilabel"
        values = np.frombuffer(s.values, dtype=np.float32).reshape(len(s.paths), len(classes))
        positives, known = (values == 1).sum(0), (~np.isnan(values)).sum(0)
    else:
        classes = _sorted_classes(list(s.vocab))
        counts = np.frombuffer(s.counts, dtype=np.int64)
        multi = np.flatnonzero(counts != 1)
        task = forced or ("multilabel" if len(multi) else "single-label")
        if task == "single-label" and len(multi):
            raise DensekitError(f"{path} line {s.lines[multi[0]]}: {counts[multi[0]]} labels in a single-label "
                                "table; give --label-sep for several labels per row")
        positives = np.bincount(np.frombuffer(s.ids, dtype=np.int64), minlength=len(classes))
        positives = positives[[s.vocab[c] for c in classes]]
        known = np.full(len(classes), len(s.paths))
    if task == "single-label" and len(classes) < 2:
        raise DensekitError(f"{where}: the label column {layout.names[0]!r} holds one value "
                            f"({classes[0] if classes else 'none'!r}) in every row: nothing to tell apart; "
                            "check --label-col")
    if task == "multilabel":
        constant = [c for c, p, k in zip(classes, positives.tolist(), known.tolist()) if p == 0 or p == k]
        if constant:
            state = "absent from" if positives[classes.index(constant[0])] == 0 else "present in"
            raise DensekitError(f"{where}: label {constant[0]!r} is {state} every row (one value; {len(constant)} "
                                "such): nothing to learn; drop it from --label-cols or fix the table")
    return {"classes": classes, "task": task, "splits": s.splits}


def _train_images(path: Path, opts: dict):
    """The image files of the training rows, in table order, read lazily."""
    layout = _layout(path, opts)
    root = Path(opts["image_root"]).expanduser() if opts.get("image_root") else path.parent
    _, rows = read_rows(path)
    for line, row in rows:
        if layout.split is None or SPLITS.get(row[layout.split].strip().lower()) == "train":
            yield root / relative_path(row[layout.image], f"{path} line {line}")


class TableDataset(ImageDataset):
    """One split of a CSV table; items decode lazily to ``channels`` x ``image_size``."""

    def __init__(self, arg: str, split: str = "train", channels: int | None = None, image_size=None,
                 skip_bad: bool = False, **opts):
        tables = parse_tables(arg)
        several = len(tables) > 1
        if several and opts.get("split_col") is not None:
            raise DensekitError(f"csv:{arg}: give one table with --split-col, or one table per split, not both")
        if several:
            opts = {**opts, "split_col": None}     # each table is its own split: a split column is not read
        train_path = tables["train"]
        if split not in tables and several:
            raise MissingSplit(f"csv:{arg} has no {split} table (it has {', '.join(tables)})"
                               + ("; carve a validation split with --val-split" if split == "val" else ""))
        path = tables[split] if several else train_path
        layout = _layout(path, opts)
        if several and split != "train":          # the other tables: the training table's columns
            layout = _layout(path, {**opts, **self._train_columns(train_path, opts)})
        s = scan(path, layout, None if several else split, opts)
        schema = _schema(train_path, opts, s if path == train_path and split == "train" else None)
        if not s.paths:
            raise MissingSplit(f"{path} has no {split} rows" + (f" (its split column names "
                               f"{', '.join(sorted(s.splits))})" if s.splits else "") + "; name them in a split "
                               f"column (--split-col) or give csv:TRAIN.csv,{split}=FILE.csv"
                               + (", or carve a validation split with --val-split" if split == "val" else ""))
        has_val = "val" in tables or "val" in schema["splits"]
        if opts.get("group_col") is not None and has_val:
            raise DensekitError(f"--group-col acts when the validation split is carved; csv:{arg} has its own val "
                                "rows: drop --group-col")
        root = Path(opts["image_root"]).expanduser() if opts.get("image_root") else path.parent
        if not root.is_dir():
            raise DensekitError(f"--image-root {root}: no such folder; give the folder the table's paths start from")
        self.classes, self.task = schema["classes"], schema["task"]
        self.root, self.table, self.split = root, path, split
        self.name, self.skip_bad = f"csv:{arg}", skip_bad
        self.paths = np.array(s.paths)
        self.lines = torch.from_numpy(np.frombuffer(s.lines, dtype=np.int64).copy())
        self.labels = self._labels(s, layout)
        self.groups = torch.from_numpy(np.frombuffer(s.groups, dtype=np.int64).copy()) if layout.group is not None \
            else None
        if not skip_bad:
            self._check_files()
        self.channels, self.image_size = channels, image_size
        if channels is None or image_size is None:   # the first training image fixes it, for every split
            self.channels, self.image_size = probe_shape(_train_images(train_path, opts), channels, image_size,
                                                         tries=100 if skip_bad else 1, where=str(train_path))

    @staticmethod
    def _train_columns(train_path: Path, opts: dict) -> dict:
        header, _ = read_rows(train_path)
        layout = _layout(train_path, opts)
        out = {"image_col": header[layout.image]}
        out.update({"label_cols": layout.names} if layout.wide else {"label_col": layout.names[0]})
        return out

    def _labels(self, s, layout: Layout) -> torch.Tensor:
        n, k = len(s.paths), len(self.classes)
        if self.task == "multilabel" and n * k * 4 > MAX_ARRAY_BYTES:
            raise DensekitError(f"{self.table}: {n:,} rows x {k:,} labels is above densekit's limit of "
                                f"{MAX_ARRAY_BYTES:,} bytes of labels; split the table")
        if layout.wide:
            return torch.from_numpy(np.frombuffer(s.values, dtype=np.float32).reshape(n, k).copy())
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [t for t in s.vocab if t not in index]
        if unknown:
            raise DensekitError(f"{self.table} line {s.first_line[s.vocab[unknown[0]]]}: label {unknown[0]!r} is not "
                                f"among the training rows' {k} labels; every split must use the training labels")
        remap = np.array([index[t] for t in s.vocab], dtype=np.int64)
        ids = remap[np.frombuffer(s.ids, dtype=np.int64)] if len(remap) else np.zeros(0, dtype=np.int64)
        counts = np.frombuffer(s.counts, dtype=np.int64)
        if self.task == "single-label":
            off = np.flatnonzero(counts != 1)
            if len(off):
                raise DensekitError(f"{self.table} line {s.lines[off[0]]}: {counts[off[0]]} labels, but the training "
                                    "rows have one each (single-label)")
            return torch.from_numpy(ids)
        matrix = np.zeros((n, k), dtype=np.float32)
        matrix[np.repeat(np.arange(n), counts), ids] = 1.0
        return torch.from_numpy(matrix)

    def _check_files(self):
        """Every listed image exists, checked up front (a stat each) so a typo fails now, not hours in."""
        for p, line in zip(self.paths, self.lines.tolist()):
            full = self.root / p.decode("utf-8", "surrogateescape")
            if not os.path.isfile(full):
                raise DensekitError(f"{self.table} line {line}: image {full}: no such file; fix the path or "
                                    "--image-root, or pass --skip-bad to leave such rows out")

    def path(self, i: int) -> Path:
        return self.root / self.paths[i].decode("utf-8", "surrogateescape")

    def load_item(self, i: int) -> torch.Tensor:
        try:
            return decode_image(self.path(i), self.channels, self.image_size)
        except DensekitError as err:
            raise DensekitError(f"{self.table} line {int(self.lines[i])}: {err}") from None

    @property
    def shape(self):
        h, w = (self.image_size, self.image_size) if isinstance(self.image_size, int) else self.image_size
        return (self.channels, h, w)
