"""tflite-int8-mixed: full integer quantization with the layers int8 hurts most kept in float.

The ladder's first rung (`edgetl.export.ladder`). TensorFlow's QuantizationDebugger calibrates the model once
on the calibration images and runs its debug model on them, where every quantized op is checked against its
float op fed the same (quantized) inputs. Each layer is ranked by the RMSE of that difference divided by its
output's quantization step (`rmse/scale`, the measure of TensorFlow's quantization-debugger guide: above ~0.7
a layer is off by more than rounding would explain). A layer fed by a damaged one can rank high too (its
float op's output leaves the calibrated range and the int8 one saturates), one reason the top 1, 2, 4, ...
layers (never more than `MAX_FLOAT_SHARE` of them) are kept in float in turn
(`QuantizationDebugOptions(denylisted_nodes=...)`, the calibrated model quantized again without them) until
the file passes the export check (`accept`: the overall and per-class gates of `edgetl.export.run`). Only the
quantization is redone per step, not the calibration.

The input and output keep `ExportConfig.io_type` like tflite-int8 (uint8 by default): the debugger's model
has float input and output around quantize ops, which TensorFlow's own `modify_model_io_type` (what
TFLiteConverter calls for `inference_input_type`) folds into uint8 or int8 ones. The layers kept in float
take dequantized int8 inputs and give their outputs back quantized: what they remove is their own weight and
arithmetic rounding, not the rounding of the activations around them.

Bias correction: the file is converted from the same model as tflite-int8 (the bias-corrected copy unless
`--no_bias_correction`). The correction is not redone per set of float layers, so a layer kept in float
carries the bias shift meant for its int8 weights: a mean error of the size its rounding would have caused,
while every layer still in int8 keeps its correction.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetl.export.tflite import _representative, converter_for, finish
from edgetl.io.files import atomic_write_bytes
from edgetl.io.native_stderr import captured_native_stderr

FORMAT = "tflite-int8-mixed"
RANKING_METRIC = (
    "rmse/scale: RMSE of each quantized layer's output against its float op on the same inputs, in units of "
    "its output quantization step, over the calibration images (TFLite QuantizationDebugger)"
)
MAX_FLOAT_SHARE = 0.5  # beyond half of the layers in float, 16x8 and float16 are the better rungs


def schedule(num_layers: int, max_share: float = MAX_FLOAT_SHARE) -> list[int]:
    """How many of the top-ranked layers each step keeps in float: 1, 2, 4, ... up to the cap (included)."""
    cap = max(1, int(num_layers * max_share)) if num_layers else 0
    steps, k = [], 1
    while k < cap:
        steps.append(k)
        k *= 2
    return steps + [cap] if cap else []


class MixedQuantizer:
    """One calibration of `source` (an `edgetl.export.artifact.ModelSource`), its layer ranking, and the
    quantized models with chosen layers kept in float."""

    def __init__(self, source, calibration_images: np.ndarray):
        import tensorflow as tf

        self.tf = tf
        converter = converter_for(source)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(np.asarray(calibration_images, np.float32))
        with captured_native_stderr():  # the debugger's quantizer prints its settings on every call
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=converter.representative_dataset
            )
            self.debugger.run()
        self.ranking = ranking(self.debugger)

    def quantize(self, keep_float: list[str], io_type: str) -> bytes:
        """The bare flatbuffer, fully quantized but for the ops whose outputs are `keep_float` (tensor names)."""
        tf = self.tf
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_float))
        with captured_native_stderr():
            self.debugger.options = options
            data = bytes(self.debugger.get_nondebug_quantized_model())  # float input and output, then:
        if io_type in ("uint8", "int8"):
            from tensorflow.lite.python.util import modify_model_io_type  # what TFLiteConverter itself calls

            dtype = tf.uint8 if io_type == "uint8" else tf.int8
            data = bytes(modify_model_io_type(data, dtype, dtype))
        return data


def ranking(debugger) -> list[dict]:
    """Every quantized layer, worst first: its output tensor (the name a denylist takes), op and rmse/scale."""
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)  # the public form of its statistics, with each layer's scale
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        error = float(np.sqrt(float(row["mean_squared_error"])) / scale) if scale > 0 else float("inf")
        rows.append({"tensor": row["tensor_name"], "op": row["op_name"], "rmse_per_scale": round(error, 4)})
    return sorted(rows, key=lambda r: (-r["rmse_per_scale"], r["tensor"]))


def convert_mixed(
    source,
    calibration_images: np.ndarray,
    metadata: dict,
    out_path: Path,
    io_type: str,
    accept: Callable[[Path], str],
    log: Callable[[str], None],
) -> dict:
    """Write tflite-int8-mixed to `out_path`, keeping more layers in float until `accept(out_path)` says "ok"
    (else the last step's file stays); returns what export.json records about the search."""
    quantizer = MixedQuantizer(source, calibration_images)
    ranked = quantizer.ranking
    if not ranked:
        raise ValueError("the debugger found no quantized layer to keep in float")
    steps, keep = [], []
    for k in schedule(len(ranked)):
        keep = [r["tensor"] for r in ranked[:k]]
        data = finish(quantizer.quantize(keep, io_type), {**metadata, "float_layers": keep})
        atomic_write_bytes(out_path, data, f"the {FORMAT} artifact")
        status = accept(out_path)
        steps.append({"float_layers": k, "size_bytes": len(data), "status": status})
        log(f"{FORMAT}: {k} of {len(ranked)} layer(s) in float: {status}")
        if status == "ok":
            break
    return {
        "float_layers": keep,
        "layer_ranking": ranked,
        "ranking_metric": RANKING_METRIC,
        "float_layer_steps": steps,
    }
