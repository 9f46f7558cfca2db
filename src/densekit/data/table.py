"""Reading a CSV table of images and labels, a line at a time: the columns, then one pass of rows.

Two layouts (docs/data.md, "Data from a table"): one label column (ChestX-ray14's
``Finding Labels``, several labels joined by ``label_sep``, ``none_label`` naming the empty set),
or one column per label (CheXpert's: 1 present, 0 or empty absent, -1 uncertain, resolved by the
CheXpert paper's U-Ones / U-Zeros / U-Ignore policies; ignore is NaN, masked out of loss and
metrics). The file is never read whole: lines are pulled one by one with a byte limit per line and
a row limit (limits.py), and every refusal is one line naming the file and line.
"""
from __future__ import annotations

import csv
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DensekitError
from ..limits import MAX_ARRAY_BYTES, MAX_CLASSES, MAX_TABLE_LINE_BYTES, MAX_TABLE_ROWS
from .images import EXTENSIONS

SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val",
          "test": "test", "testing": "test"}
UNCERTAIN = {"ones": 1.0, "zeros": 0.0, "ignore": float("nan")}
# Column names taken without a flag (compared lower-case, without spaces and underscores).
IMAGE_NAMES = ("image", "images", "path", "imagepath", "file", "filename", "filepath", "imageindex", "img")
LABEL_NAMES = ("label", "labels", "class", "findinglabels", "target", "category")
BINARY = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "": 0.0, "-1": -1.0, "-1.0": -1.0}
MAX_LABEL_ENTRIES = MAX_ARRAY_BYTES // 4   # label entries kept while scanning: a float32 N x K matrix's
PEEK = 100   # rows looked at to tell one-column-per-label tables apart by their values
PEEK_FIELDS = 200_000   # ... fewer when rows are wide, so the peek's strings stay a few MB


def _key(name: str) -> str:
    return name.lower().replace(" ", "").replace("_", "").replace("-", "")


def read_lines(path: Path):
    """Decoded lines of ``path``, each at most MAX_TABLE_LINE_BYTES: a UTF-8 byte-order mark is
    dropped (Excel writes one), UTF-16 and non-UTF-8 bytes are refused naming the line."""
    try:
        f = open(path, "rb")
    except OSError as err:
        raise DensekitError(f"{path}: cannot open the table ({err.strerror or err}); check the csv: path") from None
    with f:
        n = 0
        while True:
            line = f.readline(MAX_TABLE_LINE_BYTES + 1)
            if not line:
                if n == 0:
                    raise DensekitError(f"{path}: empty file; give a CSV table with a header row (e.g. image,label)")
                return
            n += 1
            if n == 1:
                if line.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise DensekitError(f"{path}: UTF-16 text; save the table as UTF-8 CSV")
                line = line.removeprefix(b"\xef\xbb\xbf")
            if len(line) > MAX_TABLE_LINE_BYTES:
                raise DensekitError(f"{path} line {n}: longer than {MAX_TABLE_LINE_BYTES:,} bytes; is it a CSV "
                                    "table with one row per line?")
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise DensekitError(f"{path} line {n}: not UTF-8 text; save the table as UTF-8 CSV") from None


def read_rows(path: Path):
    """(header, iterator of (line number, row)); blank lines are skipped, ragged rows refused."""
    reader = csv.reader(read_lines(path), strict=True)

    def rows():
        try:
            for count, row in enumerate(reader, 1):
                if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
                    continue
                if count > MAX_TABLE_ROWS:
                    raise DensekitError(f"{path}: more than {MAX_TABLE_ROWS:,} rows (densekit's limit); split the "
                                        "table")
                if len(row) != len(header):
                    raise DensekitError(f"{path} line {reader.line_num}: {len(row)} fields, the header has "
                                        f"{len(header)}; quote values holding commas (\"a, b\")")
                yield reader.line_num, row
        except csv.Error as err:
            raise DensekitError(f"{path} line {reader.line_num}: not valid CSV ({err})") from None

    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DensekitError(f"{path}: empty file; give a CSV table with a header row (e.g. image,label)") from None
    except csv.Error as err:
        raise DensekitError(f"{path} line 1: not valid CSV ({err})") from None
    seen = set()
    for name in header:
        if name in seen:
            raise DensekitError(f"{path}: the header names column {name!r} twice; rename one")
        seen.add(name)
    return header, rows()


@dataclass
class Layout:
    """Which columns hold what, resolved from the header (and a peek at the first rows)."""
    image: int
    labels: list[int]                 # one index (narrow) or one per label (wide)
    wide: bool
    names: list[str]                  # the label columns' names (wide) or the label column's
    split: int | None = None
    group: int | None = None


def _column(header: list[str], name: str, flag: str, path: Path) -> int:
    if name not in header:
        shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
        raise DensekitError(f"{path}: no column {name!r} ({flag}); its columns are {shown}")
    return header.index(name)


def _named(header: list[str], names: tuple) -> list[int]:
    return [i for i, h in enumerate(header) if _key(h) in names]


def resolve_layout(path: Path, header: list[str], peek: list[list[str]], opts: dict) -> Layout:
    """The columns to read: those named by the options, else the unambiguous defaults."""
    def col(option, flag):
        return None if opts.get(option) is None else _column(header, opts[option], flag, path)

    def one(found, what, flag):
        if len(found) != 1:
            raise DensekitError(f"{path}: cannot tell which column holds {what} ({'several' if found else 'none'} "
                                f"of {', '.join(header[:20])}); name it with {flag}")
        return found[0]

    if opts.get("label_sep") is not None and not opts["label_sep"].strip():
        raise DensekitError(f"{path}: --label-sep {opts['label_sep']!r}: give the text between labels, e.g. '|'")
    image = col("image_col", "--image-col")
    if image is None:
        by_value = [i for i in range(len(header))
                    if peek and all(r[i].strip().lower().endswith(EXTENSIONS) for r in peek)]
        image = one(_named(header, IMAGE_NAMES) or by_value, "the image paths", "--image-col NAME")
    split, group = col("split_col", "--split-col"), col("group_col", "--group-col")
    if split is None and "split_col" not in opts:
        split = next(iter(_named(header, ("split",))), None)
    taken = {image, split, group}
    if opts.get("label_cols") is not None and opts.get("label_col") is not None:
        raise DensekitError(f"{path}: give either --label-col (one column) or --label-cols (one column per label), "
                            "not both")
    if opts.get("label_cols") is not None:
        cols = [_column(header, name, "--label-cols", path) for name in opts["label_cols"]]
        if len(set(cols)) != len(cols) or taken & set(cols):
            raise DensekitError(f"{path}: --label-cols {','.join(opts['label_cols'])} names a column twice or the "
                                "image/split/group column")
        wide = True
    elif opts.get("label_col") is not None:
        cols, wide = [_column(header, opts["label_col"], "--label-col", path)], False
    else:
        rest = [i for i in range(len(header)) if i not in taken]
        named = [i for i in _named(header, LABEL_NAMES) if i in rest]
        binary = [i for i in rest if peek and all(r[i].strip() in BINARY for r in peek)]
        if named:
            cols, wide = [one(named, "the labels", "--label-col NAME")], False
        elif len(binary) >= 2:
            cols, wide = binary, True
        else:
            cols, wide = [one(rest, "the labels", "--label-col NAME or --label-cols A,B,...")], False
    if wide and len(cols) > MAX_CLASSES:
        raise DensekitError(f"{path}: {len(cols):,} label columns, above densekit's limit of {MAX_CLASSES:,}")
    if wide and (opts.get("label_sep") is not None or opts.get("none_label") is not None):
        raise DensekitError(f"{path}: --label-sep and --none-label act on one label column (--label-col); this "
                            f"table has one column per label ({', '.join(header[c] for c in cols[:5])}...): drop them")
    if not wide and opts.get("uncertain") is not None:
        raise DensekitError(f"{path}: --uncertain acts on one column per label (--label-cols); {header[cols[0]]!r} "
                            "is one label column: drop it")
    return Layout(image, cols, wide, [header[c] for c in cols], split, group)


@dataclass
class Scan:
    """What one pass over a table collects for the rows of one split."""
    paths: list = field(default_factory=list)       # normalised relative paths, bytes
    lines: array = field(default_factory=lambda: array("q"))
    vocab: dict = field(default_factory=dict)       # label token -> id in first-seen order (narrow)
    first_line: list = field(default_factory=list)  # the line each token was first seen on
    ids: array = field(default_factory=lambda: array("q"))      # narrow: label ids, flat
    counts: array = field(default_factory=lambda: array("q"))   # narrow: labels per row
    values: array = field(default_factory=lambda: array("f"))   # wide: K values per row, flat
    groups: array = field(default_factory=lambda: array("q"))
    group_ids: dict = field(default_factory=dict)
    splits: set = field(default_factory=set)        # the splits the split column names
    hashes: array = field(default_factory=lambda: array("q"))   # every row's path hash and line: duplicates
    all_lines: array = field(default_factory=lambda: array("q"))


def relative_path(value: str, where: str) -> str:
    """The row's image path, normalised; absolute paths and ones that climb out of the root are refused."""
    p = value.strip()
    if p and p[0] not in "/~.\\" and "/." not in p and "//" not in p and "\\" not in p and p[1:2] != ":" \
            and not p.endswith("/"):
        return p     # already relative and normal (most rows): what normpath would return
    if not p:
        raise DensekitError(f"{where}: empty image path; give every row an image")
    if os.path.isabs(p) or p.startswith(("~", "\\")) or (len(p) > 1 and p[1] == ":"):
        raise DensekitError(f"{where}: absolute image path {p!r}; write paths relative to the table's folder "
                            "or to --image-root")
    norm = os.path.normpath(p)
    if norm == ".." or norm.startswith(".." + os.sep):
        raise DensekitError(f"{where}: image path {p!r} escapes the image root; keep images under the table's "
                            "folder or --image-root")
    return norm


def scan(path: Path, layout: Layout, split: str | None, opts: dict) -> Scan:
    """The rows of ``split`` (every row when None) of the table at ``path``."""
    _, rows = read_rows(path)
    s, sep, none = Scan(), opts.get("label_sep"), opts.get("none_label")
    policy = UNCERTAIN[opts.get("uncertain") or "ignore"]
    for line, row in rows:
        where = f"{path} line {line}"
        rel = relative_path(row[layout.image], where)
        s.hashes.append(hash(rel))
        s.all_lines.append(line)
        if layout.split is not None:
            name = SPLITS.get(row[layout.split].strip().lower())
            if name is None:
                raise DensekitError(f"{where}: split {row[layout.split]!r} in column {layout.split!r}; write train, "
                                    "val or test")
            s.splits.add(name)
            if split is not None and name != split:
                continue
        elif split not in (None, "train"):
            continue
        s.paths.append(rel.encode("utf-8", "surrogateescape"))
        s.lines.append(line)
        if layout.group is not None:
            s.groups.append(s.group_ids.setdefault(row[layout.group].strip(), len(s.group_ids)))
        if layout.wide:
            for c, name in zip(layout.labels, layout.names):
                v = BINARY.get(row[c].strip())
                if v is None:
                    raise DensekitError(f"{where}: {row[c]!r} in label column {name!r}; write 1, 0, "
                                        "-1 (uncertain) or leave it empty")
                s.values.append(policy if v < 0 else v)
            if len(s.values) > MAX_LABEL_ENTRIES:
                raise _too_many(where)
            continue
        cell = row[layout.labels[0]].strip()
        if not cell:
            raise DensekitError(f"{where}: empty label; give every row a label" +
                                ("" if none is not None else " (or name the empty set with --none-label)"))
        tokens = [] if cell == none else [t.strip() for t in cell.split(sep)] if sep else [cell]
        if any(not t for t in tokens) or (none is not None and none in tokens):
            raise DensekitError(f"{where}: label {cell!r} has an empty part or mixes {none!r} with labels")
        for t in dict.fromkeys(tokens):
            if t not in s.vocab:
                if len(s.vocab) >= MAX_CLASSES:
                    raise DensekitError(f"{where}: more than {MAX_CLASSES:,} distinct labels (densekit's limit); "
                                        "is --label-col the right column?")
                s.vocab[t] = len(s.vocab)
                s.first_line.append(line)
            s.ids.append(s.vocab[t])
        s.counts.append(len(dict.fromkeys(tokens)))
        if len(s.ids) > MAX_LABEL_ENTRIES:
            raise _too_many(where)
    _check_duplicates(path, layout, s)
    return s


def _too_many(where: str) -> DensekitError:
    return DensekitError(f"{where}: the labels so far pass densekit's limit of {MAX_ARRAY_BYTES:,} bytes as a "
                         "float32 matrix; split the table")


def _check_duplicates(path: Path, layout: Layout, s: Scan):
    """An image listed twice anywhere in the table is refused, naming both lines. Found from 16
    bytes a row (path hashes sorted), not a set of the paths; the name is read back on refusal."""
    h = np.frombuffer(s.hashes, dtype=np.int64)
    order = np.argsort(h, kind="stable")
    same = np.flatnonzero(h[order][1:] == h[order][:-1])
    if not len(same):
        return
    lines = np.frombuffer(s.all_lines, dtype=np.int64)
    pairs = sorted(zip(lines[order[same + 1]].tolist(), lines[order[same]].tolist()))
    wanted = {line for pair in pairs for line in pair}
    _, rows = read_rows(path)
    names = {line: relative_path(row[layout.image], "") for line, row in rows if line in wanted}
    for again, first in pairs:
        if names[again] == names[first]:     # (else two paths whose hashes collide)
            raise DensekitError(f"{path} line {again}: image {names[again]!r} is listed again (first on line "
                                f"{first}); list each image once, with all its labels")
