"""`densekit report`: one self-contained HTML page per run — results (the test figure with its
test-time augmentation), curves, an epoch table, the learning rate, confusion matrix, per-class
accuracy, sample and worst predictions (wrong ones in red), a compact settings table, date and
versions. Images are embedded as data URIs and the style is inline, so the file can be mailed or
attached to an issue and opens anywhere, offline."""
from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

from ..engine.run import RunFolder
from ..files import atomic_write, check_target
from .runs import fmt_duration, fmt_pct, read_json, run_row

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { background: #4a90d9; height: 10px; display: inline-block; }
.status { padding: 2px 8px; border-radius: 4px; background: #eee; }
img { max-width: 100%; } .meta { color: #666; font-size: 0.9em; }
#settings th { font-weight: 600; color: #555; } #settings td { padding-right: 2em; }
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _figure(title: str, png: Path | None, missing: str) -> str:
    if png is None or not png.is_file():
        return f"<h2>{title}</h2><p class='missing'>{html.escape(missing)}</p>"
    return f"<h2>{title}</h2><img alt='{html.escape(title)}' src='{data_uri(png)}'>"


# Shown whatever their value; every other setting only where it differs from the default.
CORE = ("model", "model_args", "dataset", "epochs", "time_budget", "batch_size", "optimizer", "lr", "schedule",
        "weight_decay", "augment", "tta", "val_split", "seed")


def settings_rows(cfg: dict, resolved: dict) -> list[tuple[str, str]]:
    """(setting, value) for the compact table: what training used where the config left it open."""
    from ..config import TrainConfig
    from .runs import used_settings
    defaults, used = TrainConfig().to_dict(), used_settings(cfg, resolved)
    keys = [k for k in CORE if k in cfg] + [k for k in cfg if k not in CORE and cfg[k] != defaults.get(k)
                                            and k not in ("out", "name")]
    rows = [(k, f"{used[k]} ({cfg[k]})" if k in used else str(cfg[k])) for k in keys
            if not (k == "time_budget" and cfg[k] is None)]
    if resolved:
        rows += [("precision", f"{resolved.get('dtype')}{', channels-last' if resolved.get('channels_last') else ''}"),
                 ("device", str(resolved.get("device")))]
    return rows


def _grid(rows: list[tuple[str, str]], table_id: str, per_line: int = 3) -> str:
    """Key-value pairs, ``per_line`` pairs a row: compact, and each pair a <th><td> for readers."""
    e = html.escape
    lines = ["".join(f"<th>{e(k)}</th><td>{e(v)}</td>" for k, v in rows[i:i + per_line])
             for i in range(0, len(rows), per_line)]
    return f"<table id='{table_id}'>" + "".join(f"<tr>{line}</tr>" for line in lines) + "</table>"


def _epoch_table(metrics: list[dict]) -> str:
    head = ["epoch", "lr", "train loss", "train top-1", "val loss", "val top-1", "img/s", "elapsed"]
    rows = [[str(m["epoch"]), f"{m['lr']:.4g}", f"{m['train_loss']:.4f}", fmt_pct(m["train_top1"]),
             f"{m['val_loss']:.4f}" if "val_loss" in m else "-", fmt_pct(m.get("val_top1")),
             f"{m['images_per_s']:,.0f}", fmt_duration(m["elapsed_s"])] for m in metrics]
    return ("<table id='epochs'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td class='num'>{c}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


def build_report(path: str | Path) -> str:
    """The HTML text of a run's report."""
    from ..engine.evaluate import top5_name, tta_note
    from .plots import plot_curves, plot_lr
    run = RunFolder(path)
    cfg, metrics, row = run.read_config(), run.read_metrics(), run_row(path)
    resolved = cfg.pop("resolved", {})
    summary = read_json(run.path / "summary.json")
    status = run.read_status()
    e = html.escape
    versions = ", ".join(f"{k} {v}" for k, v in resolved.get("versions", {}).items())
    when = " to ".join(str(status[k]) for k in ("started", "ended") if status.get(k))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>densekit run {e(row['name'])}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{e(row['name'])}</h1><p>{e(str(cfg['model']))} on {e(str(cfg['dataset']))} "
             f"<span class='status' id='status'>{e(row['status'])}</span></p>",
             f"<p class='meta' id='when'>{e(when or 'not started')}{' &middot; ' + e(versions) if versions else ''}</p>"]
    if row["reason"]:
        parts.append(f"<p id='reason'><b>Why it ended:</b> {e(str(row['reason']))}</p>")

    # headline numbers; the test figure names its test-time augmentation and the one-view figure
    one_view = {"tta": summary["test_tta"], "top1_single": summary["test_top1_single"]} \
        if "test_top1_single" in summary else {}
    headline = [("epochs", f"{row['epochs']}/{row['planned_epochs']}"), ("best val top-1", fmt_pct(row["best_val_top1"])),
                ("test top-1", fmt_pct(row["test_top1"]) + tta_note(one_view)), ("duration", fmt_duration(row["duration_s"]))]
    if "test_top5" in summary:
        headline.insert(3, (f"test {top5_name(len(summary.get('per_class') or {}) or 5)}", fmt_pct(summary["test_top5"])))
    if "params" in summary:
        headline.append(("parameters", f"{summary['params']:,}"))
    parts.append("<h2>Results</h2><table id='results'>" + "".join(
        f"<tr><th>{k}</th><td class='num'>{e(v)}</td></tr>" for k, v in headline) + "</table>")

    # curves are redrawn from metrics.jsonl, so a run trained with --no-plots still gets them
    with tempfile.TemporaryDirectory() as tmp:
        curves, lr = Path(tmp) / "curves.png", Path(tmp) / "lr.png"
        if metrics:
            plot_curves(metrics, curves)
            plot_lr(metrics, cfg, resolved.get("lr") or cfg.get("lr"), lr)
        parts.append(_figure("Loss and top-1", curves if metrics else None, "no epoch has finished yet"))
        if metrics:
            parts.append("<h2>Epochs</h2>" + _epoch_table(metrics))
            parts.append(_figure("Learning rate", lr, ""))
    plots = run.path / "plots"
    parts.append(_figure("Confusion matrix (test)", plots / "confusion.png",
                         "no confusion matrix: the run has no test split, or was trained with --no-plots"))

    per_class = summary.get("per_class") or {}
    prf = (summary.get("class_metrics") or {}).get("per_class", {})   # precision, recall, F1 (engine/metrics.py)
    if per_class:
        extra = lambda c: "".join(f"<td class='num'>{fmt_pct(prf[c][k])}</td>" for k in ("precision", "recall", "f1")) \
            if c in prf else ""  # noqa: E731
        rows = "".join(f"<tr><td>{e(str(c))}</td><td class='num'>{fmt_pct(a)}</td>"
                       f"<td><span class='bar' style='width:{200 * a:.0f}px'></span></td>{extra(c)}</tr>"
                       for c, a in per_class.items())
        heads = "<th>precision</th><th>recall</th><th>F1</th>" if prf else ""
        parts.append(f"<h2>Per-class accuracy (test)</h2><table id='per-class'><tr><th>class</th><th>accuracy</th>"
                     f"<th></th>{heads}</tr>{rows}</table>")

    for kind, title in (("samples", "Sample predictions (test)"), ("worst", "Worst-classified test images"),
                        ("worst_gradcam", "Grad-CAM of the worst-classified images")):
        parts.append(_figure(title, plots / f"{kind}.png", "not recorded (trained with --no-plots or no test split)"))

    parts.append("<h2>Settings</h2>" + _grid(settings_rows(cfg, resolved), "settings"))
    if resolved.get("command"):
        parts.append(f"<p class='meta'>command: <code>{e(resolved['command'])}</code></p>")
    parts.append(f"<p class='meta'>run folder {e(str(run.path.resolve()))}</p>")
    # Marks on <body> how many embedded figures decoded, so a headless browser can check the page.
    parts.append("<script>addEventListener('load', () => { const imgs = [...document.images]; "
                 "document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length; "
                 "document.body.dataset.images = imgs.length; });</script></body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, out: str | Path) -> Path:
    check_target(out, (".html", ".htm"))   # before the report is built
    return atomic_write(out, build_report(path), durable=False)
