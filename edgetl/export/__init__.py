"""`edgetl export`: turn a trained run into every artifact a device team may want, each checked.

- `formats`: the table of formats (`FORMATS`) and the flags that name them; `ExportError`.
- `config`: `ExportConfig`, every setting with its default and its check.
- `artifact`: one format converted and written, metadata embedded (`export_artifact`), through the
  converter modules `tflite` and `onnx`, which share one signature; `calibration` and `bias_correction`
  prepare the int8 formats, `sources` holds what a run's calibrated formats are converted from.
- `inputs`: what every format of a run shares (`load_run_inputs`); `run`: one format converted and
  checked against the float Keras model (`export_format`); `fidelity` the per-class part of the check;
  `ladder` the rungs tried when an int8 file fails, `tflite_mixed` its first rung (int8 with the worst layers in
  float); `repeats` the spread over `--calibration_repeats` calibration sets; `pipeline` all of a run's formats
  (`export_run`).

Importing this package stays TensorFlow-free (the CLI, `edgetl.cli.export`, builds its parser from it):
TensorFlow, tf2onnx and onnxruntime are imported by the converters, on use.

Callable as the stage's function: ``edgetl.export(...)`` is ``edgetl.export.pipeline.export_run(...)``.
"""

from edgetl import callable_stage
from edgetl.export.artifact import ModelSource, artifact_metadata, export_artifact
from edgetl.export.config import ExportConfig
from edgetl.export.formats import (
    FORMATS,
    IO_TYPES,
    ONNX_OPSET,
    QUANTIZATIONS,
    RECIPE_VERSION,
    RUNTIMES,
    ExportError,
    FormatSpec,
    formats_from_flags,
)
from edgetl.export.inputs import load_run_inputs, read_run
from edgetl.export.ladder import LADDER, climb
from edgetl.export.pipeline import export_run
from edgetl.export.predictions import check_predictions
from edgetl.export.run import (
    ARTIFACTS_DIR,
    EXPORT_SUMMARY,
    ExportResult,
    check_status,
    export_format,
    merge_export_entry,
    read_export_summary,
)

__all__ = [
    "ARTIFACTS_DIR",
    "EXPORT_SUMMARY",
    "FORMATS",
    "IO_TYPES",
    "LADDER",
    "ONNX_OPSET",
    "QUANTIZATIONS",
    "RECIPE_VERSION",
    "RUNTIMES",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "FormatSpec",
    "ModelSource",
    "artifact_metadata",
    "check_predictions",
    "check_status",
    "climb",
    "export_artifact",
    "export_format",
    "export_run",
    "formats_from_flags",
    "load_run_inputs",
    "merge_export_entry",
    "read_export_summary",
    "read_run",
]

callable_stage(__name__)
