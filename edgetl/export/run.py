"""Export a trained run: for each format, a convert step, then a check step against the float model.

The check runs the artifact on the test split through `edgetl.runtime` (the same code path a device
uses) and compares it with the float model. A conversion that silently changed the model's
behaviour is the expensive failure on a device; catching it here, next to the float model, is cheap.
The float model's test predictions are the ones `edgetl train` recorded (RUN/test_predictions.npy: for a
head-only run, the head on the backbone's features, which were checked against TensorFlow's when they were
computed), so they are not computed again; a run without them is predicted by the Keras model.
The check's own predictions are kept beside the artifact, for the sweep's benchmark of the same bytes.

`edgetl.export.inputs.load_run_inputs` loads what every format of one run shares (the Keras model, the test
images, the float predictions) once; `export_format` is one unit of work (one format of one run);
`edgetl.export.pipeline.export_run` is the loop `edgetl export` calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgetl import __version__
from edgetl.export import accelerators, fidelity, repeats, sources, tflite_mixed
from edgetl.export import calibration as calib
from edgetl.export.artifact import ModelSource, artifact_metadata, export_artifact
from edgetl.export.bias_correction import correct_biases
from edgetl.export.config import ExportConfig
from edgetl.export.formats import FORMATS, IO_TYPE_FORMATS, ExportError
from edgetl.export.golden import choose_golden, embed_golden
from edgetl.export.inputs import RunInputs, _keras_predict, load_keras_model
from edgetl.export.predictions import save_check_predictions
from edgetl.io.faults import fault_point
from edgetl.io.files import DiskError, atomic_write_bytes, atomic_write_json, one_line, sha256_file
from edgetl.runtime import load_model, read_metadata
from edgetl.stats import mcnemar_exact

EXPORT_SUMMARY = "export.json"
ARTIFACTS_DIR = "artifacts"
PREDICT_BATCH = 64

Log = Callable[[str], None]


@dataclass
class ExportResult:
    """What one format's export produced and how its check went (one entry of export.json)."""

    format: str
    path: Path | None  # None when the conversion itself failed
    size_bytes: int
    keras_test_accuracy: float
    test_accuracy: float | None
    agreement: float | None  # share of test images where the artifact's top-1 equals Keras' top-1
    max_abs_diff: float | None  # largest |p_artifact - p_keras|; None for quantized formats
    status: str  # "ok", "check failed: ...", "export failed: ...", "load failed: ..."
    seconds: float
    calibration_manifest: Path | None = None
    num_test_images: int = 0
    io_type: str | None = None  # input/output type of tflite-int8 (and -mixed); None elsewhere

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self, relative_to: Path | None = None) -> dict:
        d = asdict(self)
        for key in ("path", "calibration_manifest"):
            value = getattr(self, key)
            if value is not None:
                d[key] = _relative(Path(value), relative_to)
        return d


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


def _repeat_step(inputs: RunInputs, fmt: str, config: ExportConfig, log: Log, checked: dict, out_path: Path) -> dict:
    """`fmt` converted and checked again on each further calibration set (`edgetl.export.repeats`)."""
    metadata = artifact_metadata(inputs.run, fmt, config.batch_size)

    def convert(i: int, calibration) -> Path:
        source = replace(inputs.source, batch_size=config.batch_size)
        if config.bias_correction:  # corrected on this set's own images, as the first set's copy was on its
            source = ModelSource(load_keras_model(inputs.run_dir / "model.keras"), None, config.batch_size)
            correct_biases(source.keras_model, calibration.images)
        path = out_path.with_name(f".{fmt}.repeat{i}{out_path.suffix}")
        export_artifact(source, fmt, path, metadata, calibration_images=calibration.images, io_type=config.io_type)
        return path

    def check(path: Path) -> dict:
        return _check_step(inputs, fmt, path, config, log)

    entry = repeats.repeat(checked, sources.calibration_sets(inputs, config, log), convert, check)
    log(repeats.line(fmt, entry))
    return entry


def check_status(
    fmt: str,
    artifact_correct: np.ndarray,
    keras_correct: np.ndarray,
    max_abs_diff: float | None,
    max_accuracy_drop: float,
    alpha: float = 0.05,
    class_fidelity: dict | None = None,
) -> str:
    """ "ok", or why the artifact is off from the float model (see the format table's comment).

    `artifact_correct` and `keras_correct` are per-image correctness on the same test images;
    `class_fidelity` is the artifact's per-class measurement (`edgetl.export.fidelity.summary`), whose
    failed classes fail the check too.
    """

    spec = FORMATS[fmt]
    problems = []
    test = mcnemar_exact(artifact_correct, keras_correct)
    drop = -test.diff_points
    if drop > max_accuracy_drop and test.p_value < alpha:
        problems.append(
            f"accuracy {test.accuracy_a:.1%} vs the float model's {test.accuracy_b:.1%}: "
            f"{drop:.1f} points lower (> {max_accuracy_drop:g}), McNemar p = {test.p_value:.2g}"
        )
    if spec.max_abs_diff is not None and max_abs_diff is not None and not max_abs_diff <= spec.max_abs_diff:
        problems.append(f"max |probability diff| {max_abs_diff:.2g} > {spec.max_abs_diff:g}")
    problems += fidelity.gate_problems(class_fidelity or {})
    return "ok" if not problems else "check failed: " + "; ".join(problems)


def _run_tflite_is(inputs: RunInputs, metadata: dict) -> bool:
    """Whether the run's own model.tflite is the tflite-float32 artifact already: `edgetl train` converted
    the same model with the same converter and metadata, and its bytes are the ones run.json recorded."""

    path = inputs.run_dir / "model.tflite"
    recorded = (inputs.run.get("files") or {}).get("model.tflite")
    if not recorded or not path.is_file() or sha256_file(path) != recorded:
        return False
    embedded = dict(read_metadata(path) or {})
    embedded.pop("model_sha256", None)
    return embedded == json.loads(json.dumps(metadata, default=str))


def _convert_step(inputs: RunInputs, fmt: str, config: ExportConfig, out_path: Path, log: Log) -> dict:
    """Write the artifact; returns what export.json records about how it was made."""

    spec = FORMATS[fmt]
    fault_point(f"convert:{fmt}")
    metadata = artifact_metadata(inputs.run, fmt, config.batch_size)
    if fmt == "tflite-float32" and _run_tflite_is(inputs, metadata):  # one conversion, not two (and checked below)
        atomic_write_bytes(out_path, (inputs.run_dir / "model.tflite").read_bytes(), "the tflite-float32 artifact")
        return {"converted_by": "edgetl train (the run's model.tflite)"}
    if not spec.needs_calibration:
        export_artifact(
            replace(inputs.source, batch_size=config.batch_size), fmt, out_path, metadata, io_type=config.io_type
        )
        return {}
    calibration = sources.calibration(inputs, config, log)
    metadata["bias_correction"] = config.bias_correction
    metadata["calibration_manifest_sha256"] = calib.manifest_sha256(calibration.manifest)
    source, made = replace(sources.int8_source(inputs, config, log), batch_size=config.batch_size), {}
    if fmt == tflite_mixed.FORMAT:  # a search: converted and checked with more layers in float until it passes
        metadata["input"]["dtype"] = config.io_type
        made = tflite_mixed.convert_mixed(
            source,
            calibration.images,
            metadata,
            out_path,
            config.io_type,
            accept=lambda path: _check_step(inputs, fmt, path, config, log)["status"],
            log=log,
        )
    else:
        export_artifact(source, fmt, out_path, metadata, calibration_images=calibration.images, io_type=config.io_type)
    manifest_path = out_path.parent / f"{fmt}.calibration.json"
    calib.write_manifest(manifest_path, calibration.manifest)
    fault_point(f"manifest:{fmt}")
    return {
        "calibration_manifest": manifest_path,
        "num_calibration_images": len(calibration.images),
        "bias_correction": config.bias_correction,
        **made,
    }


def _fidelity(inputs: RunInputs, config: ExportConfig, log: Log):
    """The run's per-class fidelity set, built once: calibration images (when this export draws any) left out."""
    if inputs.fidelity is None:
        exclude = set()
        if config.needs_calibration:  # every set's images, when --calibration_repeats draws more than one
            sets = sources.calibration_sets(inputs, config, log)
            exclude = {entry["sha256"] for cal in sets for entry in cal.manifest["images"]}
        inputs.fidelity = fidelity.build(inputs, config.fidelity_images_per_class, exclude, _keras_predict)
    return inputs.fidelity


def _golden_step(inputs: RunInputs, fmt: str, out_path: Path) -> dict:
    """Golden inputs and this artifact's own answers on them, into the file (edgetl.export.golden)."""
    fault_point(f"golden:{fmt}")
    if inputs.golden is None:
        inputs.golden = choose_golden(
            inputs.test_paths,
            inputs.test_labels,
            inputs.keras_probs,
            inputs.run_dir / "model.tflite",  # the float model of `edgetl train`; absent: hash order only
            int(inputs.run["backbone"]["resolution"]),
        )
    return {"golden": embed_golden(out_path, fmt, inputs.golden, list(inputs.run["classes"]))}


def _check_step(inputs: RunInputs, fmt: str, out_path: Path, config: ExportConfig, log: Log) -> dict:
    """Run the artifact on the test split and compare it with the Keras model; per class on more images
    (`edgetl.export.fidelity`) for the formats whose weights change."""
    fault_point(f"check:{fmt}")
    per_class = None
    try:
        model = load_model(out_path, config.num_threads)
        images = inputs.test_images  # a slice at a time: maybe read from a sweep's store (StoredImages)
        batches = range(0, len(images), PREDICT_BATCH)
        probs = np.concatenate([model.predict(images[i : i + PREDICT_BATCH], PREDICT_BATCH) for i in batches])
        probs = np.asarray(probs, np.float32)
        if probs.shape != inputs.keras_probs.shape:
            raise ValueError(f"output shape {probs.shape}, expected {inputs.keras_probs.shape}")
        if fidelity.measured(fmt) and config.fidelity_images_per_class:
            clock = time.perf_counter()
            fset = _fidelity(inputs, config, log)
            per_class = fidelity.summary(
                fset,
                fidelity.artifact_probabilities(fset, model, probs, PREDICT_BATCH),
                inputs.run["classes"],
                config.fidelity_images_per_class,
                config.max_class_drop,
            )
            per_class["seconds"] = round(time.perf_counter() - clock, 2)  # what the per-class check added
    except (ExportError, DiskError):
        raise
    except Exception as e:
        return {"status": f"load failed: {type(e).__name__}: {one_line(e)}"}
    agreement = float((probs.argmax(1) == inputs.keras_probs.argmax(1)).mean())
    max_diff = None if FORMATS[fmt].quantized else float(np.abs(probs - inputs.keras_probs).max())
    correct = probs.argmax(1) == inputs.test_labels
    status = check_status(
        fmt,
        correct,
        inputs.keras_probs.argmax(1) == inputs.test_labels,
        max_diff,
        config.max_accuracy_drop,
        class_fidelity=per_class,
    )
    return {
        "test_accuracy": float(correct.mean()),
        "agreement": agreement,
        "max_abs_diff": max_diff,
        "status": status,
        "probs": probs,
        "class_fidelity": per_class,
    }


def export_format(inputs: RunInputs, fmt: str, config: ExportConfig, log: Log) -> ExportResult:
    """One unit of work: convert one format of one run, check it, record it in export.json.

    A converter crash or a failed check is the result's status, not an exception, so one bad format
    never costs the others; problems with the inputs themselves (flags, manifest) raise ExportError.
    """
    spec = FORMATS[fmt]
    started = time.time()
    artifacts_dir = inputs.run_dir / ARTIFACTS_DIR
    out_path = artifacts_dir / f"{fmt}{spec.suffix}"
    common = {
        "format": fmt,
        "keras_test_accuracy": inputs.keras_accuracy,
        "num_test_images": len(inputs.test_labels),
        "io_type": config.io_type if fmt in IO_TYPE_FORMATS else None,
    }
    try:
        made = _convert_step(inputs, fmt, config, out_path, log)
        made.update(_golden_step(inputs, fmt, out_path))
        made["accelerators"] = accelerators.coverage(out_path, spec.runtime)
    except (ExportError, DiskError):
        raise
    except Exception as e:  # a converter crash on one format must not lose the others
        result = ExportResult(
            **common,
            path=None,
            size_bytes=0,
            test_accuracy=None,
            agreement=None,
            max_abs_diff=None,
            status=f"export failed: {type(e).__name__}: {one_line(e)}",
            seconds=round(time.time() - started, 2),
        )
        log(f"{fmt}: {result.status}")
        _merge_summary(inputs.run_dir, result, {})
        return result
    checked = {
        "test_accuracy": None,
        "agreement": None,
        "max_abs_diff": None,
        **_check_step(inputs, fmt, out_path, config, log),
    }
    probs = checked.pop("probs", None)
    predictions = None if probs is None else save_check_predictions(out_path, fmt, probs, inputs.test_paths)
    if probs is not None and config.calibration_repeats > 1 and repeats.repeated(fmt):
        made["calibration_repeats"] = _repeat_step(inputs, fmt, config, log, checked, out_path)
    class_fidelity = checked.pop("class_fidelity", None)
    result = ExportResult(
        **common,
        **checked,
        path=out_path,
        size_bytes=out_path.stat().st_size,
        seconds=round(time.time() - started, 2),
        calibration_manifest=made.pop("calibration_manifest", None),
    )
    # The file's SHA-256 beside it: a resumed sweep redoes a format whose file was truncated or damaged.
    _merge_summary(
        inputs.run_dir,
        result,
        {
            "description": spec.description,
            "sha256": sha256_file(out_path),
            **made,
            **({"test_predictions": predictions} if predictions else {}),
            **({"class_fidelity": class_fidelity} if class_fidelity else {}),
        },
    )
    if not result.ok:
        log(f"{fmt}: {result.status} (artifact kept at {out_path})")
    return result


def _merge_summary(run_dir: Path, result: ExportResult, extra: dict) -> None:
    """Update this format's entry of export.json, keeping the others (exports may be done one by one)."""
    merge_export_entry(run_dir, result.format, {**result.to_dict(relative_to=run_dir), **extra})


def merge_export_entry(run_dir: Path, fmt: str, entry: dict) -> None:
    """Set one format's entry of RUN/artifacts/export.json (paths in it relative to RUN), keeping the others;
    also how a Ray sweep records a format exported on another node."""

    formats = read_export_summary(run_dir)
    formats[fmt] = entry
    summary = {
        "edgetl_version": __version__,
        "run": str(run_dir.resolve()),
        "formats": {k: formats[k] for k in sorted(formats)},
    }
    atomic_write_json(run_dir / ARTIFACTS_DIR / EXPORT_SUMMARY, summary, "export.json")


def read_export_summary(run_dir: Path) -> dict:
    """The `formats` entries of RUN/artifacts/export.json ({} when there is none or it is unreadable)."""
    try:
        formats = json.loads((Path(run_dir) / ARTIFACTS_DIR / EXPORT_SUMMARY).read_text()).get("formats", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return formats if isinstance(formats, dict) else {}
