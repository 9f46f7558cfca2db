"""``OpenVinoModel``: an exported OpenVINO IR (``model.xml`` + ``model.bin``) with OpenVINO, numpy and
Pillow only (no torch); the same ``predictions.Predictor`` as ``OnnxModel``, so decoding,
probabilities and results are the base class's.

The IR is densekit's ONNX graph converted (``quantize.to_openvino``): raw pixels in, logits out,
the metadata in its ``rt_info``. The file's ``quantization`` says how it computes: float32 (None),
``bf16`` (OpenVINO's inference precision hint: bf16 matrix units, AMX where the processor has
them) or ``int8`` (from an int8 QDQ graph). OpenVINO's CPU plugin picks bf16 by itself on
processors with bf16 units; a float32 file is compiled with the f32 hint so that it computes what
its parity check measured.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DensekitError
from ..predictions import Predictor
from ..spec import InputSpec
from . import metadata

HINTS = {None: "f32", "int8": "f32", "bf16": "bf16"}   # int8 layers run int8 whatever the hint; the rest f32


class OpenVinoModel(Predictor):
    """An exported densekit model as OpenVINO IR; ``spec``, ``meta`` as ``OnnxModel``'s.
    ``threads``: OpenVINO's inference threads (None: its default). OpenVINO's compiled model is
    thread-safe; each call makes its own infer request."""

    backend = "openvino"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None, tta: str | None = None):
        try:
            import openvino as ov
        except ImportError:
            from ..extras import missing_extra
            raise missing_extra("an OpenVINO IR", "openvino", "openvino") from None
        self.path = Path(path)
        if not self.path.is_file() or not self.path.with_suffix(".bin").is_file():
            raise DensekitError(f"{self.path} (and its .bin) not found; give the .xml written by "
                                "`densekit export --format openvino`")
        if device not in ("auto", "cpu"):
            raise DensekitError(f"device {device!r}: densekit runs OpenVINO on the CPU; use --device cpu")
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as err:  # OpenVINO raises RuntimeError with a long trace for a damaged IR
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise DensekitError(f"{self.path} is not a loadable OpenVINO IR ({first}); export it again") from None
        props = {}
        if model.has_rt_info(["densekit", "format"]):
            props = {str(k): model.get_rt_info(["densekit", str(k)]).astype(str)
                     for k in model.get_rt_info()["densekit"]}
        self.meta = metadata.from_strings(props, str(self.path))
        inp, out = model.inputs[0], model.outputs[0]
        shape = [d.get_length() if d.is_static else None for d in inp.get_partial_shape()]
        out_shape = out.get_partial_shape()
        self.spec = InputSpec.from_metadata(self.meta, str(self.path), input_shape=tuple(shape[1:]),
                                            num_outputs=out_shape[-1].get_length() if out_shape[-1].is_static else None)
        if tta is not None and tta != self.spec.tta:
            raise DensekitError(f"{self.path} applies tta={self.spec.tta} inside its graph; export again with "
                                f"--tta {tta} to predict with {tta}")
        config = {"INFERENCE_PRECISION_HINT": HINTS[self.spec.quantization], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(model, "CPU", config)
        self.core = core    # the Core outlives what it compiled (its plugin threads are released last)
        self.device, self.batch_size = "cpu", shape[0]

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """float32 logits (N, classes) of raw pixels (N, C, H, W), 0..255, as ``OnnxModel.logits``."""
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != self.input_shape:
            raise DensekitError(f"expected pixels of shape (N, {', '.join(map(str, self.input_shape))}), "
                                f"got {tuple(pixels.shape)}; decode images with decode()")
        x = np.ascontiguousarray(pixels, dtype=np.float32)
        b = self.batch_size
        if b is None or len(x) == b:
            return np.asarray(self.compiled.create_infer_request().infer([x])[0], dtype=np.float32)
        n = len(x)
        if n % b:
            x = np.concatenate([x, np.zeros((-n % b, *x.shape[1:]), np.float32)])
        request = self.compiled.create_infer_request()
        return np.concatenate([np.array(request.infer([x[i:i + b]])[0]) for i in range(0, len(x), b)])[:n]
