"""--pretrained: torchvision-style weight files fetched from a local server, verified by the SHA-256
prefix in their name, cached once; corrupt files rejected and not kept; offline says what to do.
Then fine-tuning from them: frozen backbone, unfreezing, the backbone's LR factor, the weights'
own normalisation and an adapted grayscale stem."""
import hashlib
import re
import threading

import pytest
import torch

import densekit
from densekit import DensekitError
from densekit.data import TensorImageDataset, load_dataset
from densekit.data.packed import write_packed
from densekit.models import pretrained
from densekit.models.weights import read_state_dict
from datagen import serve


@pytest.fixture
def weights_server(tmp_path, monkeypatch):
    """A server on 127.0.0.1 (datagen.serve: stopped, its thread ended, at teardown), serving a densekit-made densenet121
    state_dict under a torchvision-style name (old-style pickle, pre-0.4 ``norm.1`` keys) and a
    corrupt densenet169 file whose bytes do not match the hash in its name."""
    folder = tmp_path / "srv"
    folder.mkdir()
    torch.manual_seed(0)
    state = densekit.create_model("densenet121").state_dict()
    legacy = {re.sub(r"(denselayer\d+)\.(norm|relu|conv)([12])\.", r"\1.\2.\3.", k): v for k, v in state.items()}
    tmp = folder / "w.pth"
    torch.save(legacy, tmp, _use_new_zipfile_serialization=False)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
    tmp.rename(folder / f"densenet121-{digest}.pth")
    (folder / "densenet169-0badc0de.pth").write_bytes(b"\x80\x02not a weights file" * 100)
    monkeypatch.setitem(pretrained.FILES, "densenet121", f"densenet121-{digest}.pth")
    monkeypatch.setitem(pretrained.FILES, "densenet169", "densenet169-0badc0de.pth")
    monkeypatch.setenv("DENSEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DENSEKIT_OFFLINE", raising=False)
    with serve(folder) as url:
        monkeypatch.setenv("DENSEKIT_WEIGHTS_URL", url)
        yield state, tmp_path / "cache" / "weights" / f"densenet121-{digest}.pth"


def test_the_weights_server_ends_its_thread_with_no_traceback(tmp_path):
    """The fixture's server once closed its socket under a thread still serving: three thread
    tracebacks in the log, attributed to whichever tests ran next."""
    import urllib.request
    errors, hook = [], threading.excepthook
    threading.excepthook = errors.append
    try:
        before = set(threading.enumerate())
        (tmp_path / "f.bin").write_bytes(b"x" * 10)
        with serve(tmp_path) as url:
            assert urllib.request.urlopen(url + "f.bin", timeout=10).read() == b"x" * 10
            started = set(threading.enumerate()) - before
        assert started and not any(t.is_alive() for t in started) and not errors
    finally:
        threading.excepthook = hook


def test_pretrained_downloads_once_verifies_and_loads_the_weights(weights_server, monkeypatch):
    state, cached = weights_server
    model = densekit.create_model("densenet121", pretrained=True)
    assert cached.is_file()
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    monkeypatch.setenv("DENSEKIT_WEIGHTS_URL", "http://127.0.0.1:9/")   # nothing listens: the cache must serve
    again = densekit.create_model("densenet121", pretrained=True, num_classes=5, in_channels=1)
    assert torch.equal(again.features.conv0.weight, state["features.conv0.weight"].sum(1, keepdim=True))
    assert again.classifier.out_features == 5


def test_a_corrupt_download_is_rejected_and_not_cached(weights_server):
    with pytest.raises(DensekitError, match=r"checksum mismatch \(sha256 .*expected 0badc0de"):
        densekit.create_model("densenet169", pretrained=True)
    cache = pretrained.cache_dir()
    assert not list(cache.glob("densenet169*")) and not list(cache.glob(".densenet169*"))


def test_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("DENSEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DENSEKIT_OFFLINE", "1")
    with pytest.raises(DensekitError) as err:
        densekit.create_model("densenet121", pretrained=True)
    message = str(err.value)
    assert "https://download.pytorch.org/models/densenet121-a639ec97.pth" in message
    assert str(tmp_path / "cache" / "weights" / "densenet121-a639ec97.pth") in message and "\n" not in message
    with pytest.raises(DensekitError, match="no pretrained weights for 'resnet56'"):
        densekit.create_model("resnet56", pretrained=True)
    with pytest.raises(DensekitError, match="not both"):
        densekit.create_model("densenet121", pretrained=True, weights="x.pth")


def small_digits(root, n_train=64, n_test=32):
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    sets = {"train": TensorImageDataset(train.images[:n_train], train.labels[:n_train], train.classes),
            "test": TensorImageDataset(test.images[:n_test], test.labels[:n_test], test.classes)}
    write_packed(sets, root / "digits-small", "digits")
    return f"packed:{root / 'digits-small'}"


class Watch(densekit.engine.Callback):
    """A backbone weight, a BN running mean and the head after each epoch; the groups' LRs."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, trainer, record):
        m = trainer.model
        self.seen.append({"conv": m.features.denseblock2.denselayer1.conv1.weight.detach().clone(),
                          "bn": m.features.norm5.running_mean.clone(), "head": m.classifier.weight.detach().clone(),
                          "lrs": [(g["lr_scale"], g["lr"]) for g in trainer.optimizer.param_groups]})


@pytest.mark.filterwarnings("ignore:.*(re-initialised|adapted from)")
def test_fine_tuning_freezes_then_unfreezes_the_backbone_at_its_own_lr(weights_server, tmp_path):
    state, _ = weights_server
    watch = Watch()
    cfg = densekit.TrainConfig(model="densenet121", dataset=small_digits(tmp_path), image_size=32, pretrained=True,
                               freeze=["features"], unfreeze_after=1, lr_backbone=0.1, epochs=2, batch_size=16,
                               lr=0.05, schedule="constant", val_split=0, workers=0, out=str(tmp_path / "runs"),
                               name="ft", tensorboard=False, plots=False)
    run = densekit.train(cfg, callbacks=[watch], verbose=False)
    first, second = watch.seen
    assert torch.equal(first["conv"], state["features.denseblock2.denselayer1.conv1.weight"])   # frozen
    assert torch.equal(first["bn"], state["features.norm5.running_mean"])                     # BN stats too
    assert not torch.equal(second["conv"], first["conv"]) and not torch.equal(second["bn"], first["bn"])
    assert not torch.equal(second["head"], first["head"])
    assert sorted(scale for scale, _ in first["lrs"]) == [0.1, 0.1, 1.0, 1.0]    # decayed and not, each
    assert all(lr == pytest.approx(0.05 * scale) for scale, lr in first["lrs"] + second["lrs"])
    data = densekit.engine.RunFolder(run.dir).read_config()["resolved"]["data"]
    assert data["channels"] == 1 and data["mean"] == pytest.approx([sum(pretrained.MEAN) / 3])
    assert data["std"] == pytest.approx([sum(pretrained.STD) / 3])
    assert "test_top1" in run.summary


def test_freeze_names_and_weights_flags_are_checked(tmp_path):
    model = densekit.create_model("densenet-bc-40-k12", num_classes=10)
    from densekit.models.finetune import frozen_modules
    assert frozen_modules(model, ["features"]) == ["features"]
    assert frozen_modules(model, ["denseblock1", "features.transition1"]) == ["features.denseblock1",
                                                                               "features.transition1"]
    with pytest.raises(DensekitError, match="--freeze 'denseblock9': no such module"):
        frozen_modules(model, ["denseblock9"])
    with pytest.raises(DensekitError, match="would freeze the head"):
        frozen_modules(model, ["classifier"])
    with pytest.raises(DensekitError, match="applies with --freeze only"):
        densekit.TrainConfig(unfreeze_after=2).validate()
    # not checked by validate(): a resumed run takes its weights from its checkpoint, the file may be gone
    with pytest.raises(DensekitError, match="weights file missing.pth not found"):
        densekit.create_model("plain-cnn", weights="missing.pth")
    w = tmp_path / "w.pt"
    from densekit import save_weights
    save_weights(densekit.create_model("plain-cnn", num_classes=10, in_channels=1), w)
    cfg = densekit.TrainConfig(model="plain-cnn", dataset="digits", weights=str(w), epochs=1, batch_size=64,
                               val_split=0, workers=0, out=str(tmp_path / "runs"), name="w", tensorboard=False,
                               plots=False)
    trainer = densekit.engine.Trainer(cfg, verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.state_dict().values(), read_state_dict(w).values()))


def test_fine_tuning_flags_on_the_command_line(tmp_path):
    import subprocess
    import sys
    import yaml
    done = subprocess.run([sys.executable, "-m", "densekit", "lr-find", "--dataset", "digits", "--model",
                           "densenet-bc-40-k12", "--model-arg", "block_config=[3,3]", "--freeze", "denseblock1",
                           "transition1", "--unfreeze-after", "1", "--lr-backbone", "0.5", "--num-iter", "10",
                           "--workers", "0", "--out", str(tmp_path), "--name", "lr", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load((tmp_path / "lr" / "config.yaml").read_text())
    assert cfg["freeze"] == ["denseblock1", "transition1"] and cfg["unfreeze_after"] == 1
    assert cfg["lr_backbone"] == 0.5 and cfg["pretrained"] is False
