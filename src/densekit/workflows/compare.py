"""Train several models under the same budget and tabulate what each costs and achieves: the
DenseNet-versus-ResNet table the seeds argue about (parameters, FLOPs, train images/s, peak
memory, test top-1), measured rather than quoted.

Each model trains in its own fresh process by default, so peak memory (CUDA max allocated, or the
process's max RSS on CPU) belongs to that model alone and not to whichever ran before it.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..config import TrainConfig
from ..models import create_model
from ..models.summary import summarize

COLUMNS = [("model", "model", "{}"), ("params", "params", "{:,}"), ("GFLOPs", "flops", "{:.3f}"),
           ("train img/s", "train_images_per_s", "{:,.0f}"), ("peak MB", "peak_memory_mb", "{:,.0f}"),
           ("test top-1", "test_top1", "{:.2%}")]


def compare(models: list[str], dataset: str, epochs: int = 1, isolate: bool = True, verbose: bool = False,
            out: str = "runs", **config) -> list[dict]:
    """Train each of ``models`` on ``dataset`` with the same ``TrainConfig`` fields (``config``) and
    return one row per model. Runs go to ``out/compare-<UTC time>/<model>``."""
    folder = Path(out) / f"compare-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    config = {"tensorboard": False, "plots": False, **config}   # a comparison needs the numbers only
    # Every model's settings are checked (config.py) before anything trains.
    configs = [TrainConfig.from_dict({**config, "model": name, "dataset": dataset, "epochs": epochs,
                                      "out": str(folder), "name": name}).validate() for name in models]
    rows = []
    for cfg in configs:
        if isolate:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(measure, cfg.to_dict(), verbose).result())
        else:
            rows.append(measure(cfg.to_dict(), verbose))
    return rows


def measure(config: dict, verbose: bool = False) -> dict:
    """Train one model and return its row; FLOPs come from ``summarize`` on the trained model's
    exact architecture at the dataset's image size (one image, 2 FLOPs per multiply-add)."""
    from ..api import train
    from ..engine import load_checkpoint
    from ..engine.checkpoint import resolve_checkpoint
    run = train(TrainConfig.from_dict(config), verbose=verbose)
    payload = load_checkpoint(resolve_checkpoint(run.dir, prefer="last"))
    spec, data = payload["model"], payload["data"]
    model = create_model(spec["name"], **spec["args"])
    size = (data["channels"], *data["image_size"])
    s = run.summary
    return {"model": spec["name"], "params": sum(p.numel() for p in model.parameters()),
            "flops": summarize(model, size)["total_flops"] / 1e9, "input_size": list(size),
            "train_images_per_s": s["train_images_per_s"], "peak_memory_mb": s["peak_memory_mb"],
            "test_top1": s.get("test_top1"), "test_top5": s.get("test_top5"), "epochs": s["epochs"],
            "duration_s": s["duration_s"], "run_dir": str(run.dir)}


def format_table(rows: list[dict]) -> str:
    cells = [[title for title, _, _ in COLUMNS]]
    for r in rows:
        cells.append([fmt.format(r[key]) if r.get(key) is not None else "-" for _, key, fmt in COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    return "\n".join(lines)
