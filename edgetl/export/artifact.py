"""Convert a model into one format and write the artifact atomically, its metadata embedded.

Each converter module (`edgetl.export.tflite`, `edgetl.export.onnx`) has the same signature,
``convert(source, fmt, metadata, calibration_images, io_type) -> bytes``, as Keras' exporters share one;
the format table says which module a format belongs to.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl import __version__
from edgetl.export.formats import FORMATS, IO_TYPE_FORMATS, ExportError, check_io_type
from edgetl.io.files import atomic_write_bytes, writing
from edgetl.io.text import visible
from edgetl.runtime.images import PREPROCESSING


@dataclass(frozen=True)
class ModelSource:
    """A trained model as the converters read it: the Keras model (tf2onnx, and TFLite from its frozen forward
    function), or for TFLite a SavedModel when `saved_model_dir` names one (its signature's batch).

    `batch_size` fixes the input's batch dimension (None: dynamic). Batch 1 by default: NNAPI and Core ML
    partition only fixed shapes, and a device classifies one frame at a time; the host still runs a fixed
    file on many images (`edgetl.runtime.backends`)."""

    keras_model: object
    saved_model_dir: Path | None
    batch_size: int | None = 1


def artifact_metadata(run: dict, fmt: str, batch_size: int | None = 1) -> dict:
    """edgetl.json for an artifact of this run (docs/interfaces.md), built from run.json; `batch_size` is the
    input's fixed batch (None: dynamic)."""

    bb = run["backbone"]
    return {
        "edgetl_version": __version__,
        "format": fmt,
        "labels": [visible(c) for c in run["classes"]],  # never a control character into a model file
        "backbone": {k: bb[k] for k in ("version", "alpha", "resolution", "weights")},
        "input": {
            "size": int(bb["resolution"]),
            "batch": batch_size,
            "mean": 0.0,
            "std": 1.0,
            "preprocessing": PREPROCESSING,
        },
    }


def export_artifact(
    source: ModelSource,
    fmt: str,
    out_path: str | Path,
    metadata: dict,
    calibration_images: np.ndarray | None = None,
    io_type: str = "uint8",
) -> Path:
    """Convert `source` into `fmt` and write it to `out_path` atomically, metadata embedded.

    `calibration_images` are float32 pixels 0..255, shape (N, R, R, 3), preprocessed exactly as at
    inference: required for formats that need calibration. `io_type` applies to tflite-int8 only. No
    check is run here (that needs test images and the float predictions: `edgetl.export.run` does it).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    check_io_type(io_type)
    spec = FORMATS[fmt]
    if spec.needs_calibration:
        if calibration_images is None or len(calibration_images) == 0:
            raise ExportError(f"{fmt} needs calibration images (representative dataset); none were given")
        calibration_images = np.asarray(calibration_images, dtype=np.float32)
    metadata = json.loads(json.dumps(metadata, default=str))  # deep copy, JSON-clean
    metadata["format"] = fmt
    if fmt in IO_TYPE_FORMATS:
        metadata.setdefault("input", {})["dtype"] = io_type
    converter = importlib.import_module(f"edgetl.export.{spec.runtime}")
    with writing(out_path, f"the {fmt} conversion's temporary files"):
        data = converter.convert(source, fmt, metadata, calibration_images, io_type)
    return atomic_write_bytes(out_path, data, f"the {fmt} artifact")
