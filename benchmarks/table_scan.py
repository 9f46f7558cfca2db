"""How fast, and in how much memory, a ChestX-ray14-shaped CSV table is read (no images decoded).

    python benchmarks/table_scan.py --rows 500000

Writes a table like ``Data_Entry_2017.csv`` (image, ``|``-joined findings or ``No Finding``,
patient ID, ...) with ``--rows`` rows, then reads its training rows the way ``csv:`` does (the
columns, one streamed pass, the label set) and prints rows per second and the growth of the
process's peak resident memory over the read, per row.
"""
from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from densekit.data.table import scan
from densekit.data.table_dataset import _layout, _schema

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]


def write_table(path: Path, rows: int, seed: int = 0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age\n")
        for i in range(rows):
            labels = "No Finding" if rng.random() < 0.5 else "|".join(sorted(rng.sample(FINDINGS, rng.randint(1, 3))))
            f.write(f"{i:08d}_000.png,{labels},0,{i // 3},{rng.randint(1, 90)}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=200_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Data_Entry.csv"
        write_table(path, args.rows)
        opts = {"label_col": "Finding Labels", "label_sep": "|", "none_label": "No Finding"}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        s = scan(path, _layout(path, opts), "train", opts)
        schema = _schema(path, opts, s)
        seconds = time.perf_counter() - t
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        print(f"{args.rows:,} rows ({path.stat().st_size / 1e6:.1f} MB, {len(schema['classes'])} labels, "
              f"{schema['task']}): {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s, peak memory "
              f"+{grown / 1e6:.0f} MB ({grown / args.rows:.0f} bytes/row)")


if __name__ == "__main__":
    main()
