"""Calibration, abstention and out-of-distribution scores (engine/calibration.py, predictions.results)
on a tiny DenseNet trained on scikit-learn's 8x8 digits: real logits, a few seconds each."""
import json

import numpy as np
import pytest

import densekit
from conftest import TINY
from densekit.cli import main
from densekit.engine import calibration as C
from densekit.engine.checkpoint import load_checkpoint, save_checkpoint
from densekit.errors import DensekitError
from densekit.predictions import check_abstention, ood_scores, results, softmax
from densekit.spec import InputSpec


def tiny(out, name, **kw):
    base = dict(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=3, batch_size=32, lr=0.1,
                val_split=200, out=str(out), name=name, workers=0, tensorboard=False, plots=False)
    return densekit.TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run calibrated at the end of training, with --coverage 0.9."""
    return densekit.train(tiny(tmp_path_factory.mktemp("cal"), "cal", epochs=6, coverage=0.9), verbose=False)


def logits_of(run_dir, split):
    from densekit.engine.evaluate import _load_split, load_for_inference, run_eval
    predictor, opts = load_for_inference(run_dir, "cpu")
    ds = _load_split("digits", split, None, 1, 8, predictor)
    out = run_eval(predictor.net, ds, opts, outputs=True)
    return out["logits"].numpy().astype(np.float64), out["labels"].numpy()


def overconfident(run_dir, path, factor=4.0):
    """The run's best checkpoint with its classifier scaled by ``factor``: the same argmax, logits x
    ``factor``, a deliberately over-confident model (as Guo et al. 2017 find deep nets are)."""
    payload = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    for key in ("state_dict", "ema_state_dict"):
        if payload.get(key):
            payload[key] = {k: v * factor if k.startswith("classifier.") else v for k, v in payload[key].items()}
    for key in ("path", "calibration"):
        payload.pop(key, None)
    return save_checkpoint(payload, path)


def test_training_fits_the_temperature_on_validation_and_stores_it_in_the_checkpoint(run):
    cal = run.summary["calibration"]
    stored = load_checkpoint(run.dir / "checkpoints" / "best.pt")["calibration"]
    assert stored["temperature"] == cal["temperature"] > 0 and stored["fitted_on"] == "val"
    assert stored["count"] == 200 and stored["nll_after"] <= stored["nll_before"] + 1e-9
    spec = InputSpec.from_checkpoint(load_checkpoint(run.dir / "checkpoints" / "best.pt"))
    assert (spec.temperature, spec.reject_below, spec.ood_threshold) == \
        (stored["temperature"], stored["reject_below"], stored["ood_threshold"])
    # --coverage 0.9 keeps 90% of the validation images it was chosen on
    val_logits, _ = logits_of(run.dir, "val")
    kept = softmax(val_logits / spec.temperature).max(1) >= spec.reject_below
    assert kept.mean() == pytest.approx(0.9, abs=0.01)
    assert set(cal["test"]["selective"]) >= {"accuracy_at_80", "accuracy_at_90", "accuracy_at_95", "coverage"}


def test_ece_falls_on_an_overconfident_model_and_accuracy_is_unchanged(run, tmp_path, capsys):
    # x16: a well-trained model's ECE is bounded by its error rate, so only a strong factor makes
    # the over-confidence clearly measurable on 360 images (the fitted model is the same for any factor)
    hot = overconfident(run.dir, tmp_path / "hot.pt", factor=16.0)
    assert main(["calibrate", str(hot), "--dataset", "digits", "--split", "val", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["temperature"] > 4                        # it undoes much of the x16
    assert fit["ece_after"] < fit["ece_before"] and fit["nll_after"] < fit["nll_before"]
    assert main(["eval", str(hot), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    c = m["calibration"]
    assert c["fitted"] and c["ece_before"] > 0.03
    # on the 360 held-out test images (an ECE there is +-2 points of sampling noise; the issue's
    # goal, a third, is measured on 10,000 Fashion-MNIST images in docs/calibration.md)
    assert c["ece_after"] <= 0.6 * c["ece_before"] and c["nll_after"] < c["nll_before"]
    # dividing by a positive temperature keeps every argmax: the same accuracy as the model before
    base = densekit.evaluate(run.dir, device="cpu")
    assert (m["top1"], m["per_class"]) == (base["top1"], base["per_class"])
    logits, _ = logits_of(run.dir, "test")
    assert (softmax(logits / c["temperature"]).argmax(1) == logits.argmax(1)).all()


def test_a_checkpoint_from_before_calibration_still_loads_and_reads_as_uncalibrated(run, tmp_path):
    payload = load_checkpoint(run.dir / "checkpoints" / "best.pt")
    payload.pop("path")
    payload.pop("calibration")
    old = save_checkpoint(payload, tmp_path / "old.pt")
    m = densekit.evaluate(old, device="cpu")
    assert m["calibration"]["fitted"] is False and m["calibration"]["temperature"] == 1.0
    assert m["calibration"]["ece_before"] == m["calibration"]["ece_after"]
    assert InputSpec.from_checkpoint(load_checkpoint(old)).temperature == 1.0


def test_a_damaged_calibration_is_refused_in_one_line(run, tmp_path):
    payload = load_checkpoint(run.dir / "checkpoints" / "best.pt")
    payload.pop("path")
    payload["calibration"] = {**payload["calibration"], "temperature": -1.0}
    bad = save_checkpoint(payload, tmp_path / "bad.pt")
    with pytest.raises(DensekitError, match="calibration.temperature must be a positive number"):
        load_checkpoint(bad)


def test_rejections_are_explicit_with_the_top_k_still_listed(run):
    payload = load_checkpoint(run.dir / "checkpoints" / "best.pt")
    spec = InputSpec.from_checkpoint(payload)
    raw, labels = logits_of(run.dir, "test")
    graph = (raw / spec.temperature).astype(np.float32)    # what the exported graph outputs
    rows = results(graph, spec, k=3)
    low = [r for r in rows if r["label"] is None]
    assert low and all(r["reason"] == "low_confidence" and r["confidence"] < spec.reject_below for r in low)
    assert all(len(r["top_k"]) == 3 and r["top_k"][0]["prob"] == r["confidence"] for r in rows)
    kept = [r for r in rows if r["label"] is not None]
    assert all(r["label"] == r["top_k"][0]["label"] and "reason" not in r for r in kept)
    # the OOD score is computed on the raw logits: graph x temperature
    assert [r["ood_score"] for r in rows] == pytest.approx(ood_scores(raw).tolist(), abs=1e-4)
    nothing = results(graph, spec, k=3, reject_below=0)
    assert all(r["label"] is not None for r in nothing)
    ood = results(graph, spec, k=3, reject_below=0, reject_ood=True)
    out = [r for r in ood if r["label"] is None]
    assert out and all(r["reason"] == "out_of_distribution" and r["ood_score"] > spec.ood_threshold for r in out)
    assert len(out) / len(ood) < 0.2                      # the threshold keeps 95% of validation images
    with pytest.raises(DensekitError, match="--reject-ood: this model has no out-of-distribution threshold"):
        check_abstention(spec.replace(ood_threshold=None), reject_ood=True)
    with pytest.raises(DensekitError, match="--reject-below 1.5"):
        check_abstention(spec, reject_below=1.5)


def test_eval_reports_selective_accuracy_and_ood_detection(run, capsys):
    assert main(["eval", str(run.dir), "--reject-below", "0.5", "--reject-ood", "--ood", "synthetic:n=300,size=8,channels=1"]) == 0
    text = capsys.readouterr().out
    assert "calibration: temperature" in text and "selective: accuracy at 95% coverage" in text
    assert "ood vs synthetic:n=300,size=8,channels=1: energy AUROC" in text
    m = densekit.evaluate(run.dir, device="cpu", reject_below=0.5, ood="synthetic:n=300,size=8,channels=1")
    s, o = m["selective"], m["ood"]
    assert s["reject_below"] == 0.5 and 0 < s["coverage"] <= 1 and s["accepted_accuracy"] >= m["top1"]
    assert s["accuracy_at_80"] >= s["accuracy_at_95"] - 1e-9
    assert 0 <= o["auroc"] <= 1 and 0 <= o["fpr_at_95_tpr"] <= 1 and o["out_count"] == 60
    assert o["auroc"] > 0.6                              # generated patterns are no digits
    assert "max_logit" in o and 0 <= o["in_rejected"] <= 0.2


def test_no_validation_split_says_calibration_was_skipped(tmp_path, capsys):
    trained = densekit.train(tiny(tmp_path, "noval", val_split=0, epochs=1), verbose=True)
    assert "calibration skipped: the run has no validation split" in capsys.readouterr().out
    assert "skipped" in trained.summary["calibration"]
    assert "calibration" not in load_checkpoint(trained.dir / "checkpoints" / "last.pt")
    with pytest.raises(DensekitError, match="--coverage 0.9: this run has no validation split"):
        densekit.train(tiny(tmp_path, "noval2", val_split=0, coverage=0.9), verbose=False)


def test_metrics_follow_their_definitions():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    labels = np.array([0, 1, 1, 0])
    m = C.metrics(probs, labels)
    # bins: 0.9 -> (0.867, 0.933], 0.6 -> (0.533, 0.6], 0.7 -> (0.667, 0.733], 0.8 -> (0.733, 0.8]
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)
    assert m["mce"] == pytest.approx(0.6)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert m["brier"] == pytest.approx(np.mean([0.02, 0.72, 0.18, 0.08]))
    cov, risk = C.risk_coverage(probs.max(1), probs.argmax(1) == labels)
    assert cov.tolist() == [0.25, 0.5, 0.75, 1.0] and risk.tolist() == pytest.approx([0, 0, 0, 0.25])
    assert C.reject_threshold(probs.max(1), 0.5) == 0.8
    d = C.ood_detection(np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0]))
    assert d["auroc"] == 1.0 and d["fpr_at_95_tpr"] == 0.0


def test_temperature_fit_recovers_the_scale_of_scaled_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 5)) * 2
    y = np.array([rng.choice(5, p=p) for p in softmax(z)])    # labels drawn from softmax(z): T = 1 is right
    assert C.fit_temperature(z * 4, y) == pytest.approx(4, rel=0.15)


def test_every_route_gives_the_same_calibrated_probabilities_and_rejections(run, tmp_path, capsys):
    """API, CLI, the server (counting its rejections by reason) and the ONNX runtime, whose graph
    divides by the temperature and whose metadata carries the thresholds."""
    import warnings

    from PIL import Image
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    from densekit.serve import create_app
    ds = densekit.load_dataset("digits", "test")
    images = []
    for i in range(24):
        images.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(ds[i][0][0].numpy(), "L").save(images[-1])
    onnx_path = densekit.export(run.dir, "onnx", dynamic_batch=True, out=tmp_path / "m.onnx", check_limit=100)["path"]
    cal, spec = run.summary["calibration"], densekit.load_predictor(onnx_path).spec
    assert (spec.temperature, spec.reject_below, spec.ood_threshold) == \
        (cal["temperature"], cal["reject_below"], cal["ood_threshold"])      # in the file's metadata
    below = 0.95          # high enough that some of these images are rejected
    api = densekit.predict(run.dir, images, top_k=3, reject_below=below, reject_ood=True)
    assert main(["predict", str(run.dir), *map(str, images), "--top-k", "3", "--json", "--reject-below", str(below),
                 "--reject-ood"]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    onnx = densekit.predict(onnx_path, images, top_k=3, reject_below=below, reject_ood=True)
    from densekit.engine.infer import TorchPredictor      # float32, as the exported graph computes
    fp32 = TorchPredictor(run.dir, precision="fp32").predict(images, top_k=3, reject_below=below, reject_ood=True)
    app = create_app(run.dir, max_batch_size=len(images), max_delay_ms=1000, reject_below=below, reject_ood=True)
    with TestClient(app) as client:
        res = client.post("/v1/predict", params={"top_k": 3},
                          files=[("file", (p.name, p.read_bytes(), "image/png")) for p in images])
        metrics = client.get("/metrics").text
    server = res.json()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "file"} for r in rows]  # noqa: E731
    assert strip(api) == strip(cli) == strip(server)             # one code path: to the last bit
    rejected = [r for r in api if r["label"] is None]
    assert rejected and all(r["reason"] in ("low_confidence", "out_of_distribution") and len(r["top_k"]) == 3
                            for r in rejected)
    for a, o in zip(fp32, onnx):                                  # another runtime: to float tolerance
        assert a["label"] == o["label"] and a.get("reason") == o.get("reason")
        assert a["confidence"] == pytest.approx(o["confidence"], abs=1e-4)
        assert a["ood_score"] == pytest.approx(o["ood_score"], abs=1e-3)
    for reason in ("low_confidence", "out_of_distribution"):
        n = sum(r.get("reason") == reason for r in api)
        assert f'densekit_rejections_total{{reason="{reason}"}} {float(n)}' in metrics
