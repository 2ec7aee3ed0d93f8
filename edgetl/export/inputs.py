"""What every format of one trained run shares, loaded once: the run's record, the Keras model, the
test images and the float model's predictions on them (the reference every export check compares with).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.data.dataset import DatasetError, SplitConfig, decode_images, scan_dataset
from edgetl.export.artifact import ModelSource
from edgetl.export.formats import ExportError
from edgetl.export.predictions import recorded_reference
from edgetl.features.backbones import register_custom_layers
from edgetl.features.tf_functions import traced_forward
from edgetl.io.files import one_line

KERAS_BATCH = 16  # TensorFlow's CPU forward pass is faster at 16 than at 64 here (activations stay in cache)


class StoredImages:
    """The test images as `images[a:b]` slices read from a sweep's decoded-once pixel store when a check needs
    them: reading a slice again is cheap, and an export held the whole test split for as long as it converted
    and checked every format, beside the next point's training (memory growing with the photos)."""

    def __init__(self, records: list, size: int, load: Callable):
        self.records, self.size, self.load = list(records), size, load

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: slice) -> np.ndarray:
        images, _, failed = decode_images(self.records[index], self.size, self.load)
        if failed:
            raise ExportError(f"a test image that decoded before no longer does: {failed[0]}")
        return images


def _decodable(records: list, size: int, load: Callable, chunk: int = 256) -> tuple[list, list[str]]:
    """(the records `load` decodes, the failures), a chunk of pixels at a time."""
    kept, failed = [], []
    for start in range(0, len(records), chunk):
        _, k, f = decode_images(records[start : start + chunk], size, load)
        kept, failed = kept + k, failed + f
    return kept, failed


@dataclass
class RunInputs:
    """What every format of one run shares, loaded once per run."""

    run_dir: Path
    run: dict
    source: ModelSource  # the model as trained
    dataset: object  # edgetl.data.dataset.Dataset
    test_images: np.ndarray | StoredImages  # uint8 (N, R, R, 3), or read slice by slice from a sweep's store
    test_labels: np.ndarray
    keras_probs: np.ndarray
    notes: list[str]
    test_paths: tuple[str, ...] = ()  # the test images, in order (what a benchmark's predictions must match)
    calibration: object = None  # edgetl.export.calibration.CalibrationSet, drawn on first need
    calibration_sets: list | None = None  # it and the disjoint sets of --calibration_repeats, on first need
    int8_source: ModelSource | None = None  # bias-corrected copy, built on first need
    load: Callable | None = None  # load_image's signature: where a sweep's pixels come from (decoded once)
    fidelity: object = None  # edgetl.export.fidelity.FidelitySet, built on first need
    golden: object = None  # edgetl.export.golden.GoldenSet, chosen on first need

    @property
    def keras_accuracy(self) -> float:
        return float((self.keras_probs.argmax(1) == self.test_labels).mean())


def read_run(run_dir: Path) -> dict:
    """run.json of a finished `edgetl train` run, checked; ExportError saying what is wrong otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a directory; --run expects the output folder of `edgetl train`")
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise ExportError(
            f"{run_dir} is not a finished edgetl run (no run.json); train one with "
            "`edgetl train --image_dir ... --output_dir ...`"
        )
    try:
        run = json.loads(run_json.read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"{run_json} is not readable JSON: {e}") from e
    missing = [k for k in ("image_dir", "classes", "backbone") if k not in run]
    if not missing:
        missing = [f"backbone.{k}" for k in ("version", "alpha", "resolution", "weights") if k not in run["backbone"]]
    if missing:
        raise ExportError(f"{run_json} lacks {', '.join(missing)}; was it written by `edgetl train`?")
    if not (run_dir / "model.keras").is_file():
        raise ExportError(f"{run_dir} has run.json but no model.keras; re-run `edgetl train`")
    return run


def load_keras_model(path: Path):
    """model.keras of a run (TF Hub backbones register their layer first); ExportError when it won't load."""
    import keras

    register_custom_layers()
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ExportError(f"cannot load {path}: {type(e).__name__}: {one_line(e)}") from e


def _keras_predict(model, images_uint8: np.ndarray | StoredImages) -> np.ndarray:
    """The float Keras model's probabilities, the reference every check compares with: traced once
    (`traced_forward`), in batches of KERAS_BATCH: faster than predict_on_batch, which traces again for
    each new batch size, and the same to 1e-7 (tools/bench_sweep.py times the export checks)."""

    forward = traced_forward(model)
    return np.concatenate(
        [
            np.asarray(forward(images_uint8[i : i + KERAS_BATCH]), np.float32)
            for i in range(0, len(images_uint8), KERAS_BATCH)
        ]
    )


def _run_dataset(run: dict):

    split = SplitConfig(
        run.get("validation_percentage", SplitConfig.validation_percentage),
        run.get("testing_percentage", SplitConfig.testing_percentage),
    )
    try:
        dataset = scan_dataset(run["image_dir"], split)
    except DatasetError as e:
        raise ExportError(f"cannot re-read the run's dataset (needed for the test split and calibration): {e}") from e
    return dataset


def load_run_inputs(run_dir: Path, dataset=None, load=None) -> RunInputs:
    """Read a run and everything its formats share. `dataset` (already scanned by a sweep) saves a scan, and
    `load` (`load_image`'s signature; a sweep's `edgetl.data.pixels` store) a decode."""

    run = read_run(run_dir)
    dataset = dataset if dataset is not None else _run_dataset(run)
    if list(dataset.classes) != list(run["classes"]):
        raise ExportError(
            f"the classes in {run['image_dir']} ({', '.join(dataset.classes)}) are not the ones the run was "
            f"trained on ({', '.join(run['classes'])}); re-train, or restore the dataset"
        )
    size, test_split = int(run["backbone"]["resolution"]), dataset.split("testing")
    if load is None:
        test_images, test_records, failed = decode_images(test_split, size)
    else:
        test_records, failed = _decodable(test_split, size, load)
        test_images = StoredImages(test_records, size, load)
    notes = [f"test image skipped: {f}" for f in failed]
    if not len(test_images):
        raise ExportError(f"no decodable test images in {run['image_dir']}; cannot check any artifact")
    model = load_keras_model(run_dir / "model.keras")
    labels = np.array([r.label_index for r in test_records], dtype=np.int64)
    paths = tuple(str(r.path) for r in test_records)
    reference = recorded_reference(run_dir, run, paths)
    return RunInputs(
        run_dir=run_dir,
        run=run,
        source=ModelSource(model, None),
        dataset=dataset,
        test_images=test_images,
        test_labels=labels,
        keras_probs=reference if reference is not None else _keras_predict(model, test_images),
        notes=notes,
        load=load,
        test_paths=paths,
    )
