"""`densekit summary` and feature extraction: numbers measured on the real model."""
import json

import pytest
import torch

from densekit.cli import main
from densekit.models import create_model
from densekit.models.summary import summarize


def test_densenet121_summary_has_every_stage_and_torchvisions_totals():
    s = summarize(create_model("densenet121"), (3, 224, 224))
    assert [r["stage"] for r in s["stages"]] == ["stem", "denseblock1", "transition1", "denseblock2", "transition2",
                                                 "denseblock3", "transition3", "denseblock4", "head"]
    shapes = {r["stage"]: r["shape"] for r in s["stages"]}
    assert shapes["stem"] == (64, 56, 56) and shapes["denseblock1"] == (256, 56, 56)
    assert shapes["denseblock4"] == (1024, 7, 7) and shapes["head"] == (1000,)
    assert s["total_params"] == sum(r["params"] for r in s["stages"]) == 7_978_856
    assert s["total_flops"] == sum(r["flops"] for r in s["stages"])
    flops = {r["stage"]: r["flops"] for r in s["stages"]}
    assert flops["stem"] == 2 * 64 * 3 * 7 * 7 * 112 * 112
    assert flops["denseblock1"] == 2_080_899_072 and flops["head"] == 2 * 1024 * 1000
    # torchvision publishes 2.83 G multiply-adds for densenet121 at 224x224; a transition may pool
    # before its 1x1 convolution (the same function on a quarter of the pixels), never more.
    assert 0.9 * 2.84e9 < s["total_flops"] / 2 <= 2.84e9


def test_stage_flops_are_those_of_the_convolutions_inside_the_stage():
    s = summarize(create_model("densenet-bc-40-k12"), (3, 32, 32))
    rows = {r["stage"]: r for r in s["stages"]}
    assert rows["stem"]["flops"] == 2 * 24 * 3 * 3 * 3 * 32 * 32          # one 3x3 conv, 3 -> 24 channels
    # 1x1 conv 96 -> 48, at 32x32 or after the 2x2 pool at 16x16 (they commute; both are exact).
    assert rows["transition1"]["flops"] in (2 * 96 * 48 * 32 * 32, 2 * 96 * 48 * 16 * 16)
    assert rows["transition1"]["shape"] == (48, 16, 16)
    assert rows["head"]["flops"] == 2 * 132 * 10                           # the linear layer; BN is not counted


def test_summary_cli_prints_a_table_and_json(capsys):
    assert main(["summary", "densenet-bc-100-k12"]) == 0
    out = capsys.readouterr().out
    assert "denseblock3" in out and "transition2" in out and "769,162" in out
    assert main(["summary", "resnet20", "--input-size", "1,28,28", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_size"] == [1, 28, 28] and data["stages"][-1]["shape"] == [10]


@pytest.mark.parametrize("argv", [["summary", "densenet-bc-40-k12", "--input-size", "3,32"],
                                  ["summary", "densenet-bc-40-k13"]])
def test_summary_cli_reports_bad_input_in_one_line(capsys, argv):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("densekit: error:") and err.count("\n") == 1


def test_features_only_densenet121_returns_every_dense_block_at_strides_4_to_32():
    backbone = create_model("densenet121", features_only=True).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 64, 64))
    assert [64 // o.shape[-1] for o in outs] == [4, 8, 16, 32] == [f["reduction"] for f in backbone.feature_info]
    assert [o.shape[1] for o in outs] == [256, 512, 1024, 1024] == [f["channels"] for f in backbone.feature_info]


def test_features_only_on_a_cifar_densenet_keeps_full_resolution_first():
    backbone = create_model("densenet-bc-40-k12", features_only=True).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs] == [(96, 32, 32), (120, 16, 16), (132, 8, 8)]
