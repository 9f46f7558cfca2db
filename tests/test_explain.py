"""Grad-CAM and saliency on a synthetic task whose class is decided by where a bright patch is."""
import json
from pathlib import Path
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import densekit
from conftest import TINY
from densekit.data import TensorImageDataset
from densekit.data.packed import write_packed

SIZE, P = 20, 6


def stripe_images(n, seed):
    """Noise, a 6x6 patch of horizontal (class "horizontal") or vertical ("vertical") stripes in one
    half, and a plain bright 6x6 distractor in the other half. The class is decided by the striped
    patch alone, wherever it is: not by position (which a convolutional net with a global-average
    head only sees through the borders) and not by brightness (the distractor is as bright)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    side = torch.randint(0, 2, (n,), generator=g)               # 0: the stripes are in the left half
    images = (torch.rand(n, 1, SIZE, SIZE, generator=g) * 60).to(torch.uint8)
    stripes = torch.zeros(2, P, P, dtype=torch.uint8)
    stripes[0, ::2, :], stripes[1, :, ::2] = 250, 250
    half = SIZE // 2
    pos = torch.randint(0, half - P + 1, (n, 4), generator=g)
    for i in range(n):
        r, c = pos[i, 0], pos[i, 1] + side[i] * half
        images[i, 0, r:r + P, c:c + P] = stripes[labels[i]]
        r, c = pos[i, 2], pos[i, 3] + (1 - side[i]) * half
        images[i, 0, r:r + P, c:c + P] = 200
    return TensorImageDataset(images, labels, ["horizontal", "vertical"], name="stripes"), side


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    write_packed({"train": stripe_images(800, 0)[0], "test": stripe_images(60, 1)[0]}, root / "stripes", "stripes")
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args={"block_config": [2, 2], "growth_rate": 8},
                               dataset=f"packed:{root / 'stripes'}", augment="none", epochs=3, batch_size=32,
                               lr=0.1, val_split=0, out=str(root / "runs"), name="stripes", workers=0,
                               tensorboard=False, plots=False)
    run = densekit.train(cfg, verbose=False)
    assert run.summary["test_top1"] > 0.9, run.summary   # the task is learnt, so its reasons can be checked
    images = root / "images"
    images.mkdir()
    test, side = stripe_images(12, 2)
    for i in range(len(test)):
        name = f"{'left' if side[i] == 0 else 'right'}-{test.classes[test.labels[i]]}-{i:02d}.png"
        Image.fromarray(test.images[i, 0].numpy()).save(images / name)
    return run.dir, images


def mass_on_the_deciding_half(result) -> float:
    """The fraction of the heat map in the half that holds the stripes (named in the file)."""
    heat, where = result["heatmap"], Path(result["file"]).name.split("-")[0]
    half = heat[:, :SIZE // 2] if where == "left" else heat[:, SIZE // 2:]
    return float(half.sum() / heat.sum())


@pytest.mark.parametrize("method,least,mean", [("gradcam", 0.6, 0.8), ("saliency", 0.5, 0.6)])
def test_heat_maps_fall_on_the_patch_that_decides_the_class(patch_run, tmp_path, method, least, mean):
    run, images = patch_run
    results = densekit.explain(run, [images], method=method, out=tmp_path / "maps", top_k=2)
    assert len(results) == 12
    for r in results:
        assert r["explained"] == r["top_k"][0]["label"] == Path(r["file"]).name.split("-")[1]
        assert r["heatmap"].shape == (SIZE, SIZE) and r["heatmap"].dtype == np.float32
        assert 0 <= r["heatmap"].min() and r["heatmap"].max() == pytest.approx(1.0)
        assert r["image"].shape == (SIZE, SIZE, 1)
        assert Path(r["png"]).stat().st_size > 5_000
    masses = [mass_on_the_deciding_half(r) for r in results]
    assert min(masses) > least and sum(masses) / len(masses) > mean, masses


def test_explaining_another_class_and_the_cli(patch_run, tmp_path):
    run, images = patch_run
    one = sorted(images.glob("*-horizontal-*"))[0]
    forced = densekit.explain(run, one, target="vertical")[0]
    assert forced["explained"] == "vertical" and forced["top_k"][0]["label"] == "horizontal"
    assert forced["png"] is None
    out = tmp_path / "cli"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "densekit", "explain", str(run), str(one), "--out", str(out),
                           "--method", "saliency", "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert rows[0]["method"] == "saliency" and Path(rows[0]["png"]).parent == out and Path(rows[0]["png"]).is_file()
    bad = subprocess.run([sys.executable, "-m", "densekit", "explain", str(run), str(one), "--out", str(out),
                          "--target", "diagonal"], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and "unknown class 'diagonal'" in bad.stderr and "Traceback" not in bad.stderr


def test_the_run_folder_gets_grad_cam_of_its_worst_images(tmp_path):
    from densekit.tracking.plots import GRADCAM
    run = densekit.train(densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=1, batch_size=64, workers=0, tensorboard=False,
                         out=str(tmp_path), name="cam"), verbose=False)
    png = run.dir / "plots" / "worst_gradcam.png"
    listed = json.loads((run.dir / "plots" / "predictions.json").read_text())["worst"]
    assert png.is_file() and len(listed) >= GRADCAM     # one epoch: plenty of mistakes to explain
    assert Image.open(png).size[0] > 400                # a grid of GRADCAM overlays, not an empty figure
