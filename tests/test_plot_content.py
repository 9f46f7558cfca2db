"""What the run's plots show, read back from the figures: top-1 in percent as everywhere else,
and past 50 classes the most-confused pairs as a table instead of an unreadable matrix."""
import torch

from densekit.tracking.plots import plot_confusion, plot_curves


def test_curves_show_top1_in_percent(tmp_path):
    metrics = [{"epoch": 1, "train_loss": 1.5, "train_top1": 0.5, "val_loss": 1.2, "val_top1": 0.625},
               {"epoch": 2, "train_loss": 0.9, "train_top1": 0.75, "val_loss": 0.8, "val_top1": 0.8125}]
    loss, top1 = plot_curves(metrics, tmp_path / "curves.png")
    assert top1["title"] == "top-1 (%)" and top1["ylabel"] == "%"
    assert top1["lines"]["train"][1] == [50.0, 75.0] and top1["lines"]["val"][1] == [62.5, 81.25]
    assert loss["lines"]["train"][1] == [1.5, 0.9] and (tmp_path / "curves.png").stat().st_size > 0


def test_a_confusion_matrix_past_fifty_classes_becomes_the_most_confused_pairs(tmp_path):
    n = 60
    g = torch.Generator().manual_seed(0)
    confusion = (torch.randint(0, 3, (n, n), generator=g) + 40 * torch.eye(n, dtype=torch.long))
    confusion[7, 41] = 25      # the worst pair: 7 taken for 41
    confusion[3, 9] = 20
    classes = [f"class{i}" for i in range(n)]
    (ax,) = plot_confusion(confusion.tolist(), classes, tmp_path / "confusion.png")
    header, first, second, *rest = ax["table"]
    assert header == ["true", "predicted as", "images", "of the true class"]
    share = 25 / confusion[7].sum().item()
    assert first == ["class7", "class41", "25", f"{100 * share:.1f}%"] and second[:3] == ["class3", "class9", "20"]
    assert len(rest) == 28 and "most-confused pairs of 60 classes" in ax["title"]
    (ax,) = plot_confusion(confusion[:10, :10].tolist(), classes[:10], tmp_path / "small.png")
    assert not ax["table"] and ax["title"].startswith("test confusion matrix")   # the matrix, as before
