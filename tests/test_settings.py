"""Settings are rejected up front or they act: a table of bad values through the real CLI parser
and TrainConfig.validate, YAML configs and recipes, the resume policy, and the generated help."""
import json
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import TINY_FLAGS
from densekit import DensekitError, TrainConfig
from densekit.cli import build_parser, main
from densekit.cli.train import config_from_args
from densekit.config import list_recipes, load_recipe, load_yaml
from densekit.engine.schedule import lr_factor
from densekit.models.registry import input_size

# (flags, the field the one-line error must name). Every value here was, or could have been,
# accepted and ignored, misused, or turned into a traceback.
BAD = [
    # model and its constructor arguments (checked against the builder's signature)
    ("--model densenet-9000", "unknown model"),
    ("--model-arg growth_rate=0", "--model-arg growth_rate"),
    ("--model-arg growth_rate=-4", "--model-arg growth_rate"),
    ("--model-arg growth_rate=2.5", "--model-arg growth_rate"),
    ("--model-arg growth_rate=abc", "--model-arg growth_rate"),
    ("--model-arg num_classes=5", "--model-arg num_classes"),
    ("--model-arg in_channels=3", "--model-arg in_channels"),
    ("--model-arg growth_rat=12", "--model-arg growth_rat"),
    ("--model-arg block_config=[0]", "--model-arg block_config"),
    ("--model-arg block_config=[]", "--model-arg block_config"),
    ("--model-arg block_config=abc", "--model-arg block_config"),
    ("--model-arg compression=2", "--model-arg compression"),
    ("--model-arg compression=0", "--model-arg compression"),
    ("--model-arg drop_rate=.nan", "--model-arg drop_rate"),
    ("--model-arg drop_rate=1.5", "--model-arg drop_rate"),
    ("--model-arg stem=hexagon", "--model-arg stem"),
    ("--model-arg bn_size=0", "--model-arg bn_size"),
    ("--model-arg bn_eps=.inf", "--model-arg bn_eps"),
    ("--model-arg memory_efficient=3", "--model-arg memory_efficient"),
    ("--model-arg stem_stride=0", "--model-arg stem_stride"),
    ("--model-arg weights=3", "--model-arg weights"),
    ("--model-arg weights=/no/such/file.pt", "--model-arg weights"),
    ("--model-arg =3", "--model-arg"),
    # data
    ("--image-size -8", "--image-size"),
    ("--image-size 0", "--image-size"),
    ("--image-size 2.5", "--image-size"),
    ("--image-size big", "--image-size"),
    ("--channels 2", "--channels"),
    ("--channels 0", "--channels"),
    ("--val-split .nan", "--val-split"),
    ("--val-split -1", "--val-split"),
    ("--val-split 2.5", "--val-split"),
    ("--val-split .inf", "--val-split"),
    ("--val-split some", "--val-split"),
    ("--workers -3", "--workers"),
    ("--workers 1.5", "--workers"),
    ("--augment sparkle", "--augment"),
    ("--augment crop+sparkle", "--augment"),
    ("--augment auto+crop", "--augment"),
    ("--tta rotate", "--tta"),
    # schedule and training length
    ("--epochs 0", "--epochs"),
    ("--epochs -1", "--epochs"),
    ("--epochs 1.5", "--epochs"),
    ("--epochs ten", "--epochs"),
    ("--time-budget .inf", "--time-budget"),
    ("--time-budget 0", "--time-budget"),
    ("--time-budget=-5m", "--time-budget"),
    ("--schedule sawtooth", "--schedule"),
    ("--schedule step --step-size 0", "--step-size"),
    ("--schedule step --step-size -1", "--step-size"),
    ("--schedule step --step-size 20", "--step-size"),
    ("--schedule multistep --milestones abc", "--milestones"),
    ("--schedule multistep --milestones 0.5,abc", "--milestones"),
    ("--schedule multistep --milestones 0.5,20", "--milestones"),
    ("--schedule multistep --milestones -0.1", "--milestones"),
    ("--schedule step --gamma -1", "--gamma"),
    ("--schedule step --gamma 0", "--gamma"),
    ("--schedule multistep --gamma 2", "--gamma"),
    ("--gamma 0.5", "--gamma"),                     # onecycle has no decay steps: it would be ignored
    ("--milestones 0.3", "--milestones"),           # the same, for the default schedule
    ("--step-size 0.2 --schedule cosine", "--step-size"),
    ("--warmup -1", "--warmup"),
    ("--warmup 20", "--warmup"),                    # 20 epochs of warmup in a 12-epoch run
    ("--warmup .nan", "--warmup"),
    ("--warmup 5 --time-budget 5m", "--warmup"),    # epochs cannot be placed on a clock
    # optimizer and batches
    ("--batch-size 0", "--batch-size"),
    ("--batch-size -32", "--batch-size"),
    ("--batch-size 64.5", "--batch-size"),
    ("--eval-batch-size 0", "--eval-batch-size"),
    ("--optimizer lion", "--optimizer"),
    ("--lr 0", "--lr"),
    ("--lr -1", "--lr"),
    ("--lr .nan", "--lr"),
    ("--lr .inf", "--lr"),
    ("--lr fast", "--lr"),
    ("--momentum -1", "--momentum"),
    ("--momentum 1", "--momentum"),
    ("--optimizer adam --momentum 0.5", "--momentum"),
    ("--optimizer adamw --no-nesterov", "--nesterov"),
    ("--weight-decay -1", "--weight-decay"),
    ("--weight-decay .inf", "--weight-decay"),
    ("--clip-grad -1", "--clip-grad"),
    ("--clip-grad 0", "--clip-grad"),
    ("--accumulate 0", "--accumulate"),
    # regularisation
    ("--label-smoothing 1", "--label-smoothing"),
    ("--label-smoothing -0.1", "--label-smoothing"),
    ("--ema 1", "--ema"),
    ("--ema 0", "--ema"),
    ("--ema 1.5", "--ema"),
    # checkpoints and stopping
    ("--best-metric foo", "--best-metric"),
    ("--best-metric val_acc", "--best-metric"),
    ("--early-stop-metric foo --early-stop-patience 3", "--early-stop-metric"),
    ("--early-stop-metric train_loss", "--early-stop-metric"),   # no patience: it would never act
    ("--early-stop-patience -1", "--early-stop-patience"),
    ("--divergence-factor 1", "--divergence-factor"),
    ("--divergence-factor .5", "--divergence-factor"),
    ("--checkpoint-every -1", "--checkpoint-every"),
    ("--checkpoint-every .nan", "--checkpoint-every"),
    # devices
    ("--device gpu", "--device"),
    ("--device cuda:x", "--device"),
    ("--precision fp8", "--precision"),
    ("--seed -1", "--seed"),
    ("--seed 1.5", "--seed"),
    # tracking
    ("--embeddings -1", "--embeddings"),
    ("--histograms --no-tensorboard", "--histograms"),
    ("--embeddings 10 --no-tensorboard", "--embeddings"),
    ("--embeddings 2.5", "--embeddings"),
    # types that YAML scalars bring along
    ("--model-arg growth_rate=true", "--model-arg growth_rate"),
    ("--momentum .nan", "--momentum"),
    ("--ema .nan", "--ema"),
    ("--early-stop-patience 1.5", "--early-stop-patience"),
]


def refusal(argv: list[str]) -> str:
    args = build_parser().parse_args(["train", *argv])
    with pytest.raises(DensekitError) as err:
        config_from_args(args)
    return str(err.value)


def test_the_table_holds_at_least_66_bad_values():
    assert len(BAD) >= 66 and len({flags for flags, _ in BAD}) == len(BAD)


@pytest.mark.parametrize("flags, field", BAD, ids=[flags for flags, _ in BAD])
def test_a_bad_value_is_refused_in_one_line_naming_the_field(flags, field):
    message = refusal(shlex.split(flags))
    assert "\n" not in message and field in message, message
    assert ": " in message   # the field and value, then what is allowed


@pytest.mark.parametrize("flags", ["", "--warmup 5", "--warmup 0.05 --epochs 3", "--augment crop+erasing",
                                   "--schedule multistep --milestones 6,9 --gamma 0.2",
                                   "--schedule step --step-size 4", "--time-budget 5m --warmup 0.1",
                                   "--optimizer adam --lr 1e-3", "--model-arg growth_rate=24",
                                   "--model densenet-bc-40-k12 --model-arg block_config=[3,3] --model-arg bn_size=none",
                                   "--early-stop-patience 3 --early-stop-metric val_top1", "--val-split 5000"])
def test_good_values_pass(flags):
    config_from_args(build_parser().parse_args(["train", *shlex.split(flags)]))


def test_schedule_points_from_one_up_are_epochs_as_timm_reads_them():
    cfg = TrainConfig(warmup=3, epochs=12, schedule="multistep", milestones=[6, 9]).validate()
    warmup, milestones, _ = cfg.schedule_points()
    assert (warmup, milestones) == (0.25, [0.5, 0.75])
    assert TrainConfig(epochs=12, schedule="step", step_size=3).validate().schedule_points()[2] == 0.25
    assert lr_factor(warmup, "constant", warmup) == 1.0          # the ramp ends after 3 of 12 epochs
    assert TrainConfig(warmup=0.05).validate().schedule_points()[0] == 0.05


@pytest.mark.parametrize("text, field", [
    ("time_budget: .inf\n", "--time-budget"),
    ("val_split: .nan\n", "--val-split"),
    ("epochs: '10'\n", "--epochs"),
    ("lr: fast\n", "--lr"),
    ("learning_rate: 0.1\n", "learning_rate"),
    ("1: 2\n", "unknown config field"),
    ("model_args: [1, 2]\n", "--model-args"),
    ("model_args: {growth_rate: 0}\n", "--model-arg growth_rate"),
    ("milestones: 0.5\nschedule: multistep\n", "--milestones"),
    ("best_metric: 3\n", "--best-metric"),
    ("momentum: -1\n", "--momentum"),
])
def test_a_yaml_config_goes_through_the_same_checks(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    message = refusal(["--config", str(path)])
    assert "\n" not in message and field in message, message


@pytest.mark.parametrize("name", list_recipes())
def test_every_shipped_recipe_passes_and_a_bad_flag_on_top_is_still_refused(name):
    TrainConfig.from_dict(load_recipe(name)).validate()
    assert "--lr" in refusal(["--recipe", name, "--lr", "-1"])


@pytest.mark.parametrize("flags, field", [
    ("--model-arg growth_rate=0", "--model-arg growth_rate"),
    ("--image-size -8", "--image-size"),
    ("--schedule multistep --milestones abc", "--milestones"),
    ("--best-metric foo", "--best-metric"),
])
def test_the_command_refuses_before_reading_any_data(tmp_path, flags, field):
    # The dataset does not exist: a refusal that names the field came before any data was read.
    proc = subprocess.run([sys.executable, "-m", "densekit", "train", "--dataset", f"folder:{tmp_path}/absent",
                           "--out", str(tmp_path), *shlex.split(flags)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"densekit: error: {field}"), proc.stderr
    assert not any(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == []


def test_a_yaml_time_budget_of_inf_is_refused_by_the_command(tmp_path):
    (tmp_path / "c.yaml").write_text("time_budget: .inf\ndataset: digits\n")
    proc = subprocess.run([sys.executable, "-m", "densekit", "train", "--config", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("densekit: error: --time-budget inf: must be a finite")


# -- a validation metric needs a validation split ----------------------------------------------------
def test_a_val_metric_without_a_validation_split_is_refused():
    with pytest.raises(DensekitError, match="--early-stop-metric 'val_loss': this run has no validation split"):
        TrainConfig(early_stop_patience=2).validate().for_splits(has_val=False)
    with pytest.raises(DensekitError, match="--best-metric 'val_loss': this run has no validation split"):
        TrainConfig(best_metric="val_loss").validate().for_splits(has_val=False)
    assert TrainConfig().for_splits(has_val=False).best_metric == "train_top1"   # the default, said in --help
    assert TrainConfig(best_metric="val_loss").for_splits(has_val=True).best_metric == "val_loss"


TINY = [*TINY_FLAGS,
        "--dataset", "digits", "--batch-size", "32", "--lr", "0.1", "--workers", "0", "--no-tensorboard", "--no-plots"]


def test_early_stopping_without_a_validation_split_fails_before_training(tmp_path, capsys):
    assert main(["train", *TINY, "--val-split", "0", "--early-stop-patience", "2", "--out", str(tmp_path),
                 "--name", "es", "--quiet"]) == 1
    assert "--early-stop-metric 'val_loss': this run has no validation split" in capsys.readouterr().err
    assert not (tmp_path / "es").exists()


# -- resume: extend, apply, or refuse ------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # Warmup 1 is one epoch (timm's reading): the LR is the base LR once epoch 1 is done.
    assert main(["train", *TINY, "--val-split", "0", "--epochs", "2", "--schedule", "constant", "--warmup", "1",
                 "--out", str(out), "--name", "r", "--quiet"]) == 0
    return out / "r"


def test_warmup_in_epochs_ends_after_those_epochs(two_epoch_run):
    lrs = [json.loads(line)["lr"] for line in (two_epoch_run / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] < 0.1 and lrs[1] == pytest.approx(0.1)
    config = yaml.safe_load((two_epoch_run / "config.yaml").read_text())
    assert config["best_metric"] == "train_top1"     # what was used, with no validation split


def test_resume_refuses_flags_that_contradict_the_run_and_names_them(two_epoch_run, capsys):
    assert main(["train", "--resume", str(two_epoch_run), "--lr", "0.2", "--quiet"]) == 1
    assert "--lr 0.2 contradicts the run's lr 0.1; start a new run" in capsys.readouterr().err
    assert main(["train", "--resume", str(two_epoch_run), "--batch-size", "64", "--model", "plain-cnn"]) == 1
    err = capsys.readouterr().err
    assert "--batch-size 64 contradicts the run's batch_size 32" in err and "--model 'plain-cnn' contradicts" in err
    assert len(err.strip().splitlines()) == 1


def test_resume_says_what_it_extends_and_applies(two_epoch_run, capsys):
    # --lr 0.1 and the model are the run's own: no contradiction; eval batch size changes no result.
    assert main(["train", "--resume", str(two_epoch_run), *TINY, "--epochs", "3", "--eval-batch-size", "100"]) == 0
    out = capsys.readouterr().out
    assert "extended: epochs 2 -> 3" in out and "applied: --eval-batch-size 100" in out
    config = yaml.safe_load((two_epoch_run / "config.yaml").read_text())
    assert (config["epochs"], config["eval_batch_size"]) == (3, 100)
    assert len((two_epoch_run / "metrics.jsonl").read_text().splitlines()) == 3


def test_a_last_pt_of_another_architecture_is_refused(two_epoch_run, tmp_path, capsys):
    assert main(["train", "--model", "plain-cnn", "--model-arg", "widths=[8,16]", "--dataset", "digits",
                 "--batch-size", "32", "--val-split", "0", "--epochs", "1", "--workers", "0", "--no-tensorboard",
                 "--no-plots", "--out", str(tmp_path), "--name", "other", "--quiet"]) == 0
    run = tmp_path / "copy"
    shutil.copytree(two_epoch_run, run)
    shutil.copy(tmp_path / "other" / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    assert main(["train", "--resume", str(run), "--epochs", "9", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "config.yaml's model 'densenet-bc-40-k12' contradicts checkpoints/last.pt's model 'plain-cnn'" in err
    assert len(err.strip().splitlines()) == 1


# -- help and --input-size ----------------------------------------------------------------------------
def test_every_train_flag_has_help_with_its_default():
    proc = subprocess.run([sys.executable, "-m", "densekit", "train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "default None" not in proc.stdout and "default: None" not in proc.stdout
    for title in ("data:", "model:", "optimizer and batches:", "regularisation:", "tracking:",
                  "devices and reproducibility:", "checkpoints, stopping and the run folder:"):
        assert f"\n{title}\n" in proc.stdout
    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    config_flags = [a for a in train._actions if a.dest in TrainConfig.__dataclass_fields__]
    assert len(config_flags) == len(TrainConfig.__dataclass_fields__)
    for action in config_flags:
        words = action.help.split("(default: ")
        assert len(words[0]) > 10 and len(words) == 2 and words[1].rstrip(")") not in ("", "None"), action.help
        assert action.option_strings[0] in proc.stdout


def test_every_verb_reads_input_size_the_same_way(capsys):
    assert input_size("densenet-bc-40-k12", "3,16,16") == input_size("densenet-bc-40-k12", "3x16x16") == (3, 16, 16)
    assert input_size("densenet-c-fmnist", "28") == (1, 28, 28)      # one side: the model's own channels
    assert main(["summary", "densenet-bc-40-k12", "--input-size", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == [3, 16, 16]
    for verb in (["summary", "densenet-bc-40-k12"], ["bench", "densenet-bc-40-k12", "--steps", "1"]):
        assert main([*verb, "--input-size", "0,1"]) == 1
        assert "--input-size '0,1': write C,H,W such as 3,32,32, or one side N" in capsys.readouterr().err


def test_the_settings_page_lists_every_flag():
    from pathlib import Path
    page = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    for name in TrainConfig.__dataclass_fields__:
        flag = "--model-arg KEY=VALUE" if name == "model_args" else "--" + name.replace("_", "-")
        assert f"| `{flag}` |" in page, flag


def test_resume_with_the_original_config_of_a_run_without_validation_is_no_contradiction(two_epoch_run, capsys):
    # The Python user passes the config they started with: the default best_metric became train_top1.
    recorded = yaml.safe_load((two_epoch_run / "config.yaml").read_text())
    run_cfg = TrainConfig.from_dict({k: v for k, v in recorded.items() if k != "resolved"})
    original = run_cfg.replace(best_metric="val_top1")
    cfg, note = run_cfg.resume_overrides(original.to_dict())
    assert cfg.best_metric == "train_top1" and note == "resuming with the run's own settings"
    assert main(["train", "--resume", str(two_epoch_run), "--name", "elsewhere"]) == 1
    assert "names the run already; drop --out/--name" in capsys.readouterr().err
