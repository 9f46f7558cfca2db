"""PNG plots in ``RUN/plots/``, readable without TensorBoard:

    curves.png      loss and top-1 (%), train and val, rewritten at the end of every epoch (the Keras seed's plot)
    confusion.png   the test confusion matrix (rows: true class, columns: predicted), at the end; past 50
                    classes the most-confused pairs as a table
    worst.png       the test images the model got most confidently wrong, true and predicted labels, at the end
    worst_gradcam.png  Grad-CAM of the first of them over each image (engine/explain.py), at the end
    samples.png     the first test images with their predictions (``predictions.json`` holds both lists)
    calibration.png reliability diagram before/after temperature scaling and the risk-coverage curve, on
                    the test split (engine/calibration.py), at the end of a run with a validation split

Multi-label runs get ``multilabel_plots.py``'s instead: per-label ROC and PR curves, label
frequency, and the worst and sample images with their label sets.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
matplotlib.use("Agg")   # files only; never a display, also on a desktop
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import torch  # noqa: E402

from ..engine.callbacks import Callback  # noqa: E402
from ..files import save_figure  # noqa: E402
from .predictions import image_batch  # noqa: E402

WORST = 24
GRADCAM = 8     # of the worst images, explained in the report
SAMPLES = 16


def plot_curves(metrics: list[dict], path: Path):
    epochs = [m["epoch"] for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    single = "train_top1" in metrics[0]   # else several labels per image: label accuracy, and val mAP
    for ax, train, val, title in ((ax_loss, "loss", "loss", "loss"),
                                  (ax_acc, "top1", "top1", "top-1 (%)") if single else
                                  (ax_acc, "label_acc", "map", "label accuracy (train), mAP (val), %")):
        # accuracies in percent, as every other output of densekit shows them
        scale = 1 if ax is ax_loss else 100
        ax.plot(epochs, [scale * m[f"train_{train}"] for m in metrics], "o-", label="train")
        if any(f"val_{val}" in m for m in metrics):
            ax.plot(epochs, [scale * m[f"val_{val}"] if m.get(f"val_{val}") is not None else None for m in metrics],
                    "o-", label="val")
        ax.set(xlabel="epoch", title=title, ylabel="%" if scale == 100 else "")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


MATRIX_CLASSES = 50   # beyond this a confusion matrix is unreadable: the most-confused pairs instead
CONFUSED_PAIRS = 30


def most_confused(confusion: list[list[int]], classes: list[str], k: int = CONFUSED_PAIRS) -> list[dict]:
    """The ``k`` largest off-diagonal cells: true class, predicted class, count, share of the true class."""
    m = torch.tensor(confusion, dtype=torch.float64)
    off = m.clone().fill_diagonal_(0)
    support = m.sum(1)
    counts, flat = off.flatten().topk(min(k, off.numel()))
    n = len(classes)
    return [{"true": classes[i // n], "pred": classes[i % n], "count": int(c),
             "share": float(c / support[i // n]) if support[i // n] else 0.0}
            for c, i in zip(counts.tolist(), flat.tolist()) if c > 0]


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path):
    m = torch.tensor(confusion, dtype=torch.float64)
    n = len(classes)
    if n > MATRIX_CLASSES:
        return _plot_confused_pairs(confusion, classes, int(m.sum()), path)
    rates = m / m.sum(1, keepdim=True).clamp_min(1)     # row-normalised: per-class recall on the diagonal
    size = min(4 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:   # beyond that the labels overlap; the colours still show the pattern
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"test confusion matrix ({int(m.sum()):,} images)")
    fig.tight_layout()
    return _save(fig, path)


def _plot_confused_pairs(confusion, classes, total: int, path: Path):
    pairs = most_confused(confusion, classes)
    rows = [[p["true"], p["pred"], f"{p['count']:,}", f"{100 * p['share']:.1f}%"] for p in pairs] or [["-", "-", "0", "-"]]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.22 * (len(rows) + 1)), layout="constrained")
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["true", "predicted as", "images", "of the true class"], bbox=[0, 0, 1, 1],
                     cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    ax.set_title(f"the {len(pairs)} most-confused pairs of {len(classes):,} classes ({total:,} test images)", fontsize=9)
    return _save(fig, path)


def worst_indices(logits: torch.Tensor, labels: torch.Tensor, k: int = WORST) -> list[int]:
    """Misclassified test items, most confident wrong answer first."""
    probs = logits.softmax(1)
    wrong = (logits.argmax(1) != labels).nonzero().flatten()
    confidence = probs[wrong].max(1).values
    return wrong[confidence.argsort(descending=True)[:k]].tolist()


WRONG = "#d62728"    # matplotlib's red: a wrong prediction's frame and title


def plot_predictions(images: torch.Tensor, true: list[str], pred: list[str], probs: list[float], path: Path,
                     title: str = "worst-classified test images"):
    """A grid of images titled with their true and predicted classes; wrong ones framed and titled
    in red. The constrained layout gives each row's two-line titles their own room, so they never
    run into the images above them."""
    cols = min(8, max(len(images), 1))
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 2.1 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p, q in zip(axes.flat, images, true, pred, probs):
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray" if img.shape[0] == 1 else None,
                  vmin=0, vmax=255)
        wrong = t != p
        for spine in ax.spines.values():
            spine.set(visible=wrong, color=WRONG, linewidth=3)
        ax.set_title(f"true {t}\npred {p} {100 * q:.0f}%", fontsize=7, color=WRONG if wrong else "black")
    if not len(images):
        axes[0, 0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    fig.suptitle(f"{title} (wrong in red)", fontsize=9)
    return _save(fig, path)


def plot_lr(metrics: list[dict], cfg: dict, base_lr: float | None, path: Path, commands: list[dict] = ()):
    """The learning rate over training: the schedule's curve (from the run's settings) and the rate
    each epoch ended with (metrics.jsonl). The x axis is the fraction of training, which drives
    the schedule for fixed-epoch and time-budget runs alike (engine/schedule.py). A run that
    ``--resume`` extended followed two plans, neither the final settings' curve: it gets the
    recorded rates alone, by epoch, with where each extension started (``commands``)."""
    from ..engine.schedule import lr_factor
    plans = [(c.get("epochs"), c.get("time_budget")) for c in commands]
    if len(set(plans)) > 1:
        return _plot_recorded_lr(metrics, commands, plans, path)
    budget, epochs = cfg.get("time_budget"), cfg.get("epochs") or 1
    done = [m["elapsed_s"] / budget if budget else m["epoch"] / epochs for m in metrics]
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    if base_lr:
        p = [i / 400 for i in range(401)]
        factors = [lr_factor(q, cfg.get("schedule", "constant"), cfg.get("warmup", 0.0), cfg.get("milestones", (0.5, 0.75)),
                             cfg.get("step_size", 0.3), cfg.get("gamma", 0.1)) for q in p]
        ax.plot(p, [base_lr * f for f in factors], "-", label=f"{cfg.get('schedule')} schedule")
    ax.plot(done, [m["lr"] for m in metrics], "o", label="at each epoch's end")
    ax.set(xlabel="fraction of training", ylabel="learning rate", title="learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_calibration(logits, labels, temperature: float, path: Path):
    """Left: the reliability diagram (Guo et al. 2017, fig. 1): accuracy per equal-width confidence
    bin before and after temperature scaling, the diagonal being perfect calibration. Right: the
    risk-coverage curve (Geifman & El-Yaniv 2017): the error rate among the most confident images
    kept, as the fraction kept grows."""
    import numpy as np

    from ..engine.calibration import BINS, metrics, reliability, risk_coverage
    from ..predictions import softmax
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    fig, (ax, ax_rc) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    edges = np.arange(BINS) / BINS
    for probs, name, colour, offset in ((softmax(z), "before", "#d62728", 0.0),
                                        (softmax(z / temperature), f"after (T = {temperature:.2f})", "#1f77b4", 0.5)):
        r, m = reliability(probs, y), metrics(probs, y)
        ax.bar(edges + offset / BINS, r["accuracy"], width=0.5 / BINS, align="edge", color=colour, alpha=0.8,
               label=f"{name}: ECE {100 * m['ece']:.2f}%")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence (top-1 probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"reliability diagram, {BINS} bins ({len(y):,} test images)")
    ax.legend(fontsize=8, loc="upper left")
    after = softmax(z / temperature)
    cov, risk = risk_coverage(after.max(1), after.argmax(1) == y)
    ax_rc.plot(cov, 100 * risk, "-")
    ax_rc.set(xlabel="coverage (fraction of images kept, most confident first)", ylabel="error among kept (%)",
              xlim=(0, 1), ylim=(0, None), title="risk-coverage curve")
    ax_rc.grid(alpha=0.3)
    _save(fig, path)


def _plot_recorded_lr(metrics: list[dict], commands: list[dict], plans: list, path: Path):
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    ax.plot([m["epoch"] for m in metrics], [m["lr"] for m in metrics], "o-", label="at each epoch's end (recorded)")
    for c, plan, before in zip(commands[1:], plans[1:], plans):
        if plan != before:
            what = f"--time-budget {plan[1]:g}s" if plan[1] else f"--epochs {plan[0]}"
            ax.axvline(c.get("epoch", 0), color="gray", linestyle="--", linewidth=1)
            ax.annotate(f"resumed: {what}", (c.get("epoch", 0), 1), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, va="top", ha="right", color="gray")
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate (extended by --resume: the schedule was re-planned)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> list[dict]:
    """Write and close ``fig``; returns what it shows, per axes (title, y label, each labelled
    line's points, a table's cells), so the tests can read a plot's content."""
    save_figure(fig, path)
    shown = [{"title": ax.get_title(), "ylabel": ax.get_ylabel(),
              "lines": {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
                        if not line.get_label().startswith("_")},
              "table": [[cell.get_text().get_text() for (r, _), cell in sorted(t.get_celld().items()) if r == row]
                        for t in ax.tables for row in sorted({r for r, _ in t.get_celld()})]}
             for ax in fig.axes]
    plt.close(fig)
    return shown


class PlotsCallback(Callback):
    def on_epoch_end(self, ctx, record):
        plot_curves(ctx.run.read_metrics(), ctx.run.path / "plots" / "curves.png")

    def on_train_end(self, ctx, summary):
        test = ctx.test
        if test is None:
            return
        plots = ctx.run.path / "plots"
        if "per_label" in test:
            from .multilabel_plots import plot_multilabel
            return plot_multilabel(ctx, test, plots)
        plot_confusion(test["confusion"], ctx.classes, plots / "confusion.png")
        cls, labels = ctx.classes, test["labels"]
        probs = test["logits"].softmax(1)
        listed = {}
        for kind, picks, title in (("worst", worst_indices(test["logits"], labels), "worst-classified test images"),
                                   ("samples", list(range(min(SAMPLES, len(labels)))), "sample test predictions")):
            rows = [{"index": i, "true": cls[labels[i]], "pred": cls[int(probs[i].argmax())],
                     "prob": float(probs[i].max())} for i in picks]
            plot_predictions(image_batch(ctx.test_ds, picks), [r["true"] for r in rows], [r["pred"] for r in rows],
                             [r["prob"] for r in rows], plots / f"{kind}.png", title)
            listed[kind] = rows
        # The report lists these without re-running the model.
        ctx.run.write_json("plots/predictions.json", listed)
        if ctx.calibration:
            plot_calibration(test["logits"].numpy(), labels.numpy(), ctx.calibration["temperature"],
                             plots / "calibration.png")
        worst = listed["worst"][:GRADCAM]
        if worst:
            plot_gradcam(ctx.run.path, image_batch(ctx.test_ds, [r["index"] for r in worst]), worst,
                         plots / "worst_gradcam.png")


def plot_gradcam(run_dir: Path, images: torch.Tensor, rows: list[dict], path: Path):
    """The worst-classified images with Grad-CAM of the wrong class they were given over them: where the
    model looked when it erred (``engine/explain.py``; the run's best checkpoint, as the test)."""
    from ..engine.explain import explain, overlay
    results = explain(run_dir, list(images), method="gradcam", top_k=1)
    cols = min(8, len(results))
    rows_n = -(-len(results) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(1.6 * cols, 2.0 * rows_n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r, row in zip(axes.flat, results, rows):
        ax.imshow(overlay(r["image"], r["heatmap"]))
        ax.set_title(f"true {row['true']}\npred {r['explained']}", fontsize=7, color="#c62828")
    fig.suptitle("Grad-CAM of the worst-classified test images (where the model looked for its wrong answer)",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
