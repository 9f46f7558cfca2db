"""``metrics.csv``: metrics.jsonl as a spreadsheet opens it, rewritten at the end of every epoch."""
from __future__ import annotations

import csv
import io

from ..engine.callbacks import Callback
from ..files import atomic_write


def metrics_to_csv(metrics: list[dict]) -> str:
    columns = list(dict.fromkeys(k for m in metrics for k in m))   # first-seen order, union over epochs
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics)
    return buf.getvalue()


class MetricsCSVCallback(Callback):
    def on_epoch_end(self, ctx, record):
        atomic_write(ctx.run.path / "metrics.csv", metrics_to_csv(ctx.run.read_metrics()), durable=False)
