"""`ExportConfig`: every setting of `edgetl export` and of the sweep's export stage, defaults and checks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgetl.export.formats import (
    FORMATS,
    IO_TYPES,
    LADDER_TRIGGERS,
    ON_REQUEST,
    ExportError,
    check_formats,
    check_io_type,
)
from edgetl.params import Interval, OneOf, validate


@dataclass(frozen=True)
class ExportConfig:
    """How a trained run becomes artifacts. Validated on construction, so a bad flag fails before any work.

    `num_calibration_images` are drawn from the training split (balanced across classes) for formats
    that need calibration, unless `calibration_manifest` names the images to reuse (bit-identical int8).
    `bias_correction` converts int8 formats from a copy of the model whose biases compensate the mean
    shift of int8-rounded weights. `num_threads` runs the artifacts during their checks. A check fails
    when an artifact's test accuracy is below the float model's by more than `max_accuracy_drop` points
    and significantly so (McNemar's exact test, paired on the same test images, alpha 0.05), or when one
    class of a non-float32 format is below the float model's by more than `max_class_drop` points and
    significantly so after Holm's correction over classes, measured on up to `fidelity_images_per_class`
    images per class that did not calibrate it (`edgetl.export.fidelity`; 0 turns the per-class check off).
    `quantization_ladder`: an int8 file that fails its check is followed by the ladder's rungs until one
    passes (`edgetl.export.ladder`). `dynamic_batch` leaves the input's batch dimension open; by default it is
    fixed at 1, which NNAPI and Core ML need to take the whole graph (`edgetl.export.accelerators`).
    `calibration_repeats` K > 1 converts and checks each calibrated format again on K - 1 further calibration
    sets, disjoint from the first, and records the spread of its overall and per-class accuracy
    (`edgetl.export.repeats`); the artifact kept is the first set's.
    """

    formats: tuple[str, ...] = tuple(f for f in FORMATS if f not in ON_REQUEST)
    io_type: str = IO_TYPES[0]
    num_calibration_images: int = 200
    calibration_manifest: Path | None = None
    bias_correction: bool = True
    num_threads: int = os.cpu_count() or 1  # a check is not a latency measurement: all cores
    max_accuracy_drop: float = 1.0  # points below the float model, significantly, before a check fails
    max_class_drop: float = 3.0  # points one class may lose, significantly after Holm, before a check fails
    fidelity_images_per_class: int = 200  # images per class the per-class check is measured on; 0: off
    quantization_ladder: bool = True  # an int8 file that fails its check: tflite-int8-mixed, int16x8, float16
    dynamic_batch: bool = False  # input batch dimension open (several images per call) instead of fixed at 1
    calibration_repeats: int = 1  # calibrated formats converted and checked on this many disjoint sets; 1: off

    CONSTRAINTS: ClassVar[dict] = {
        "num_calibration_images": Interval(int, 1),
        "bias_correction": OneOf((True, False)),
        "num_threads": Interval(int, 1),
        "max_accuracy_drop": Interval(float, 0, 100),  # points
        "max_class_drop": Interval(float, 0, 100),  # points
        "fidelity_images_per_class": Interval(int, 0),  # 0: no per-class check
        "quantization_ladder": OneOf((True, False)),
        "dynamic_batch": OneOf((True, False)),
        "calibration_repeats": Interval(int, 1, 20),
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", check_formats(self.formats))
        check_io_type(self.io_type)
        validate(self, ExportError)
        if self.calibration_manifest is not None:
            object.__setattr__(self, "calibration_manifest", Path(self.calibration_manifest))

    @property
    def batch_size(self) -> int | None:
        """The artifacts' input batch: 1, or None (dynamic)."""
        return None if self.dynamic_batch else 1

    @property
    def needs_calibration(self) -> bool:
        """Whether this export may calibrate a file: a requested format, or a ladder rung (its first two are
        calibrated) after a dynamic-range file. The per-class check then leaves the calibration images out."""
        ladder = self.quantization_ladder and any(FORMATS[f].quantization in LADDER_TRIGGERS for f in self.formats)
        return ladder or any(FORMATS[f].needs_calibration for f in self.formats)
