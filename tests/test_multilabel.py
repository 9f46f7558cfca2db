"""Several labels per image: training, resume, thresholds and metrics on digits with four labels."""
import math

import numpy as np
import pytest
import torch

import densekit
from densekit.engine.checkpoint import load_checkpoint

from conftest import MULTILABEL_CLASSES, TINY, StopAfter


def ml_config(out, name, **kw):
    base = dict(model="densenet-bc-40-k12", model_args=TINY, dataset="digits-multilabel", epochs=3, batch_size=32,
                lr=0.1, val_split=300, out=str(out), name=name, workers=0, tensorboard=False, plots=False,
                label_smoothing=0.0)
    return densekit.TrainConfig(**{**base, **kw})


def test_multilabel_training_learns_each_label_and_stores_thresholds(runs_dir):
    run = densekit.train(ml_config(runs_dir, "ml", epochs=5, plots=True, tensorboard=True), verbose=False)
    s = run.summary
    assert s["test_map"] > 0.9 and s["test_auroc"] > 0.9      # chance: mAP ~ the positive rate, AUROC 0.5
    assert s["test_count"] == 360 and s["test_thresholds"] == "tuned on validation"
    assert set(s["per_label"]) == set(MULTILABEL_CLASSES)
    payload = load_checkpoint(run.dir / "checkpoints" / "best.pt")
    assert payload["data"]["task"] == "multilabel"
    assert payload["config"]["best_metric"] == "val_map"
    t = payload["calibration"]["thresholds"]
    assert len(t) == 4 and all(0 < v < 1 for v in t)
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3, 4, 5] and "val_map" in run.metrics[0]
    assert "test mAP" in run.result_line()
    # densekit eval: the same figures at the same stored thresholds
    m = densekit.evaluate(run.dir)
    assert m["map"] == pytest.approx(s["test_map"]) and m["exact_match"] == pytest.approx(s["test_exact_match"])
    assert m["per_label"]["even"]["threshold"] == pytest.approx(t[0])
    # the plots and the report of several labels per image
    for name in ("roc", "pr", "labels", "worst", "samples", "curves"):
        assert (run.dir / "plots" / f"{name}.png").is_file(), name
    from densekit.tracking.report import build_report
    page = build_report(run.dir)
    assert "id='per-label'" in page and "test mAP" in page


def test_a_stopped_multilabel_run_resumes_bit_for_bit(runs_dir):
    cfg = ml_config(runs_dir, "cut", epochs=3, augment="mixup", loss="asl", pos_weight="auto", ema=0.9)
    full = densekit.train(cfg.replace(name="full"), verbose=False)
    stopped = densekit.train(cfg, callbacks=[StopAfter(1)], verbose=False)
    resumed = densekit.train(cfg, resume=stopped.dir, verbose=False)
    timing = ("images_per_s", "data_time_s", "compute_time_s", "elapsed_s")
    assert [{k: v for k, v in m.items() if k not in timing} for m in resumed.metrics] == \
        [{k: v for k, v in m.items() if k not in timing} for m in full.metrics]
    drop = ("run_dir", "duration_s", "train_images_per_s", "peak_memory_mb")
    assert {k: v for k, v in resumed.summary.items() if k not in drop} == \
        {k: v for k, v in full.summary.items() if k not in drop}
    a, b = (load_checkpoint(r.dir / "checkpoints" / "last.pt") for r in (full, resumed))
    assert a["calibration"] == b["calibration"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_settings_of_the_other_task_are_refused_before_training(runs_dir):
    with pytest.raises(densekit.DensekitError, match="--task 'multilabel': the dataset has single-label labels"):
        densekit.train(ml_config(runs_dir, "a", dataset="digits", task="multilabel"), verbose=False)
    with pytest.raises(densekit.DensekitError, match="--pos-weight 'auto': applies to multi-label data only"):
        densekit.train(ml_config(runs_dir, "b", dataset="digits", pos_weight="auto"), verbose=False)
    with pytest.raises(densekit.DensekitError, match="--class-weights 'auto'.* use --pos-weight auto"):
        densekit.train(ml_config(runs_dir, "c", class_weights="auto"), verbose=False)
    with pytest.raises(densekit.DensekitError, match="--best-metric 'val_top5': needs one label per image"):
        densekit.train(ml_config(runs_dir, "d", best_metric="val_top5"), verbose=False)


# -- the pieces, against values worked out by hand ------------------------------------------------------
NAN = float("nan")
TRUE = np.array([[1, 0, 1], [0, 1, NAN], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
PROB = np.array([[0.9, 0.2, 0.6], [0.4, 0.7, 0.9], [0.3, 0.6, 0.4], [0.1, 0.8, 0.7]], dtype=np.float32)


def test_multilabel_metrics_match_hand_computed_values():
    m = densekit.engine.metrics.multilabel_metrics(PROB, TRUE, ["a", "b", "c"])
    a, b, c = (m["per_label"][k] for k in "abc")
    # a: positives score 0.9, 0.3 against negatives 0.4, 0.1: 3 of 4 pairs ordered -> AUROC 0.75;
    # ranked 0.9+ 0.4- 0.3+ 0.1-: AP = (1/1 + 2/3) / 2
    assert a["auroc"] == pytest.approx(0.75) and a["ap"] == pytest.approx(5 / 6)
    # b: positives 0.7, 0.6 against 0.2, 0.8 -> 2 of 4; ranked 0.8- 0.7+ 0.6+ 0.2-: AP = (1/2 + 2/3) / 2
    assert b["auroc"] == pytest.approx(0.5) and b["ap"] == pytest.approx(7 / 12)
    # c (the NaN row left out): positives 0.6, 0.7 against 0.4 -> AUROC 1, AP 1
    assert c["auroc"] == pytest.approx(1.0) and c["ap"] == pytest.approx(1.0) and c["known"] == 3
    assert m["map"] == pytest.approx((5 / 6 + 7 / 12 + 1) / 3)
    assert m["auroc"] == pytest.approx((0.75 + 0.5 + 1) / 3)
    # at 0.5: a predicts 1,0,0,0 (1 TP, 1 FN); b predicts 0,1,1,1 (2 TP, 1 FP); c 1,(1),0,1 (2 TP)
    assert a["f1"] == pytest.approx(2 / 3) and b["f1"] == pytest.approx(0.8) and c["f1"] == pytest.approx(1.0)
    assert m["micro_f1"] == pytest.approx(2 * 5 / (2 * 5 + 1 + 1))     # 5 TP, 1 FP, 1 FN
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert m["hamming_loss"] == pytest.approx(2 / 11)                   # 2 wrong of 11 known entries
    assert m["exact_match"] == pytest.approx(2 / 4)                     # rows 1 and 2 (its NaN ignored)


def test_thresholds_maximise_f1_on_validation_and_sit_between_scores():
    t = densekit.engine.metrics.tune_thresholds(PROB, TRUE)
    # a: keeping 0.9 and 0.3 positive (F1 0.8) beats 0.9 alone (0.67): the cut falls between 0.3 and 0.1
    assert t[0] == pytest.approx(0.2)
    # c: 0.6 and 0.7 positive, 0.4 negative: between 0.6 and 0.4
    assert t[2] == pytest.approx(0.5)
    m = densekit.engine.metrics.multilabel_metrics(PROB, TRUE, ["a", "b", "c"], thresholds=t)
    assert m["per_label"]["a"]["f1"] == pytest.approx(0.8) and m["per_label"]["c"]["f1"] == 1.0
    # a label without a known positive keeps 0.5
    assert densekit.engine.metrics.tune_thresholds(PROB[:, :1], np.zeros((4, 1), np.float32)) == [0.5]


def test_the_losses_ignore_unknown_entries_and_asl_generalises_bce():
    from densekit.engine.losses import asymmetric_loss, multilabel_loss
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 1.5, -2.0]])
    target = torch.tensor([[1.0, 0.0, NAN], [0.0, 1.0, 1.0]])
    known = ~target.isnan()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], target[known])
    assert multilabel_loss(logits, target) == pytest.approx(bce.item())
    # gamma 0 and no clip: ASL is BCE; the defaults shrink easy negatives' share
    plain = asymmetric_loss(logits, target.nan_to_num(), gamma_pos=0, gamma_neg=0, clip=0)
    assert torch.allclose(plain, torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target.nan_to_num(), reduction="none"))
    easy_negative = torch.tensor([[-3.0]]), torch.tensor([[0.0]])
    assert asymmetric_loss(*easy_negative).item() == 0.0     # p = 0.047 < the 0.05 clip: dropped
    assert math.isfinite(multilabel_loss(logits, target, "asl", pos_weight=torch.tensor([1.0, 2.0, 3.0])).item())


def test_mixup_and_cutmix_mix_multi_hot_rows_and_keep_unknowns_unknown():
    x = torch.randn(6, 1, 8, 8)
    y = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [NAN, 1], [1, 0]], dtype=torch.float32)
    for preset in ("mixup", "cutmix"):
        _, mixed = densekit.data.Augment(preset, seed=3, num_classes=2)(x, y)
        assert mixed.shape == (6, 2)
        known = ~mixed.isnan()
        assert ((mixed[known] >= 0) & (mixed[known] <= 1)).all()
        assert mixed[4, 0].isnan()           # unknown in the image itself stays unknown



def test_results_of_a_multilabel_spec_are_label_sets_at_the_tuned_thresholds():
    from densekit.predictions import results
    from densekit.spec import InputSpec
    spec = InputSpec(("cat", "dog", "car"), 1, (8, 8), (0.5,), (0.25,), task="multilabel", thresholds=(0.5, 0.2, 0.9))
    logits = np.log(np.array([[0.6, 0.3, 0.8], [0.1, 0.1, 0.95]]) / (1 - np.array([[0.6, 0.3, 0.8], [0.1, 0.1, 0.95]])))
    a, b = results(logits, spec, k=2)
    assert a["labels"] == ["cat", "dog"] and b["labels"] == ["car"]      # car 0.8 < 0.9; dog 0.3 >= 0.2
    assert a["scores"] == pytest.approx({"cat": 0.6, "dog": 0.3, "car": 0.8})
    assert [r["label"] for r in a["top_k"]] == ["car", "cat"]
    single = InputSpec(("cat", "dog", "car"), 1, (8, 8), (0.5,), (0.25,))
    assert "labels" not in results(logits, single)[0] and "top_k" in results(logits, single)[0]   # single-label schema


def test_exports_carry_task_and_thresholds_and_predict_the_same_label_sets(runs_dir, tmp_path):
    from densekit.workflows.export import read_metadata
    run = densekit.train(ml_config(runs_dir, "ship", epochs=1, augment="flip"), verbose=False)   # flip TTA in graphs
    thresholds = load_checkpoint(run.dir / "checkpoints" / "best.pt")["calibration"]["thresholds"]
    ds = densekit.load_dataset("digits-multilabel", "test")
    images = [ds[i][0] for i in range(40)]
    from densekit.engine.infer import TorchPredictor   # float32, as the graphs compute
    torch_results = TorchPredictor(run.dir, device="cpu", precision="fp32").predict(images, top_k=2)
    assert all(set(r) >= {"labels", "scores", "top_k"} for r in torch_results)
    assert any(r["labels"] for r in torch_results)
    for fmt in ("onnx", "torchscript", "safetensors"):
        r = densekit.export(run.dir, fmt, out=tmp_path / f"m.{fmt}")
        meta = read_metadata(r["path"])
        assert meta["task"] == "multilabel" and meta["classes"] == MULTILABEL_CLASSES
        assert meta["thresholds"] == pytest.approx(thresholds)
        if fmt != "safetensors":   # the self-check compares sigmoid outputs and label sets
            assert r["check"]["compared"] == "sigmoid probabilities"
            assert r["check"]["label_set_agreement"] == 1.0 and r["check"]["max_abs_diff"] < 1e-4
    onnx_results = densekit.load_predictor(tmp_path / "m.onnx").predict([i.numpy() for i in images], top_k=2)
    for a, b in zip(torch_results, onnx_results):
        assert a["labels"] == b["labels"]
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
    # the server (here on the ONNX file: the torch-free runtime) answers label sets, its page shows them
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from densekit.serve.app import create_app
    png = io.BytesIO()
    Image.fromarray(images[0][0].numpy()).save(png, format="PNG")
    with TestClient(create_app(tmp_path / "m.onnx", device="cpu")) as client:
        card = client.get("/v1/model").json()
        assert card["task"] == "multilabel" and card["thresholds"] == pytest.approx(thresholds)
        served = client.post("/v1/predict", files=[("file", ("a.png", png.getvalue(), "image/png"))]).json()[0]
        assert served["labels"] == onnx_results[0]["labels"]
        assert served["scores"] == pytest.approx(onnx_results[0]["scores"], abs=1e-6)
        assert "showLabels" in client.get("/").text
    # densekit predict: the label set first, then every label's score; --csv joins the set with |
    from densekit.cli import main
    (tmp_path / "a.png").write_bytes(png.getvalue())
    assert main(["predict", str(tmp_path / "m.onnx"), str(tmp_path / "a.png"), "--csv", str(tmp_path / "p.csv")]) == 0
    assert "|".join(onnx_results[0]["labels"]) in (tmp_path / "p.csv").read_text()


def test_the_chexnet_recipe_holds_the_papers_setup_and_trains_with_lr_cut_on_plateau(runs_dir):
    from densekit.config import load_recipe
    from densekit.engine.schedule import plateau_factor
    fields = load_recipe("chexnet")
    assert {k: fields[k] for k in ("model", "pretrained", "image_size", "optimizer", "lr", "loss", "schedule",
                                   "gamma", "augment", "task", "best_metric")} == {
        "model": "densenet121", "pretrained": True, "image_size": 224, "optimizer": "adam", "lr": 1e-3,
        "loss": "bce", "schedule": "plateau", "gamma": 0.1, "augment": "flip", "task": "multilabel",
        "best_metric": "val_loss"}
    # /10 after every epoch whose validation loss is no better than the best before it
    history = [{"val_loss": v, "train_loss": 0} for v in (0.5, 0.4, 0.45, 0.39, 0.39)]
    assert plateau_factor(history) == pytest.approx(0.01)
    # the recipe trains, shrunk, on digits (offline: no ImageNet weights; no table settings)
    table = {k: None for k in ("image_col", "label_col", "label_sep", "none_label", "group_col")}
    cfg = densekit.TrainConfig.from_dict({**fields, **table, "dataset": "digits-multilabel", "pretrained": False,
                                          "image_size": 32, "epochs": 3, "batch_size": 64, "out": str(runs_dir),
                                          "name": "chexnet", "workers": 0, "tensorboard": False, "plots": False,
                                          "model_args": {"block_config": [1, 1, 1, 1], "growth_rate": 8,
                                                         "num_init_features": 16}})
    run = densekit.train(cfg, verbose=False)
    # each epoch's LR is cut by the epochs before it
    assert [m["lr"] for m in run.metrics] == pytest.approx([1e-3 * plateau_factor(run.metrics[:i]) for i in range(3)])
    assert run.summary["test_auroc"] is not None
