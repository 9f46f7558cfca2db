"""Why did the model decide that? Grad-CAM and saliency maps for a trained run.

Grad-CAM (Selvaraju et al., arXiv 1610.02391): the class score's gradient with respect to the
last convolutional feature maps, averaged over space, weights those maps; the ReLU of the
weighted sum, upsampled to the image, is the heat map. densekit takes the maps from the model's
``forward_features`` (for a DenseNet: the output of the last dense block after the final
BatchNorm-ReLU, ``features.norm5``) and the score from ``forward_head``, so every model of the
zoo is explained the same way.

Gradients are taken with ``torch.autograd.grad`` on the feature *tensor*, never with module
backward hooks: DenseNets (and the baselines) use in-place ReLUs, and PyTorch refuses an
in-place operation on the output of a module that carries a full backward hook (the error that
hook-based Grad-CAM code hits on torchvision's DenseNet and ResNet); the older non-full hooks
instead report gradients of the wrong tensor. A gradient with respect to a tensor has neither
problem, and needs no hook to remove afterwards.

Saliency (Simonyan et al., arXiv 1312.6034): |d class score / d input pixel|, the maximum over
channels. The run is loaded as ``predict`` loads it (``engine.infer.TorchPredictor``): images are
decoded and normalised exactly as there, ``top_k`` is ``predict``'s own result (the run's precision
and test-time augmentation), and by default the class explained is its top-1; the map itself is
the gradient of one view in float32 (a gradient through averaged mirrored views would blur it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..decode import expand_images
from ..errors import DensekitError
from ..files import check_target, save_figure
from .infer import TorchPredictor

METHODS = ("gradcam", "saliency")


def gradcam(model, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(heat maps N x H x W in [0, 1] at the input's size, logits) for class ``target`` of each image."""
    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        raise DensekitError(f"{type(model).__name__} has no forward_features/forward_head: Grad-CAM needs the "
                            "last feature maps; use --method saliency")
    feats = model.forward_features(x)
    logits = model.forward_head(feats)
    if feats.dim() != 4:
        raise DensekitError(f"{type(model).__name__}'s features are {tuple(feats.shape)}, not maps: "
                            "use --method saliency")
    score = logits.gather(1, target[:, None]).sum()
    grads, = torch.autograd.grad(score, feats)
    weights = grads.mean((2, 3), keepdim=True)                 # alpha_k^c: global-average-pooled gradients
    cam = F.relu((weights * feats).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
    return _unit(cam.detach()), logits.detach()


def saliency(model, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(|d score / d pixel|, max over channels, N x H x W in [0, 1], logits)."""
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    grads, = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return _unit(grads.abs().amax(1)), logits.detach()


def _unit(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1] by its own maximum (an all-zero map stays zero)."""
    peak = maps.flatten(1).amax(1).clamp_min(1e-12)
    return maps / peak[:, None, None]


def explain(run_or_checkpoint: str | Path, images, method: str = "gradcam", out: str | Path | None = None,
            top_k: int = 3, device: str = "auto", target: str | int | None = None) -> list[dict]:
    """Heat maps of why a run's model classified each image as it did.

    ``images``: files or folders (expanded like ``predict``), PIL images or uint8 tensors C x H x W.
    ``method``: "gradcam" or "saliency". ``target``: a class name or index to explain for every
    image; None explains each image's top-1 class. ``out``: a folder for one PNG per image (the
    image, and the heat map over it, titled with the top-k classes).
    Returns ``[{"file", "top_k": [{"label", "index", "prob"}], "explained": label, "method",
    "heatmap": float32 H x W in [0, 1], "image": uint8 H x W x C, "png": path or None}]``."""
    if method not in METHODS:
        raise DensekitError(f"unknown method {method!r}: choose gradcam or saliency")
    predictor = TorchPredictor(run_or_checkpoint, device=device)
    model, graph, dev = predictor.net, predictor.model, predictor.device
    classes = list(predictor.spec.classes)
    target_index = _target(target, classes)
    items = images if isinstance(images, (list, tuple)) else [images]
    if items and isinstance(items[0], (str, Path)):
        items = expand_images(items)
    if not items:
        raise DensekitError("no images to explain; give image files or folders of images")
    fn = gradcam if method == "gradcam" else saliency
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:   # a file in the way or a read-only place: refused before any work
        check_target(out_dir / "explain.png", flag="--out")
    results = []
    for i, item in enumerate(items):
        name = str(item) if isinstance(item, (str, Path)) else None
        pixels = predictor.decode(item, name)
        guesses = predictor.results(pixels[None], top_k)[0]["top_k"]
        explained = torch.tensor([guesses[0]["index"] if target_index is None else target_index], device=dev)
        x = graph.normalise(torch.from_numpy(pixels)[None].to(dev).float())
        heat, _ = fn(model, x, explained)
        result = {"file": name, "method": method, "explained": classes[int(explained[0])], "top_k": guesses,
                  "heatmap": heat[0].float().cpu().numpy(), "image": pixels.transpose(1, 2, 0), "png": None}
        if out_dir is not None:
            stem = Path(name).stem if name else f"image{i:04d}"
            result["png"] = str(save_overlay(result, out_dir / f"{i:04d}-{stem}-{method}.png"))
        results.append(result)
    return results


def _target(target, classes) -> int | None:
    if target is None:
        return None
    if isinstance(target, int) or (isinstance(target, str) and target not in classes and target.isdigit()):
        index = int(target)
        if not 0 <= index < len(classes):
            raise DensekitError(f"class index {index} out of range: the model has {len(classes)} classes")
        return index
    if target not in classes:
        raise DensekitError(f"unknown class {target!r}: the model's classes are {', '.join(classes[:20])}")
    return classes.index(target)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heat map in matplotlib's "jet" colours blended over the image: uint8 H x W x 3."""
    from matplotlib import colormaps
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    colours = colormaps["jet"](heat)[:, :, :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 255).astype(np.uint8)


def save_overlay(result: dict, path: Path, display: int = 224) -> Path:
    """A PNG of the image beside the heat map over it, titled with the top-k classes. Small images
    are enlarged by Pillow (nearest, so pixels stay visible) to about ``display`` pixels."""
    from PIL import Image
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, heat = result["image"], result["heatmap"]
    h, w = heat.shape
    scale = max(1, display // max(h, w))
    big = lambda a: np.asarray(Image.fromarray(a).resize((w * scale, h * scale), Image.NEAREST))  # noqa: E731
    plain = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.4))
    for ax, picture in zip(axes, (big(plain), big(overlay(image, heat)))):
        ax.imshow(picture)
        ax.axis("off")
    guesses = ", ".join(f"{g['label']} {100 * g['prob']:.0f}%" for g in result["top_k"])
    fig.suptitle(f"{guesses}\n{result['method']} of {result['explained']!r}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path
