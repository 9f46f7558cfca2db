"""`densekit report`: a self-contained HTML page, checked by rendering it in headless Chromium."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import densekit
from conftest import TINY
from densekit.cli import main



@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=2, batch_size=32,
                               lr=0.1, val_split=200, out=str(tmp_path_factory.mktemp("runs")), name="reported",
                               workers=0, tensorboard=False, plots=True)
    return densekit.train(cfg, verbose=False)


def chromium_dom(html_file, tmp_path) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "headless Chromium is needed for this test: run scripts/setup-system.sh (apt-get install chromium)"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", html_file.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def chromium_screenshot(html_file, png, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile-shot'}", "--window-size=1200,3000", f"--screenshot={png}",
           html_file.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]


def test_wrong_predictions_are_marked_red_in_the_grids(tmp_path):
    from densekit.tracking.plots import plot_predictions
    images = torch.full((2, 1, 8, 8), 128, dtype=torch.uint8)

    def red_pixels(pred):
        plot_predictions(images, ["3", "5"], pred, [0.9, 0.8], tmp_path / "g.png", "sample test predictions")
        a = np.asarray(Image.open(tmp_path / "g.png").convert("RGB")).astype(int)
        return int(((a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] < 90)).sum())
    assert red_pixels(["3", "5"]) == 0           # all right: nothing red
    assert red_pixels(["3", "7"]) > 100          # one wrong: its frame and title


def test_report_renders_in_chromium_with_every_section(run, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(run.dir), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    text = out.read_text()
    # self-contained: no file or network references, every image inline
    srcs = re.findall(r"src='([^']*)'", text)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text and "<link" not in text

    dom = chromium_dom(out, tmp_path)
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-images-loaded="6"' in body and 'data-images="6"' in body   # every embedded PNG decoded
    for heading in ("Results", "Loss and top-1", "Epochs", "Learning rate", "Confusion matrix (test)",
                    "Per-class accuracy (test)", "Sample predictions (test)", "Worst-classified test images",
                    "Grad-CAM of the worst-classified images", "Settings"):
        assert f"<h2>{heading}</h2>" in dom, heading
    summary = run.summary
    assert f"{100 * summary['test_top1']:.2f}%" in dom
    per_class = re.search(r"<table id=\"per-class\">(.*?)</table>", dom, re.S).group(1)
    for name, acc in summary["per_class"].items():
        assert re.search(rf"<td>{name}</td><td class=\"num\">{100 * acc:.2f}%</td>", per_class), name
        f1 = summary["class_metrics"]["per_class"][name]["f1"]
        assert re.search(rf"<td>{name}</td>.*?<td class=\"num\">{100 * f1:.2f}%</td></tr>", per_class), name
    assert "<th>precision</th><th>recall</th><th>F1</th>" in per_class
    assert '<table id="samples">' not in dom and "<pre>" not in dom   # no tables repeating the grids, no JSON dump
    epochs = re.search(r"<table id=\"epochs\">(.*?)</table>", dom, re.S).group(1)
    assert epochs.count("<tr>") == 1 + 2
    settings = re.search(r"<table id=\"settings\">(.*?)</table>", dom, re.S).group(1)
    assert "<th>optimizer</th><td>sgd</td>" in settings and "<th>lr</th><td>0.1</td>" in settings
    used = yaml.safe_load((run.dir / "config.yaml").read_text())["resolved"]
    assert "<th>augment</th><td>crop (auto)</td>" in settings and f"<th>precision</th><td>{used['dtype']}" in settings
    assert "<th>data_dir</th>" not in settings                    # defaults beyond the core ones are left out
    assert f"torch {torch.__version__}" in dom and re.search(r"id=\"when\">20\d\d-", dom)

    # and as a person sees it: a screenshot (saved for a look under the test's tmp_path)
    shot = tmp_path / "report.png"
    chromium_screenshot(out, shot, tmp_path)
    with Image.open(shot) as img:
        assert img.size == (1200, 3000) and len(img.getcolors(1 << 20) or []) > 50   # drawn, not blank
    assert '<span class="status" id="status">finished</span>' in dom


def test_report_of_a_run_without_plots_still_draws_its_curves(tmp_path):
    run = densekit.train(densekit.TrainConfig(model="densenet-bc-40-k12", model_args=TINY, dataset="digits", epochs=1,
                                              batch_size=64, val_split=200, out=str(tmp_path), name="bare", workers=0,
                                              tensorboard=False, plots=False), verbose=False)
    assert main(["report", str(run.dir)]) == 0
    text = (run.dir / "report.html").read_text()
    assert len(re.findall(r"src='data:image/png;base64,", text)) == 2       # curves and LR, from metrics.jsonl
    assert "trained with --no-plots" in text
    assert json.loads((run.dir / "status.json").read_text())["status"] == "finished"


def test_report_of_a_folder_that_is_no_run_says_so(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "not a densekit run folder" in capsys.readouterr().err
