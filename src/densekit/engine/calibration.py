"""Calibration, abstention and out-of-distribution scores, fitted on held-out logits.

- Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar
  T > 0, logits / T, fitted by LBFGS minimising the NLL of the validation logits (the run's TTA
  logits when it tests with TTA). The argmax is unchanged, so accuracy is too.
- Expected calibration error over 15 equal-width confidence bins (Guo et al. 2017, eq. 3; Naeini
  et al. 2015), the maximum calibration error, NLL and the multi-class Brier score, before and after.
- Selective classification (Geifman & El-Yaniv 2017): the confidence threshold that keeps a
  fraction C of the validation images (``--coverage C``), accuracy at a coverage, the
  risk-coverage curve and its area (AURC).
- Out-of-distribution detection: the energy score of Liu et al. 2020 (``predictions.ood_scores``;
  max-logit, Hendrycks et al. 2022, is measured beside it), its threshold keeping 95% of the
  validation images, AUROC and FPR at 95% TPR (in-distribution positive) via scikit-learn.

The entry point is ``fit(logits, labels, coverage)``: the checkpoint's ``calibration`` dict.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DensekitError
from ..predictions import OOD_SCORE, OOD_SCORES, ood_scores, softmax

BINS = 15            # Guo et al. 2017's and most later papers' ECE bins
OOD_KEEP = 0.95      # the OOD threshold keeps this fraction of in-distribution (validation) images
T_RANGE = (0.05, 20.0)   # beyond these a fit says more about a broken model than about calibration


def fit_temperature(logits, labels) -> float:
    """The T minimising mean NLL of softmax(logits / T). Fitted on log T, so T stays positive, with
    LBFGS and a strong-Wolfe line search (the NLL is smooth in one variable: a few iterations)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss
    opt.step(closure)
    t = float(log_t.detach().exp())
    return float(min(max(t, T_RANGE[0]), T_RANGE[1])) if math.isfinite(t) else 1.0


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per equal-width confidence bin (right-closed, as (0, 1/15], ...): ``count``, ``accuracy``,
    ``confidence`` (mean); empty bins hold 0s. What the reliability diagram draws."""
    conf, correct = probs.max(1), probs.argmax(1) == labels
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    acc = np.bincount(which, weights=correct, minlength=bins) / np.maximum(count, 1)
    mean_conf = np.bincount(which, weights=conf, minlength=bins) / np.maximum(count, 1)
    return {"count": count.tolist(), "accuracy": acc.tolist(), "confidence": mean_conf.tolist()}


def metrics(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """``ece``, ``mce`` (fractions), ``nll`` (nats per image), ``brier`` (sum over classes, mean
    over images: 0 perfect, 2 worst) of class probabilities (N, K) against labels (N,)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    r = reliability(probs, labels, bins)
    count = np.array(r["count"])
    gap = np.abs(np.array(r["accuracy"]) - np.array(r["confidence"]))
    n = max(len(labels), 1)
    onehot = np.eye(probs.shape[1])[labels]
    return {"ece": float((count * gap).sum() / n), "mce": float(gap[count > 0].max(initial=0.0)),
            "nll": float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()),
            "brier": float(((probs - onehot) ** 2).sum(1).mean())}


# ---- selective classification -----------------------------------------------------------------------

def reject_threshold(confidence: np.ndarray, coverage: float) -> float:
    """The confidence at or above which the ``coverage`` most confident fraction of images lie."""
    ordered = np.sort(np.asarray(confidence))[::-1]
    keep = max(1, math.ceil(coverage * len(ordered)))
    return float(ordered[keep - 1])


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk): keeping the k most confident images, k = 1..N, the fraction kept and the
    error rate among them (Geifman & El-Yaniv 2017's curve)."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    errors = np.cumsum(~np.asarray(correct, dtype=bool)[order])
    kept = np.arange(1, len(order) + 1)
    return kept / max(len(order), 1), errors / kept


def accuracy_at(confidence: np.ndarray, correct: np.ndarray, coverage: float) -> float:
    """Accuracy on the ``coverage`` most confident fraction of images."""
    cov, risk = risk_coverage(confidence, correct)
    return float(1 - risk[max(1, math.ceil(coverage * len(cov))) - 1]) if len(cov) else float("nan")


def selective(confidence: np.ndarray, correct: np.ndarray, kept: np.ndarray | None = None) -> dict:
    """``accuracy_at_{80,90,95}`` (coverage), ``aurc``; with ``kept`` (the images not rejected) also
    the ``coverage`` and ``accepted_accuracy`` it gives."""
    cov, risk = risk_coverage(confidence, correct)
    out = {f"accuracy_at_{int(c * 100)}": accuracy_at(confidence, correct, c) for c in (0.8, 0.9, 0.95)}
    out["aurc"] = float(risk.mean()) if len(risk) else float("nan")
    if kept is not None:
        out.update(coverage=float(kept.mean()),
                   accepted_accuracy=float(np.asarray(correct)[kept].mean()) if kept.any() else float("nan"))
    return out


# ---- out-of-distribution detection ------------------------------------------------------------------

def ood_threshold(scores: np.ndarray, keep: float = OOD_KEEP) -> float:
    """The OOD score at or below which ``keep`` of these (in-distribution) images lie."""
    return float(np.quantile(np.asarray(scores, dtype=np.float64), keep, method="higher"))


def ood_detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict:
    """``auroc`` and ``fpr_at_95_tpr`` of telling in-distribution images (positive) from others
    by the OOD score (higher: more out of distribution), as Liu et al. 2020 report them."""
    from sklearn.metrics import roc_auc_score, roc_curve
    y = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    s = -np.r_[np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)]
    fpr, tpr, _ = roc_curve(y, s)
    return {"auroc": float(roc_auc_score(y, s)), "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95)]),
            "in_count": int(len(in_scores)), "out_count": int(len(out_scores))}


# ---- the whole fit ----------------------------------------------------------------------------------

def fit(logits, labels, coverage: float | None = None, source: str = "val") -> dict:
    """The checkpoint's ``calibration`` dict from held-out raw logits (N, K) and labels: temperature,
    ``reject_below`` (``coverage`` given; else None), ``ood_threshold`` and the before/after figures."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    t = fit_temperature(z, y)
    before, after = softmax(z), softmax(z / t)
    m0, m1 = metrics(before, y), metrics(after, y)
    conf, correct = after.max(1), after.argmax(1) == y
    scores = ood_scores(z)   # on the raw logits, as predictions.results computes it from graph x T
    out = {"temperature": t, "fitted_on": source, "count": int(len(y)), "bins": BINS,
           "reject_below": reject_threshold(conf, coverage) if coverage else None, "coverage": coverage,
           "ood_score": OOD_SCORE, "ood_threshold": ood_threshold(scores),
           **{f"{k}_before": v for k, v in m0.items()}, **{f"{k}_after": v for k, v in m1.items()},
           "reliability_before": reliability(before, y), "reliability_after": reliability(after, y)}
    return out


def summary_line(cal: dict) -> str:
    """One line of a fit's figures, for the training log and ``densekit calibrate``."""
    line = (f"calibration on {cal['count']:,} {cal['fitted_on']} images: temperature {cal['temperature']:.3f}, "
            f"ECE {100 * cal['ece_before']:.2f}% -> {100 * cal['ece_after']:.2f}%, "
            f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}")
    if cal.get("reject_below") is not None:
        line += f", reject below {cal['reject_below']:.3f} (keeps {100 * cal['coverage']:.0f}%)"
    return line


def of_spec(spec) -> dict | None:
    """The calibration an ``InputSpec`` carries, as ``figures`` reads it (None: never calibrated,
    which every fit marks by its OOD threshold)."""
    if spec.ood_threshold is None and spec.temperature == 1.0:
        return None
    return {"temperature": spec.temperature, "reject_below": spec.reject_below, "ood_threshold": spec.ood_threshold}


def figures(logits, labels, cal: dict | None, reject_below: float | None = None,
            reject_ood: bool = False) -> tuple[dict, dict]:
    """(``calibration``, ``selective``) figures of raw logits on a labelled split, for ``eval --json``
    and the training summary: the fit's temperature applied (1 when ``cal`` is None: uncalibrated);
    the images ``predict`` would reject (``predictions.results``: below ``reject_below``, default the
    fit's, and with ``reject_ood`` above its OOD threshold) counted out of ``coverage``."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    t = float(cal["temperature"]) if cal else 1.0
    before, after = softmax(z), softmax(z / t)
    m0, m1 = metrics(before, y), metrics(after, y)
    out = {"temperature": t, "fitted": bool(cal),
           **{f"{k}_before": v for k, v in m0.items()}, **{f"{k}_after": v for k, v in m1.items()}}
    conf, correct = after.max(1), after.argmax(1) == y
    below = (cal or {}).get("reject_below") if reject_below is None else reject_below
    kept = conf >= below if below else np.ones(len(y), dtype=bool)
    ood = reject_ood and (cal or {}).get("ood_threshold") is not None
    if ood:
        kept &= ood_scores(z) <= cal["ood_threshold"]
    sel = selective(conf, correct, kept if below or ood else None)
    if below or ood:
        sel.update(reject_below=below or None, reject_ood=bool(ood))
    cov, risk = risk_coverage(conf, correct)
    picks = np.unique(np.linspace(0, len(cov) - 1, min(21, len(cov))).astype(np.int64))
    sel["risk_coverage"] = [[float(cov[i]), float(risk[i])] for i in picks]   # 21 points of the curve
    out["reliability"] = reliability(after, y)
    return out, sel


def calibrate_run(ctx, opts, log=print) -> dict:
    """The training hook: fit on the validation split with the run's TTA, store the fit in
    ``checkpoints/best.pt`` (what every verb loads; ``last.pt`` keeps the weights that resume), and
    return it with the test split's figures for the summary; without a validation split, one line
    saying why calibration was skipped. Every rank calls it (the validation pass is collective)."""
    from . import distributed
    from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    from .evaluate import run_eval
    from .precision import memory_format
    best = ctx.run.checkpoint("best")
    if ctx.val_ds is None or not best.is_file():
        why = ("calibration skipped: the run has no validation split to fit it on (--val-split 0 on a source "
               "without one); fit it later with densekit calibrate RUN --dataset D --split S")
        log(why)
        return {"skipped": why}
    payload = load_checkpoint(best)
    if payload["data"].get("task") == "multilabel":
        why = ("calibration: a multi-label run keeps the per-label thresholds tuned on validation (no temperature "
               "is fitted for sigmoid outputs)")
        log(why)
        return {"skipped": why}
    model = model_from_checkpoint(payload).to(opts.device, memory_format=memory_format(opts.channels_last))
    val = run_eval(model, ctx.val_ds, opts, outputs=True)
    cal = fit(val["logits"].numpy(), val["labels"].numpy(), ctx.cfg.coverage, "val")
    ctx.val, ctx.calibration = val, cal
    if ctx.rank == 0:
        payload.pop("path", None)
        save_checkpoint({**payload, "calibration": cal}, best)
        log(summary_line(cal))
    distributed.barrier()
    out = {k: v for k, v in cal.items() if not k.startswith("reliability")}
    test = ctx.test
    if test is not None and "logits" in test:
        fig, sel = figures(test["logits"].numpy(), test["labels"].numpy(), cal)
        out["test"] = {**{k: v for k, v in fig.items() if k != "reliability"}, "selective": sel}
    return out


def calibrate(run_or_checkpoint, dataset: str | None = None, split: str = "val", data_dir: str | None = None,
              coverage: float | None = None, device: str = "auto", batch_size: int = 512, workers: int = 2) -> dict:
    """Refit a run's calibration without retraining (``densekit calibrate``): the temperature and
    thresholds on ``split`` of ``dataset`` (default: the run's own validation split; e.g. a folder
    from the deployment site, with the model's class names), stored in the checkpoint it was given
    (a run folder: its best.pt). ``coverage``: as train's ``--coverage`` (default: the fit's own)."""
    from .checkpoint import load_checkpoint, save_checkpoint
    from .evaluate import _label_map, _load_split, load_for_inference, run_eval
    if coverage is not None and not (isinstance(coverage, (int, float)) and 0 < coverage <= 1):
        raise DensekitError(f"--coverage {coverage!r}: give the fraction of images to keep, in (0, 1]")
    predictor, opts = load_for_inference(run_or_checkpoint, device, batch_size, None, workers)
    model, path, payload = predictor.net, predictor.path, load_checkpoint(predictor.path)
    if predictor.spec.task == "multilabel":
        raise DensekitError(f"{path} is a multi-label model: its per-label thresholds are tuned on validation "
                            "during training; densekit calibrate fits a softmax temperature (single-label runs)")
    dataset = dataset or predictor.dataset
    c, h, w = predictor.input_shape
    ds = _load_split(dataset, split, data_dir, c, h, predictor)
    if tuple(ds.shape) != (c, h, w):
        raise DensekitError(f"{dataset} {split} images are {tuple(ds.shape)} but the model takes {(c, h, w)}; "
                            "calibrate on images like the ones it was trained on")
    label_map = _label_map(ds.classes, opts.classes, f"{dataset} {split}")
    out = run_eval(model, ds, opts, outputs=True, label_map=label_map)
    if coverage is None:
        coverage = (payload.get("calibration") or {}).get("coverage")
    cal = fit(out["logits"].numpy(), out["labels"].numpy(), coverage, f"{dataset} {split}")
    payload.pop("path", None)
    save_checkpoint({**payload, "calibration": cal}, path)
    return {**cal, "checkpoint": str(path)}


def ood_report(in_logits, out_logits, cal: dict | None) -> dict:
    """``eval --ood``: AUROC and FPR at 95% TPR of the chosen OOD score on raw logits of the
    in-distribution split against the OOD set's, the other score's beside it, and the fraction of
    each that ``--reject-ood`` (the stored threshold) rejects."""
    s_in, s_out = ood_scores(in_logits), ood_scores(out_logits)
    out = {"score": OOD_SCORE, **ood_detection(s_in, s_out)}
    other = next(k for k in OOD_SCORES if k != OOD_SCORE)
    out[other] = ood_detection(ood_scores(in_logits, kind=other), ood_scores(out_logits, kind=other))
    threshold = (cal or {}).get("ood_threshold")
    if threshold is not None:
        out.update(threshold=threshold, in_rejected=float((s_in > threshold).mean()),
                   out_rejected=float((s_out > threshold).mean()))
    return out
