"""--tracker mlflow: the run read back with MLflow's own client; an unreachable store never stops training."""
import json
import shlex

import pytest
from mlflow.tracking import MlflowClient

import densekit
from conftest import StopAfter
from densekit.cli import build_parser
from densekit.cli.train import config_from_args

TINY = {"block_config": [2, 2], "growth_rate": 6}


def config(out, name, **kw):
    return densekit.TrainConfig(**{**dict(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=2,
                                          batch_size=64, lr=0.1, val_split=200, out=str(out), name=name, workers=0,
                                          tensorboard=False, plots=False, tracker=["mlflow"]), **kw})


def test_a_run_and_its_resume_are_one_mlflow_run_with_params_metrics_and_artifacts(runs_dir):
    cfg = config(runs_dir, "tracked", plots=True)
    stopped = densekit.train(cfg, callbacks=[StopAfter(1)], verbose=False)
    first = json.loads((stopped.dir / "mlflow.json").read_text())
    assert first["tracking_uri"] == f"sqlite:///{runs_dir.resolve()}/mlflow.db"
    client = MlflowClient(first["tracking_uri"])
    assert client.get_run(first["run_id"]).info.status == "KILLED"

    run = densekit.train(resume=stopped.dir, verbose=False)
    assert json.loads((run.dir / "mlflow.json").read_text())["run_id"] == first["run_id"]
    got = client.get_run(first["run_id"])
    assert got.info.status == "FINISHED" and got.info.run_name == "tracked"
    assert client.get_experiment(got.info.experiment_id).name == "runs"      # the --out folder
    assert got.data.params["lr"] == "0.1" and got.data.params["model.growth_rate"] == "6"
    assert got.data.params["augment"] == "auto" and got.data.tags["densekit.run_dir"] == str(run.dir)
    for key in ("val_top1", "train_loss", "lr"):
        history = sorted(client.get_metric_history(got.info.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [1, 2]
        assert [m.value for m in history] == pytest.approx([r[key] for r in run.metrics])
    assert got.data.metrics["test_top1"] == pytest.approx(run.summary["test_top1"])
    files = {a.path for a in client.list_artifacts(got.info.run_id)}
    files |= {a.path for folder in ("model", "plots") for a in client.list_artifacts(got.info.run_id, folder)}
    assert {"config.yaml", "summary.json", "metrics.jsonl", "metrics.csv", "model/best.pt", "model/model.safetensors",
            "plots/curves.png", "plots/confusion.png"} <= files
    local = client.download_artifacts(got.info.run_id, "model/model.safetensors", str(runs_dir))
    model = densekit.create_model("densenet-bc-40-k12", num_classes=10, in_channels=1, weights=local, **TINY)
    assert sum(p.numel() for p in model.parameters()) == run.summary["params"]


def test_an_unreachable_store_is_one_warning_line_and_the_run_finishes(runs_dir, capfd):
    run = densekit.train(config(runs_dir, "offline", epochs=1, tracking_uri="http://127.0.0.1:9"), verbose=False)
    assert run.summary["status"] == "finished" and "test_top1" in run.summary
    warnings = [line for line in capfd.readouterr().err.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and "training goes on without MLflow tracking" in warnings[0]


def test_trackers_are_a_comma_separated_list_and_the_uri_needs_mlflow():
    def parse(flags):
        return config_from_args(build_parser().parse_args(["train", *shlex.split(flags)]))
    assert parse("--tracker tensorboard,mlflow").trackers() == ["tensorboard", "mlflow"]
    assert parse("--tracker mlflow --tracking-uri file:/tmp/x").trackers() == ["mlflow"]
    assert parse("--tracker tensorboard,mlflow --no-tensorboard").trackers() == ["mlflow"]
    assert parse("").trackers() == ["tensorboard"]
    with pytest.raises(densekit.DensekitError, match="--tracker \\['wandb'\\]: choose tensorboard or mlflow"):
        parse("--tracker wandb")
    with pytest.raises(densekit.DensekitError, match="--tracking-uri .* applies with --tracker mlflow only"):
        parse("--tracking-uri sqlite:///x.db")
    with pytest.raises(densekit.DensekitError, match="--histograms True: .* --tracker tensorboard"):
        parse("--tracker mlflow --histograms")
