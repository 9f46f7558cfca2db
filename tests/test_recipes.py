"""Every shipped recipe trains (on digits, one epoch, a shrunken model) and its fields reach the run."""
import json

import pytest
import yaml

import densekit
from densekit.cli import main
from densekit.config import list_recipes, load_recipe

# Per recipe: model args small enough for one fast epoch, and an input size the model's stem allows.
SHRINK = {
    "paper-cifar": ({"block_config": [2, 2, 2], "growth_rate": 8}, None),
    "seed-keras-cifar10": ({"block_config": [1, 1, 1], "growth_rate": 8}, None),
    "seed-d2l-fashion": ({"block_config": [1, 1, 1, 1], "growth_rate": 8, "num_init_features": 16}, 32),
    "seed-tf-mnist": ({"block_config": [1, 1, 2], "growth_rate": 8}, 32),
    "seed-slim-quiz": ({"block_config": [1, 1, 1], "growth_rate": 8}, 32),
}
# What each source fixes and its recipe must carry (seeds-brief.md).
SOURCE = {
    "paper-cifar": dict(optimizer="sgd", nesterov=True, momentum=0.9, weight_decay=1e-4, batch_size=64, epochs=300,
                        lr=0.1, schedule="multistep", milestones=[0.5, 0.75], gamma=0.1, augment="standard"),
    "seed-keras-cifar10": dict(model="seed-keras-cifar10", optimizer="adam", lr=1e-3, batch_size=128, epochs=200,
                               val_split=5000, augment="keras", early_stop_patience=4, early_stop_metric="train_loss",
                               best_metric="val_loss", model_args={"bn_momentum": 0.01}),
    "seed-d2l-fashion": dict(model="seed-d2l-fashion", dataset="fashion-mnist", image_size=96, optimizer="sgd",
                             lr=0.1, momentum=0.0, batch_size=256, epochs=10),
    "seed-tf-mnist": dict(model="seed-tf-mnist", dataset="mnist", optimizer="adam", lr=1e-4, batch_size=100,
                          epochs=50, schedule="multistep", milestones=[0.5, 0.75]),
    "seed-slim-quiz": dict(model="seed-slim-quiz", optimizer="rmsprop", lr=0.1, batch_size=32),
}
OWN = [name for name in SOURCE]


def test_every_owned_recipe_is_shipped_and_valid():
    assert set(OWN) <= set(list_recipes())
    for name in OWN:
        fields = load_recipe(name)
        densekit.TrainConfig.from_dict(fields).validate()
        assert {k: fields[k] for k in SOURCE[name]} == SOURCE[name], name


@pytest.mark.parametrize("name", [n for n in OWN if n != "seed-slim-quiz"])
def test_recipe_trains_and_its_fields_reach_the_run_folder(name, runs_dir):
    model_args, size = SHRINK[name]
    flags = ["--dataset", "digits", "--epochs", "1", "--workers", "0", "--out", str(runs_dir), "--name", name,
             "--no-tensorboard", "--no-plots", "--quiet", "--json"]
    flags += [a for k, v in model_args.items() for a in ("--model-arg", f"{k}={json.dumps(v)}")]
    if size:
        flags += ["--image-size", str(size)]
    recipe = load_recipe(name)
    if isinstance(recipe.get("val_split"), int) and recipe["val_split"] >= 1000:
        flags += ["--val-split", "200"]      # digits has 1,437 training images, not 50,000
    assert main(["train", "--recipe", name, *flags]) == 0
    saved = yaml.safe_load((runs_dir / name / "config.yaml").read_text())
    overridden = {"dataset", "epochs", "image_size", "val_split", "model_args"}
    for key, value in recipe.items():
        if key not in overridden:
            assert saved[key] == value, key
    assert saved["model_args"] == {**recipe.get("model_args", {}), **model_args}   # flags add to the recipe's
    assert saved["resolved"]["model"]["name"] == recipe["model"]
    status = json.loads((runs_dir / name / "status.json").read_text())
    assert status["status"] == "finished"
    assert 0 <= status["summary"]["test_top1"] <= 1


def test_seed_slim_quiz_at_its_own_lr_diverges_with_one_line_saying_what_to_try(runs_dir, capsys):
    # The seed's actual run: RMSProp, lr 0.1, momentum 0.9. Its platform said nothing; densekit stops it.
    flags = ["--dataset", "digits", "--image-size", "32", "--workers", "0", "--out", str(runs_dir),
             "--name", "quiz", "--no-tensorboard", "--no-plots", "--quiet"]
    assert main(["train", "--recipe", "seed-slim-quiz", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "diverged" in err[0] and "lower the learning rate" in err[0] and "rmsprop lr 0.1" in err[0]
    status = json.loads((runs_dir / "quiz" / "status.json").read_text())
    assert status["status"] == "diverged"
    saved = yaml.safe_load((runs_dir / "quiz" / "config.yaml").read_text())
    recipe = load_recipe("seed-slim-quiz")
    assert {k: saved[k] for k in recipe if k not in ("dataset", "image_size")} == \
        {k: v for k, v in recipe.items() if k not in ("dataset", "image_size")}


def test_recipes_command_lists_each_recipe_with_its_source(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in OWN:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10
    assert main(["recipes", "seed-d2l-fashion"]) == 0
    assert "image_size: 96" in capsys.readouterr().out
    assert main(["recipes", "no-such"]) == 1
    assert "unknown recipe 'no-such'" in capsys.readouterr().err
