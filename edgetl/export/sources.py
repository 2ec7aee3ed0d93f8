"""What the calibrated formats of a run are converted from: its calibration set (drawn from the training split,
or read from `--calibration_manifest`), the disjoint sets `--calibration_repeats` adds, and the bias-corrected
copy of the model (`edgetl.export.bias_correction`); each built once per run, on first need, in `RunInputs`."""

from __future__ import annotations

from collections.abc import Callable

from edgetl.export import calibration as calib
from edgetl.export import repeats
from edgetl.export.artifact import ModelSource
from edgetl.export.bias_correction import correct_biases
from edgetl.export.config import ExportConfig
from edgetl.export.inputs import RunInputs, load_keras_model
from edgetl.io.faults import fault_point

Log = Callable[[str], None]


def calibration(inputs: RunInputs, config: ExportConfig, log: Log):
    """The calibration set of this run: from the manifest when one is given, else drawn from the training split."""

    if inputs.calibration is None:
        fault_point("calibration")
        resolution = int(inputs.run["backbone"]["resolution"])
        if config.calibration_manifest is not None:
            inputs.calibration = calib.calibration_set_from_manifest(
                calib.load_manifest(config.calibration_manifest), resolution, fallback_root=inputs.run["image_dir"]
            )
        else:
            inputs.calibration = calib.build_calibration_set(
                inputs.dataset, resolution, config.num_calibration_images, inputs.load
            )
        for note in inputs.calibration.notes:
            log(f"note: {note}")
    return inputs.calibration


def int8_source(inputs: RunInputs, config: ExportConfig, log: Log) -> ModelSource:
    """The model int8 formats are converted from: bias-corrected once per run, or the model as trained."""
    if not config.bias_correction:
        return inputs.source
    if inputs.int8_source is None:
        model = load_keras_model(inputs.run_dir / "model.keras")  # a copy to change
        images = calibration(inputs, config, log).images
        fault_point("bias_correction")
        report = correct_biases(model, images)
        log(
            f"note: int8 bias correction: {report.layers} layer(s) shifted by up to {report.max_shift:.3g}, "
            f"from {report.images} calibration images"
        )
        inputs.int8_source = ModelSource(model, None)  # in memory only: no SavedModel to write (tflite.py)
    return inputs.int8_source


def calibration_sets(inputs: RunInputs, config: ExportConfig, log: Log) -> list:
    """The run's first calibration set, then the disjoint ones `--calibration_repeats` draws (`repeats`)."""
    if inputs.calibration_sets is None:
        resolution, n = int(inputs.run["backbone"]["resolution"]), config.num_calibration_images

        def draw(used):
            return calib.build_calibration_set(inputs.dataset, resolution, n, inputs.load, used)

        first = calibration(inputs, config, log)
        inputs.calibration_sets = repeats.disjoint_sets(first, config.calibration_repeats, draw, log)
    return inputs.calibration_sets
