"""Config parsing and validation, and the learning-rate schedules."""
import pytest

from densekit import DensekitError, TrainConfig
from densekit.config import parse_duration
from densekit.engine.schedule import lr_factor


@pytest.mark.parametrize("text, seconds", [("5m", 300), ("90s", 90), ("1h30m", 5400), ("300", 300), ("2.5m", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "five minutes"])
def test_bad_durations_say_how_to_write_one(text):
    with pytest.raises(DensekitError, match="write e.g. 5m"):
        parse_duration(text)


def test_unknown_config_field_lists_the_valid_ones():
    with pytest.raises(DensekitError, match="unknown config field.*learning_rate.*valid fields"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_ints_become_floats_where_floats_are_meant_and_strings_are_rejected():
    cfg = TrainConfig(lr=1, weight_decay=0).validate()
    assert isinstance(cfg.lr, float) and isinstance(cfg.weight_decay, float)
    with pytest.raises(DensekitError, match="batch-size '64': expected int"):
        TrainConfig(batch_size="64").validate()


def test_multistep_divides_by_ten_at_half_and_three_quarters():   # the paper's schedule
    f = [lr_factor(p, "multistep") for p in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)]
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_onecycle_rises_then_anneals_to_zero_and_warmup_ramps_linearly():
    assert lr_factor(0.0, "onecycle") < 0.1 and lr_factor(0.1, "onecycle") == pytest.approx(1)
    assert lr_factor(0.05, "onecycle") < lr_factor(0.1, "onecycle") > lr_factor(0.5, "onecycle")
    assert lr_factor(0.25, "onecycle", warmup=0.25) == pytest.approx(1)
    assert lr_factor(1.0, "onecycle") == pytest.approx(0, abs=1e-9)
    assert lr_factor(0.05, "cosine", warmup=0.1) == pytest.approx(0.5)
    assert lr_factor(0.5, "step", step_size=0.3) == pytest.approx(0.1)


def test_scientific_notation_from_flags_and_yaml_is_a_float(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-3 without a dot as the string "1e-3".
    from densekit.cli.train import _value
    from densekit.config import load_yaml
    cfg = TrainConfig(weight_decay=_value("1e-3"), lr=_value("2E-2")).validate()
    assert (cfg.weight_decay, cfg.lr) == (0.001, 0.02)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("weight_decay: 5e-4\nlr: 1e-1\n")
    cfg = TrainConfig.from_dict(load_yaml(recipe)).validate()
    assert (cfg.weight_decay, cfg.lr) == (0.0005, 0.1)
    with pytest.raises(DensekitError, match="weight-decay 'abc': expected float"):
        TrainConfig(weight_decay="abc").validate()
