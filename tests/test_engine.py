"""Training, checkpoints and resume on scikit-learn's 8x8 digits (real data, seconds per run)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import densekit
from conftest import TINY, StopAfter
from densekit.engine.checkpoint import load_checkpoint, model_from_checkpoint



def tiny_config(out, name, **kw):
    base = dict(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=3, batch_size=32,
                lr=0.1, val_split=200, out=str(out), name=name, workers=0, tensorboard=False, plots=False)
    return densekit.TrainConfig(**{**base, **kw})


def test_training_on_digits_learns_and_fills_the_run_folder(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "learn", epochs=6), verbose=False)
    assert run.summary["test_top1"] > 0.8          # chance is 0.1
    assert run.summary["test_count"] == 360
    for f in ["config.yaml", "metrics.jsonl", "status.json", "summary.json",
              "checkpoints/last.pt", "checkpoints/best.pt"]:
        assert (run.dir / f).is_file(), f
    lines = (run.dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run.dir / "status.json").read_text())["status"] == "finished"
    cfg = densekit.engine.RunFolder(run.dir).read_config()
    assert cfg["resolved"]["data"]["classes"] == [str(i) for i in range(10)]
    assert len(cfg["resolved"]["data"]["mean"]) == 1


def test_checkpoint_round_trip_gives_identical_logits(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "rt", epochs=1), verbose=False)
    payload = load_checkpoint(run.dir / "checkpoints" / "last.pt")
    assert payload["format"] == "densekit-checkpoint" and payload["kind"] == "training"
    a, b = model_from_checkpoint(payload).eval(), model_from_checkpoint(load_checkpoint(run.dir / "checkpoints" / "last.pt")).eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    # and the checkpoint is loadable by plain torch with weights_only=True
    assert "state_dict" in torch.load(run.dir / "checkpoints" / "last.pt", weights_only=True)


def assert_same_metrics(got, expected):
    keep = ("epoch", "global_step", "lr", "train_loss", "train_top1", "val_loss", "val_top1")
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert {k: g[k] for k in keep} == pytest.approx({k: e[k] for k in keep}, rel=1e-6)


def test_resume_continues_at_the_right_epoch_with_identical_metrics(runs_dir):
    full = densekit.train(tiny_config(runs_dir, "full", epochs=4), verbose=False)
    cfg = tiny_config(runs_dir, "cut", epochs=4)
    stopped = densekit.train(cfg, callbacks=[StopAfter(2)], verbose=False)
    assert len(stopped.metrics) == 2
    assert json.loads((stopped.dir / "status.json").read_text())["status"] == "stopped"
    resumed = densekit.train(cfg, resume=stopped.dir, verbose=False)
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3, 4]
    assert_same_metrics(resumed.metrics, full.metrics)
    assert resumed.summary["test_top1"] == pytest.approx(full.summary["test_top1"])


def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint(runs_dir, tmp_path):
    cfg = tiny_config(runs_dir, "killed", epochs=3, checkpoint_every=0.0)
    script = tmp_path / "train.py"
    script.write_text(f"import densekit\ndensekit.train(densekit.TrainConfig(**{cfg.to_dict()!r}), verbose=False)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = runs_dir / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:   # wait until a checkpoint from inside epoch 2 exists
            if last.exists():
                try:
                    p = load_checkpoint(last)["progress"]
                    if p["epoch"] == 1 and p["step"] > 3:
                        break
                except densekit.DensekitError:
                    pass                 # caught between write and rename: not possible, but harmless
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    saved = load_checkpoint(last)["progress"]
    assert saved["epoch"] >= 1 and proc.returncode == -signal.SIGKILL
    resumed = densekit.train(cfg, resume=runs_dir / "killed", verbose=False)
    reference = densekit.train(cfg.replace(name="reference", checkpoint_every=300.0), verbose=False)
    assert_same_metrics(resumed.metrics, reference.metrics)


def test_diverging_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(runs_dir):
    # The TF-slim seed's setting: RMSProp at lr 0.1. Caught within the first epoch.
    cfg = tiny_config(runs_dir, "diverge", optimizer="rmsprop", lr=0.1, momentum=0.0, epochs=2,
                      schedule="constant", wd_exclude_norm_bias=False, weight_decay=0.0)
    with pytest.raises(densekit.DensekitError, match="diverged .* lower the learning rate"):
        densekit.train(cfg, verbose=False)
    status = json.loads((runs_dir / "diverge" / "status.json").read_text())
    assert status["status"] == "diverged"


def test_evaluate_and_predict_api_agree_with_training(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "api", epochs=3), verbose=False)
    m = densekit.evaluate(run.dir)
    assert m["top1"] == pytest.approx(run.summary["test_top1"])
    assert m["count"] == 360 and set(m["per_class"]) == {str(i) for i in range(10)}
    ds = densekit.load_dataset("digits", "test")
    preds = densekit.predict(run.dir, [ds[i][0] for i in range(len(ds))], top_k=3)
    assert all(len(p["top_k"]) == 3 for p in preds)
    assert all(sum(g["prob"] for g in p["top_k"]) <= 1 + 1e-5 for p in preds)
    assert all(p["top_k"][0]["prob"] >= p["top_k"][1]["prob"] for p in preds)
    # predict applies the stored normalisation: its accuracy is exactly evaluate's
    hits = sum(p["top_k"][0]["index"] == ds[i][1] for i, p in enumerate(preds))
    assert hits / len(ds) == pytest.approx(m["top1"])


def test_time_budget_anneals_the_schedule_and_stops_on_time(runs_dir):
    cfg = tiny_config(runs_dir, "budget", time_budget=4.0, epochs=1)   # epochs are ignored under a budget
    run = densekit.train(cfg, verbose=False)
    assert run.summary["time_budget_s"] == 4.0
    assert 4.0 <= run.summary["duration_s"] < 4.0 + 3.0   # the last step and epoch-end evaluation overrun a little
    assert len(run.metrics) > 1                            # more than the one epoch the config names
    assert run.metrics[-1]["lr"] < 0.01 * cfg.lr            # one-cycle reached its end with the budget
    assert run.summary["test_top1"] > 0.3


def test_compiled_training_reports_its_compile_time_and_saves_plain_weights(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "compiled", epochs=2, compile=True), verbose=False)
    assert run.summary["compile_s"] > 0
    assert run.summary["test_top1"] > 0.3
    payload = load_checkpoint(run.dir / "checkpoints" / "best.pt")
    assert not any(k.startswith("_orig_mod.") for k in payload["state_dict"])   # loads without torch.compile
    model_from_checkpoint(payload)


def test_ema_weights_are_evaluated_saved_and_good_on_a_short_run(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "ema", epochs=6, ema=0.999), verbose=False)
    payload = load_checkpoint(run.dir / "checkpoints" / "best.pt")
    assert payload["ema_state_dict"] is not None
    assert run.summary["test_top1"] > 0.8   # a warmed-up decay: no random-init weights left in the average


def test_a_model_arg_of_none_removes_the_bottleneck():
    from densekit.cli.train import _value
    plain = densekit.create_model("densenet-bc-40-k12", bn_size=_value("None"))
    assert not hasattr(plain.features.denseblock1.denselayer1, "conv2")
    assert densekit.create_model("densenet-bc-40-k12", num_classes=None).classifier.out_features == 10


def test_flip_tta_is_applied_by_the_final_test_eval_and_predict_and_can_be_turned_off(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "tta", epochs=3, augment="flip"), verbose=False)   # tta "auto"
    s = run.summary
    assert s["test_tta"] == "flip" and 0.5 < s["test_top1_single"] <= 1 and 0.5 < s["test_top1"] <= 1
    assert load_checkpoint(run.dir / "checkpoints" / "best.pt")["data"]["tta"] == "flip"
    m = densekit.evaluate(run.dir)                      # the run's own TTA by default
    assert m["tta"] == "flip" and m["top1"] == pytest.approx(s["test_top1"])
    plain = densekit.evaluate(run.dir, tta="none")
    assert "tta" not in plain and plain["top1"] == pytest.approx(s["test_top1_single"])
    # Averaging an image with its mirror makes the prediction mirror-invariant; one view is not.
    ds = densekit.load_dataset("digits", "test")
    images = [ds[i][0] for i in range(64)]
    mirrored = [im.flip(2) for im in images]

    def probs(imgs, tta):
        return torch.tensor([[g["prob"] for g in sorted(p["top_k"], key=lambda g: g["index"])]
                             for p in densekit.predict(run.dir, imgs, top_k=10, tta=tta)])
    assert torch.allclose(probs(images, None), probs(mirrored, None), atol=1e-5)
    assert not torch.allclose(probs(images, "none"), probs(mirrored, "none"), atol=1e-3)
    # and predict's top-1 over the whole split is evaluate's
    preds = densekit.predict(run.dir, [ds[i][0] for i in range(len(ds))], top_k=1)
    assert sum(p["top_k"][0]["index"] == ds[i][1] for i, p in enumerate(preds)) / len(ds) == pytest.approx(m["top1"])


def test_digits_are_not_mirrored_at_test_time_by_default(runs_dir):
    run = densekit.train(tiny_config(runs_dir, "notta", epochs=1), verbose=False)   # digits: crop, no flip
    assert run.summary["test_tta"] == "none" and "test_top1_single" not in run.summary
    with pytest.raises(densekit.DensekitError, match="unknown test-time augmentation 'rotate'"):
        densekit.evaluate(run.dir, tta="rotate")
    with pytest.raises(densekit.DensekitError, match="tta 'rotate': choose auto, none or flip"):
        densekit.train(tiny_config(runs_dir, "badtta", tta="rotate"), verbose=False)
