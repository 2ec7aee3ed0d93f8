"""TFLite conversions, all from the SavedModel (the route Google's converter supports best).

Returns flatbuffer bytes without metadata; `edgetl.export.export_artifact` embeds the metadata and
writes the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Swallow the converter's C++ chatter on fd 2 (it tears the progress bar apart).

    The text is handed back so a failing conversion can still show what MLIR said.
    """
    out: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreter): nothing to capture
        yield out
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            import sys

            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _representative(images: np.ndarray):
    """One image per step: the converter's calibrator expects the model's own batch-1 signature."""

    def gen():
        for i in range(len(images)):
            yield [images[i : i + 1].astype(np.float32)]

    return gen


def convert(
    saved_model_dir: str | Path,
    fmt: str,
    calibration_images: np.ndarray | None = None,
    io_type: str = "uint8",
) -> bytes:
    """Flatbuffer bytes of `fmt` (one of the tflite-* FORMATS) from a SavedModel.

    For tflite-int8, `io_type` uint8 keeps the input as raw pixels (scale 1, zero point 0) so a
    camera frame goes in untouched; int8 shifts by 128; float32 adds quantize/dequantize ops.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if fmt == "tflite-float32":
        pass
    elif fmt == "tflite-float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif fmt == "tflite-int8":
        if calibration_images is None or len(calibration_images) == 0:
            raise ValueError("tflite-int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(np.asarray(calibration_images, np.float32))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io_type in ("uint8", "int8"):
            dtype = tf.uint8 if io_type == "uint8" else tf.int8
            converter.inference_input_type = dtype
            converter.inference_output_type = dtype
        elif io_type != "float32":
            raise ValueError(f"unknown io_type {io_type!r}")
    else:
        raise ValueError(f"not a TFLite format: {fmt!r}")
    error: Exception | None = None
    with captured_native_stderr() as log:
        try:
            data = converter.convert()
        except Exception as e:  # re-raised below, once the converter's log is readable
            error = e
    if error is not None:
        tail = "".join(log)[-2000:].strip()
        raise RuntimeError(f"TFLite conversion to {fmt} failed: {error}" + (f"\nconverter log:\n{tail}" if tail else "")) from error
    return bytes(data)


def with_metadata(flatbuffer: bytes, metadata: dict) -> bytes:
    """Flatbuffer + the appended metadata archive (edgetl.runtime's format, byte-for-byte reproducible)."""
    from edgetl.runtime import embed_tflite_metadata

    return embed_tflite_metadata(flatbuffer, metadata)
