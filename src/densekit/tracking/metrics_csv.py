"""``metrics.csv``: metrics.jsonl as a spreadsheet opens it, rewritten at the end of every epoch."""
from __future__ import annotations

import csv
import io

from ..engine.trainer import Callback


def metrics_to_csv(metrics: list[dict]) -> str:
    columns = list(dict.fromkeys(k for m in metrics for k in m))   # first-seen order, union over epochs
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics)
    return buf.getvalue()


class MetricsCSVCallback(Callback):
    def on_epoch_end(self, trainer, record):
        path = trainer.run.path / "metrics.csv"
        tmp = path.with_name(".metrics.csv.tmp")
        tmp.write_text(metrics_to_csv(trainer.run.read_metrics()))
        tmp.replace(path)
