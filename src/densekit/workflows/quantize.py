"""Int8 post-training quantisation of densekit's exported ONNX graph, and its OpenVINO IR.

Static quantisation with onnxruntime's tools (``quantize_static``): QDQ format (QuantizeLinear /
DequantizeLinear pairs that onnxruntime and OpenVINO both fuse into int8 kernels), int8 weights
per output channel (symmetric), uint8 activations per tensor with min/max ranges observed on N
training images decoded exactly as training decodes them (the graph's input is raw pixels, so the
normalisation inside the graph is calibrated too). BatchNorm is already folded (export folds
before writing).

Concatenation, the heart of a DenseNet: every dense layer concatenates all earlier feature maps,
each calibrated to its own range. Quantising the Concat with onnxruntime's defaults gives its
output a scale of its own, so every input is requantised to it (a second rounding of every
feature map, once per layer that reads it). densekit quantises the convolutions, the classifier,
ReLU and Concat (``OPS``) and, with ``share_concat``, gives all tensors that a dense block's
concatenations connect one shared range (``concat_groups``, the union of their calibrated
ranges): each convolution writes its feature map in the scale the concatenation keeps, so the
concat is a copy, not a requantisation. Measured (``benchmarks/int8_concat.py``, docs/export.md):
a scale per tensor lost 3x the top-1 of shared ranges; leaving Concat in float is as accurate on
digits but agreed less with the float model on Fashion-MNIST.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DensekitError

CALIBRATE = 512           # training images that set the activation ranges
OPS = ["Conv", "Gemm", "MatMul", "Relu", "Concat"]   # quantised; BatchNorm and pooling stay float (docstring)


def calibration_pixels(spec, dataset: str, n: int = CALIBRATE, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` training images (uint8 N, C, H, W; a fixed random sample so every class is seen) of
    ``dataset`` at the spec's input shape, and a description."""
    from ..data import load_dataset
    if not 1 <= n <= 100_000:
        raise DensekitError(f"--calibrate {n}: give 1 to 100000 training images")
    c, h, w = spec.input_shape
    try:
        ds = load_dataset(dataset, "train", channels=c, image_size=(h, w))
    except DensekitError as err:
        raise DensekitError(f"cannot load the training split of {dataset} to calibrate int8 ({err})") from None
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    x = np.stack([np.asarray(ds[int(i)][0], dtype=np.uint8) for i in pick])
    return x, f"{len(pick)} training images of {dataset}"


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one feed dict per call, None at the end."""

    def __init__(self, name: str, pixels: np.ndarray, batch: int | None):
        step = batch or 64
        self.feeds = [{name: pixels[i:i + step].astype(np.float32)}
                      for i in range(0, len(pixels) - (len(pixels) % step if batch else 0), step)]
        self.rewind()

    def get_next(self):
        return next(self.iter, None)

    def rewind(self):
        self.iter = iter(self.feeds)


def concat_groups(proto) -> list[list[str]]:
    """Tensors that must share one quantisation scale: each Concat's inputs and output, joined
    transitively (in a dense block every feature map reaches every later concatenation, so a
    block is one group)."""
    parent: dict[str, str] = {}

    def root(t):
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t
    for node in proto.graph.node:
        if node.op_type == "Concat":
            for t in node.input:
                parent[root(t)] = root(node.output[0])
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(root(t), []).append(t)
    return [g for g in groups.values() if len(g) > 1]


def _shared_ranges(src: Path, reader: _Reader, groups: list[list[str]], tmp: Path) -> dict:
    """TensorQuantOverrides giving every tensor of a group the union of the group's calibrated ranges."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    calibrator = create_calibrator(str(src), None, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(reader)
    data = calibrator.compute_data()
    reader.rewind()
    overrides = {}
    for group in groups:
        ranges = [data[t].range_value for t in group if t in data]
        if ranges:
            lo = np.float32(min(0.0, *(float(np.min(r[0])) for r in ranges)))
            hi = np.float32(max(float(np.max(r[1])) for r in ranges))
            overrides.update({t: [{"rmin": lo, "rmax": hi}] for t in group})
    return overrides


def quantize_onnx(float_model: bytes, pixels: np.ndarray, ops=OPS, share_concat: bool = True) -> bytes:
    """The int8 QDQ model (serialised) of the float ONNX model ``float_model`` calibrated on uint8
    ``pixels``; its metadata is the caller's to set."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    proto = onnx.load_from_string(float_model)
    inp = proto.graph.input[0]
    dim = inp.type.tensor_type.shape.dim[0]
    batch = dim.dim_value if dim.HasField("dim_value") else None
    if batch and len(pixels) < batch:
        raise DensekitError(f"calibration needs at least {batch} images for this fixed-batch graph")
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)   # its advice to pre-process: densekit's graph is already folded
    with tempfile.TemporaryDirectory(prefix="densekit-int8-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(float_model)
        reader = _Reader(inp.name, pixels, batch)
        extra = {"WeightSymmetric": True, "ActivationSymmetric": False}
        if share_concat and (ops is None or "Concat" in ops):   # a float Concat has no scale to share
            extra["TensorQuantOverrides"] = _shared_ranges(src, reader, concat_groups(proto), Path(tmp))
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(ops) if ops else None, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options=extra)
        logging.getLogger().setLevel(quiet)
        return dst.read_bytes()


def to_openvino(onnx_model: bytes, meta_strings: dict[str, str]) -> tuple[bytes, bytes]:
    """The OpenVINO IR (``.xml`` text, ``.bin`` weights) of an ONNX model, float or int8 QDQ (its
    Q/DQ pairs become OpenVINO FakeQuantize, run as int8), with densekit's metadata in the IR's
    ``rt_info`` under ``densekit``. Weights stay float32 (no fp16 compression: the parity check
    compares with float32)."""
    try:
        import openvino as ov
    except ImportError:
        from ..extras import missing_extra
        raise missing_extra("--format openvino", "openvino", "openvino") from None
    with tempfile.TemporaryDirectory(prefix="densekit-ov-") as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(onnx_model)
        model = ov.convert_model(str(src))
        for key, value in meta_strings.items():
            model.set_rt_info(value, ["densekit", key])
        out = Path(tmp) / "model.xml"
        ov.save_model(model, str(out), compress_to_fp16=False)
        # OpenVINO finds the weights beside the .xml under the same stem: the caller writes both
        return out.read_bytes(), out.with_suffix(".bin").read_bytes()
