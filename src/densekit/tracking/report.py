"""`densekit report`: one self-contained HTML page per run — settings, curves, confusion matrix,
per-class accuracy and sample predictions. Images are embedded as data URIs and the style is
inline, so the file can be mailed or attached to an issue and opens anywhere, offline."""
from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path

from ..engine.run import RunFolder
from ..files import atomic_write
from .runs import fmt_duration, fmt_pct, read_json, run_row

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { background: #4a90d9; height: 10px; display: inline-block; }
.status { padding: 2px 8px; border-radius: 4px; background: #eee; }
img { max-width: 100%; } .settings { column-count: 2; }
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _figure(title: str, png: Path | None, missing: str) -> str:
    if png is None or not png.is_file():
        return f"<h2>{title}</h2><p class='missing'>{html.escape(missing)}</p>"
    return f"<h2>{title}</h2><img alt='{html.escape(title)}' src='{data_uri(png)}'>"


def build_report(path: str | Path) -> str:
    """The HTML text of a run's report."""
    from .plots import plot_curves
    run = RunFolder(path)
    cfg, metrics, row = run.read_config(), run.read_metrics(), run_row(path)
    resolved = cfg.pop("resolved", {})
    summary_file = run.path / "summary.json"
    summary = read_json(summary_file)
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>densekit run {e(row['name'])}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{e(row['name'])}</h1><p>{e(str(cfg['model']))} on {e(str(cfg['dataset']))} "
             f"<span class='status' id='status'>{e(row['status'])}</span></p>"]
    if row["reason"]:
        parts.append(f"<p id='reason'><b>Why it ended:</b> {e(str(row['reason']))}</p>")

    # headline numbers
    headline = [("epochs", f"{row['epochs']}/{row['planned_epochs']}"), ("best val accuracy", fmt_pct(row["best_val_top1"])),
                ("test accuracy", fmt_pct(row["test_top1"])), ("duration", fmt_duration(row["duration_s"]))]
    if "test_top5" in summary:
        headline.insert(3, ("test top-5", fmt_pct(summary["test_top5"])))
    if "params" in summary:
        headline.append(("parameters", f"{summary['params']:,}"))
    parts.append("<h2>Results</h2><table id='results'>" + "".join(
        f"<tr><th>{k}</th><td class='num'>{e(v)}</td></tr>" for k, v in headline) + "</table>")

    # curves are redrawn from metrics.jsonl, so a run trained with --no-plots still gets them
    with tempfile.TemporaryDirectory() as tmp:
        curves = Path(tmp) / "curves.png"
        if metrics:
            plot_curves(metrics, curves)
        parts.append(_figure("Loss and accuracy", curves if metrics else None, "no epoch has finished yet"))
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

    predictions = plots / "predictions.json"
    listed = read_json(predictions)
    for kind, title in (("samples", "Sample predictions (test)"), ("worst", "Worst-classified test images")):
        parts.append(_figure(title, plots / f"{kind}.png", "not recorded (trained with --no-plots or no test split)"))
        if listed.get(kind):
            parts.append(f"<table id='{kind}'><tr><th>test item</th><th>true</th><th>predicted</th><th>confidence</th></tr>"
                         + "".join(f"<tr><td class='num'>{r['index']}</td><td>{e(r['true'])}</td><td>{e(r['pred'])}</td>"
                                   f"<td class='num'>{fmt_pct(r['prob'])}</td></tr>" for r in listed[kind]) + "</table>")

    settings = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in cfg.items())
    parts.append(f"<h2>Settings</h2><div class='settings'><table id='settings'>{settings}</table></div>")
    if resolved:
        parts.append(f"<h3>Resolved at training time</h3><pre>{e(json.dumps(resolved, indent=1))}</pre>")
    parts.append(f"<p><small>run folder {e(str(run.path.resolve()))}</small></p>")
    # Marks on <body> how many embedded figures decoded, so a headless browser can check the page.
    parts.append("<script>addEventListener('load', () => { const imgs = [...document.images]; "
                 "document.body.dataset.imagesLoaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length; "
                 "document.body.dataset.images = imgs.length; });</script></body></html>")
    return "\n".join(parts)


def write_report(path: str | Path, out: str | Path) -> Path:
    return atomic_write(out, build_report(path), durable=False)
