"""ONNX conversions: tf2onnx from the Keras model, onnxruntime static quantization for int8.

Returns serialized ModelProto bytes with the edgetl metadata in `metadata_props` (docs/interfaces.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INPUT_NAME = "image"


def to_onnx_float(model, opset: int | None = None):
    """Keras model -> float32 ModelProto with a dynamic batch dimension.

    tf2onnx cannot infer an input signature from a Keras 3 model, so it is given one explicitly
    (batch None, so a device can run several images per call).
    """
    import tensorflow as tf
    import tf2onnx

    from . import ONNX_OPSET

    shape = tuple(model.inputs[0].shape)  # (None, R, R, 3)
    spec = (tf.TensorSpec((None, *shape[1:]), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset or ONNX_OPSET)
    return proto


class _ImagesReader:
    """onnxruntime CalibrationDataReader over float32 pixel arrays, one image per step (in order)."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.input_name = input_name
        self.images = np.asarray(images, np.float32)
        self.i = 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        batch = self.images[self.i : self.i + 1]
        self.i += 1
        return {self.input_name: batch}

    def rewind(self):
        self.i = 0


def quantize_int8(float_proto, calibration_images: np.ndarray):
    """Static QDQ quantization: per-channel int8 weights, uint8 activations (onnxruntime's x86 default).

    The model is pre-processed first (shape inference + graph optimization), which onnxruntime
    recommends so that folded ops get quantized as one.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edgetl-onnx-quant-") as tmp:
        src = Path(tmp) / "float.onnx"
        pre = Path(tmp) / "pre.onnx"
        dst = Path(tmp) / "int8.onnx"
        onnx.save(float_proto, str(src))
        model_in = src
        # Symbolic shape inference needs sympy, which onnxruntime does not require; these models have
        # static shapes but the batch, so ONNX's own shape inference is enough without it.
        for skip_symbolic in (False, True):
            try:
                quant_pre_process(str(src), str(pre), skip_symbolic_shape=skip_symbolic)
                model_in = pre
                break
            except ImportError:
                continue
            except Exception:  # pre-processing is an optimization; quantization works without it
                break
        input_name = float_proto.graph.input[0].name
        quantize_static(
            str(model_in),
            str(dst),
            _ImagesReader(input_name, calibration_images),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return onnx.load(str(dst))


def with_metadata(proto, metadata: dict):
    """Put `edgetl` (JSON) and `labels` (newline-joined) into metadata_props, replacing old ones."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in ("edgetl", "labels")]
    del proto.metadata_props[:]
    for key, value in keep + [("edgetl", json.dumps(metadata)), ("labels", "\n".join(metadata["labels"]))]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def convert(model, fmt: str, metadata: dict, calibration_images: np.ndarray | None = None) -> bytes:
    """Serialized ONNX model of `fmt` (onnx-float32 or onnx-int8), metadata included."""
    if fmt not in ("onnx-float32", "onnx-int8"):
        raise ValueError(f"not an ONNX format: {fmt!r}")
    proto = to_onnx_float(model)
    if fmt == "onnx-int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("onnx-int8 needs calibration images")
        proto = quantize_int8(proto, calibration_images)
    proto.doc_string = f"edgetl {fmt}"
    return with_metadata(proto, metadata).SerializeToString()
