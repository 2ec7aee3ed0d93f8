"""`edgetl export`: turn a trained run into every artifact a device team may want, each checked.

One table of formats (`FORMATS`) and one loop (`export_run`) that, for each requested format,
converts, writes the artifact atomically with its metadata, runs it on the test split through
`edgetl.runtime` (the same code path a device uses) and compares it with the float Keras model.
A conversion that silently changed the model's behaviour is the expensive failure on a device;
catching it here, next to the float model, is cheap.

This module is imported by the CLI to build its parser, so it stays TensorFlow-free at import time:
the converters live in `edgetl.export.tflite` / `edgetl.export.onnx` and are imported on use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgetl.files import atomic_write_bytes, atomic_write_json  # noqa: F401 (re-exported for calibration)


class ExportError(ValueError):
    """A problem the user can fix: not a run directory, bad flags, a stale calibration manifest.

    The CLI prints the message alone (no traceback), so messages say what is wrong and what to do.
    """


@dataclass(frozen=True)
class FormatSpec:
    """One exportable artifact kind: the row of the format table every stage agrees on."""

    name: str  # e.g. "tflite-int8": file name stem, key in export.json, `format` in the metadata
    suffix: str  # ".tflite" | ".onnx"
    runtime: str  # "tflite" | "onnx": which edgetl.runtime backend loads it
    quantized: bool  # quantized formats are checked on agreement only (probabilities move by design)
    needs_calibration: bool  # needs representative images (and writes a calibration manifest)
    description: str


FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("tflite-float32", ".tflite", "tflite", False, False,
                   "TFLiteConverter.from_saved_model, float32 weights and activations"),
        FormatSpec("tflite-float16", ".tflite", "tflite", False, False,
                   "float16 weights (half the size), float32 input and compute on CPU"),
        FormatSpec("tflite-dynamic", ".tflite", "tflite", True, False,
                   "dynamic-range: int8 weights, float activations, float32 input"),
        FormatSpec("tflite-int8", ".tflite", "tflite", True, True,
                   "full integer (TFLITE_BUILTINS_INT8) from a representative dataset; uint8 input by default"),
        FormatSpec("onnx-float32", ".onnx", "onnx", False, False,
                   "tf2onnx from the Keras model, dynamic batch, float32"),
        FormatSpec("onnx-int8", ".onnx", "onnx", True, True,
                   "onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations), float32 input"),
    )
}
RUNTIMES = ("tflite", "onnx")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("uint8", "int8", "float32")
ONNX_OPSET = 17
# Bump when a converter recipe changes what an artifact contains: the sweep re-exports on a change.
# 2: int8 formats are converted from the bias-corrected model (edgetl.export.bias_correction), and
#    TFLite files store each distinct quantization vector once (tflite.share_quantization_vectors).
RECIPE_VERSION = 2

# Check thresholds. Float conversions should be numerically the same model: a flipped top-1 or a
# visible probability change means the converter did something wrong. Quantized ones may move
# borderline images, but losing more than 5% agreement means calibration or conversion is broken.
FLOAT_MIN_AGREEMENT = 0.995
FLOAT_MAX_ABS_DIFF = 1e-3
# float16 weights alone move MobileNet probabilities by ~0.01-0.015 (the Keras model with its
# weights rounded to float16 differs from itself by as much), so 1e-3 would fail every float16
# export; 0.05 still catches a broken conversion (those differ by tenths).
MAX_ABS_DIFF = {"tflite-float32": FLOAT_MAX_ABS_DIFF, "onnx-float32": FLOAT_MAX_ABS_DIFF, "tflite-float16": 5e-2}
QUANTIZED_MIN_AGREEMENT = 0.95

EXPORT_SUMMARY = "export.json"
ARTIFACTS_DIR = "artifacts"
PREDICT_BATCH = 64


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
    io_type: str | None = None  # input/output type of tflite-int8; None elsewhere

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


# ---------------------------------------------------------------------------------------------
# small helpers shared by the converters


def _relative(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# flags -> format names


def _split_list(value: str, flag: str, valid: tuple[str, ...]) -> list[str]:
    items = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    if not items:
        raise ExportError(f"{flag} is empty; valid values: {', '.join(valid)}")
    return items


def formats_from_flags(format: str, quantize: str) -> tuple[list[str], list[str]]:
    """Turn `--format tflite,onnx --quantize int8,...` into FORMATS names, plus notes on skipped combos.

    A combination that does not exist (onnx + float16) is skipped with a note rather than an error,
    so `--format tflite,onnx --quantize all` does the obvious thing; an unknown word is an error
    listing the valid ones, because a typo silently exporting nothing is worse.
    `--format` also accepts full format names (e.g. `tflite-int8`), which ignore `--quantize`.
    """
    runtimes = _split_list(format, "--format", RUNTIMES)
    quants = _split_list(quantize, "--quantize", QUANTIZATIONS + ("all",))
    bad = [r for r in runtimes if r not in RUNTIMES and r not in FORMATS]
    if bad:
        raise ExportError(
            f"unknown --format {', '.join(map(repr, bad))}; valid: {', '.join(RUNTIMES)} "
            f"(comma-separated), or a full format name: {', '.join(FORMATS)}"
        )
    bad = [q for q in quants if q not in QUANTIZATIONS and q != "all"]
    if bad:
        raise ExportError(
            f"unknown --quantize {', '.join(map(repr, bad))}; valid: {', '.join(QUANTIZATIONS)} or all "
            "(comma-separated)"
        )
    explicit = "all" not in quants
    wanted = QUANTIZATIONS if not explicit else [q for q in QUANTIZATIONS if q in quants]
    names: list[str] = []
    notes: list[str] = []
    for runtime in runtimes:
        if runtime in FORMATS:
            candidates = [runtime]
        else:
            candidates = []
            for q in wanted:
                name = f"{runtime}-{q}"
                if name in FORMATS:
                    candidates.append(name)
                elif explicit:
                    have = ", ".join(n for n in FORMATS if n.startswith(runtime + "-"))
                    notes.append(f"skipping {runtime} + {q}: no such format ({runtime} exports {have})")
        for name in candidates:
            if name not in names:
                names.append(name)
    if not names:
        raise ExportError(
            f"nothing to export for --format {format} --quantize {quantize}; "
            f"formats that exist: {', '.join(FORMATS)}"
        )
    return names, notes


# ---------------------------------------------------------------------------------------------
# one artifact


def export_artifact(
    model,
    saved_model_dir: str | Path,
    fmt: str,
    out_path: str | Path,
    metadata: dict,
    calibration_images: np.ndarray | None = None,
    io_type: str = "uint8",
) -> Path:
    """Convert the model into one format and write it atomically, metadata embedded.

    `model` (Keras) feeds tf2onnx; `saved_model_dir` (its `model.export()`) feeds the TFLite
    converter, whose SavedModel route is the one Google supports. `calibration_images` are float32
    pixels 0..255, shape (N, R, R, 3), preprocessed exactly as at inference: required for formats
    that need calibration. `io_type` applies to tflite-int8 only. No check is run here (that needs
    test images and the float predictions; `export_run` does it).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if io_type not in IO_TYPES:
        raise ExportError(f"unknown io_type {io_type!r}; valid: {', '.join(IO_TYPES)}")
    spec = FORMATS[fmt]
    if spec.needs_calibration:
        if calibration_images is None or len(calibration_images) == 0:
            raise ExportError(f"{fmt} needs calibration images (representative dataset); none were given")
        calibration_images = np.asarray(calibration_images, dtype=np.float32)
    metadata = json.loads(json.dumps(metadata, default=str))  # deep copy, JSON-clean
    metadata["format"] = fmt
    if fmt == "tflite-int8":
        metadata.setdefault("input", {})["dtype"] = io_type
    if spec.runtime == "tflite":
        from . import tflite

        data = tflite.convert(saved_model_dir, fmt, calibration_images, io_type)
        data = tflite.with_metadata(data, metadata)
    else:
        from . import onnx as onnx_export

        data = onnx_export.convert(model, fmt, metadata, calibration_images)
    return atomic_write_bytes(out_path, data)


# ---------------------------------------------------------------------------------------------
# a run


@dataclass
class _RunContext:
    """What every format of one run shares: loaded once, because the sweep calls export_run per point."""

    run_dir: Path
    run: dict
    model: object
    saved_model_dir: Path
    resolution: int
    classes: list[str]
    dataset: object  # edgetl.data.Dataset
    test_images: np.ndarray  # uint8 (N, R, R, 3)
    test_labels: np.ndarray
    keras_probs: np.ndarray
    keras_accuracy: float
    notes: list[str]
    # The model the int8 formats are converted from: bias-corrected for the calibration images
    # (built on first use), or the run's own model when the correction is off.
    int8_model: object = None
    int8_saved_model_dir: Path | None = None


def _read_run(run_dir: Path) -> dict:
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


def artifact_metadata(run: dict, fmt: str) -> dict:
    """edgetl.json for an artifact of this run (docs/interfaces.md), built from run.json."""
    from edgetl import __version__
    from edgetl.data import PREPROCESSING

    bb = run["backbone"]
    return {
        "edgetl_version": __version__,
        "format": fmt,
        "labels": list(run["classes"]),
        "backbone": {k: bb[k] for k in ("version", "alpha", "resolution", "weights")},
        "input": {"size": int(bb["resolution"]), "mean": 0.0, "std": 1.0, "preprocessing": PREPROCESSING},
    }


def _keras_predict(model, images_uint8: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(images_uint8), PREDICT_BATCH):
        batch = images_uint8[i : i + PREDICT_BATCH].astype(np.float32)
        out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(out)


def _prepare(run_dir: Path, log: Callable[[str], None]) -> _RunContext:
    from edgetl.data import DatasetError, decode_images, scan_dataset

    run = _read_run(run_dir)
    resolution = int(run["backbone"]["resolution"])
    try:
        dataset = scan_dataset(
            run["image_dir"], run.get("validation_percentage", 10.0), run.get("testing_percentage", 10.0)
        )
    except DatasetError as e:
        raise ExportError(
            f"cannot re-read the run's dataset (needed for the test split and calibration): {e}"
        ) from e
    if list(dataset.classes) != list(run["classes"]):
        raise ExportError(
            f"the classes in {run['image_dir']} ({', '.join(dataset.classes)}) are not the ones the run was "
            f"trained on ({', '.join(run['classes'])}); re-train, or restore the dataset"
        )
    notes: list[str] = []
    test_images, test_records, failed = decode_images(dataset.split("testing"), resolution)
    notes += [f"test image skipped: {f}" for f in failed]
    if not len(test_images):
        raise ExportError(f"no decodable test images in {run['image_dir']}; cannot check any artifact")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:  # runs on a TF Hub backbone save a custom layer; it must be registered before loading
        from edgetl.backbones import register_custom_layers

        register_custom_layers()
    except ImportError:
        pass
    try:
        model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    except Exception as e:
        raise ExportError(f"cannot load {run_dir / 'model.keras'}: {type(e).__name__}: {_one_line(e)}") from e
    saved_model_dir = run_dir / "saved_model"
    if not (saved_model_dir / "saved_model.pb").is_file():
        # Older or hand-made run: re-create the SavedModel from the Keras model (outside the run dir,
        # which export must not alter beyond artifacts/).
        saved_model_dir = Path(tempfile.mkdtemp(prefix="edgetl-saved-model-"))
        model.export(str(saved_model_dir), verbose=False)
        notes.append(f"{run_dir}/saved_model missing; re-exported it from model.keras")
    labels = np.array([r.label_index for r in test_records], dtype=np.int64)
    keras_probs = _keras_predict(model, test_images)
    return _RunContext(
        run_dir=run_dir,
        run=run,
        model=model,
        saved_model_dir=saved_model_dir,
        resolution=resolution,
        classes=list(run["classes"]),
        dataset=dataset,
        test_images=test_images,
        test_labels=labels,
        keras_probs=keras_probs,
        keras_accuracy=float((keras_probs.argmax(1) == labels).mean()),
        notes=notes,
    )


def check_status(fmt: str, agreement: float, max_abs_diff: float | None) -> str:
    """"ok", or why the artifact is badly off from the float model (thresholds above)."""
    problems = []
    if FORMATS[fmt].quantized:
        if agreement < QUANTIZED_MIN_AGREEMENT:
            problems.append(f"agreement {agreement:.1%} < {QUANTIZED_MIN_AGREEMENT:.0%}")
    else:
        if agreement < FLOAT_MIN_AGREEMENT:
            problems.append(f"agreement {agreement:.1%} < {FLOAT_MIN_AGREEMENT:.1%}")
        limit = MAX_ABS_DIFF.get(fmt, FLOAT_MAX_ABS_DIFF)
        if max_abs_diff is not None and not max_abs_diff <= limit:
            problems.append(f"max |probability diff| {max_abs_diff:.2g} > {limit:g}")
    return "ok" if not problems else "check failed: " + "; ".join(problems)


def _predict_artifact(path: Path, images: np.ndarray, num_threads: int) -> np.ndarray:
    from edgetl.runtime import load_model

    return np.asarray(load_model(path, num_threads).predict(images, batch_size=PREDICT_BATCH), np.float32)


def _merge_summary(artifacts_dir: Path, run_dir: Path, result: ExportResult, extra: dict) -> None:
    """Update this format's entry of export.json, keeping the others (exports may be done one by one)."""
    path = artifacts_dir / EXPORT_SUMMARY
    summary: dict = {}
    if path.is_file():
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            summary = {}
    if not isinstance(summary.get("formats"), dict):
        summary["formats"] = {}
    from edgetl import __version__

    summary["edgetl_version"] = __version__
    summary["run"] = str(run_dir.resolve())
    entry = result.to_dict(relative_to=run_dir)
    entry.update(extra)
    summary["formats"][result.format] = entry
    summary["formats"] = {k: summary["formats"][k] for k in sorted(summary["formats"])}
    atomic_write_json(path, summary)


def export_run(
    run_dir: str | Path,
    formats: list[str],
    io_type: str = "uint8",
    calibration_images: int = 200,
    calibration_manifest: str | Path | None = None,
    num_threads: int = 1,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
    bias_correction: bool = True,
) -> list[ExportResult]:
    """Export and check each format of one run; the loop `edgetl export` and the sweep share.

    The Keras model, the test images and the float predictions are loaded once for all formats.
    Artifacts land in RUN/artifacts/<format><suffix>; int8 ones get <format>.calibration.json beside
    them; RUN/artifacts/export.json gets one entry per format, merged with earlier exports.
    With `bias_correction`, int8 formats are converted from a copy of the model whose biases
    compensate the mean shift of int8-rounded weights (edgetl.export.bias_correction); the checks
    still compare every artifact with the run's own model.
    A failed check or conversion does not stop the loop: it is recorded in the result's status (and
    export.json) and the caller decides (the CLI exits non-zero). Problems with the inputs themselves
    (run dir, flags, manifest) raise ExportError before anything is written.
    """
    from tqdm import tqdm

    from . import calibration as calib

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    run_dir = Path(run_dir)
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown format(s) {', '.join(map(repr, unknown)) or '(none)'}; valid: {', '.join(FORMATS)}")
    if io_type not in IO_TYPES:
        raise ExportError(f"unknown io_type {io_type!r}; valid: {', '.join(IO_TYPES)}")
    if num_threads < 1:
        raise ExportError(f"num_threads must be at least 1, got {num_threads}")
    needs_calibration = any(FORMATS[f].needs_calibration for f in formats)
    if needs_calibration and calibration_manifest is None and calibration_images < 1:
        raise ExportError(f"--calibration_images must be at least 1, got {calibration_images}")

    # Fail fast, before TensorFlow loads, on a wrong --run or a stale manifest.
    run = _read_run(run_dir)
    calib_set = None
    if needs_calibration and calibration_manifest is not None:
        calib_set = calib.calibration_set_from_manifest(
            calib.load_manifest(calibration_manifest), int(run["backbone"]["resolution"]),
            fallback_root=run["image_dir"],
        )

    ctx = _prepare(run_dir, log)
    try:
        return _export_formats(ctx, formats, io_type, calib_set, calibration_images, num_threads, log, progress,
                               bias_correction)
    finally:
        import shutil

        for temp in (ctx.saved_model_dir, ctx.int8_saved_model_dir):
            if temp is not None and temp != run_dir / "saved_model":
                shutil.rmtree(temp, ignore_errors=True)


def _int8_source(ctx: _RunContext, calibration_images: np.ndarray, bias_correction: bool, log) -> tuple:
    """(Keras model, SavedModel dir) the int8 formats are converted from; corrected once per run."""
    if not bias_correction:
        return ctx.model, ctx.saved_model_dir
    if ctx.int8_model is None:
        import keras

        from .bias_correction import correct_biases

        model = keras.saving.load_model(ctx.run_dir / "model.keras", compile=False)  # a copy to change
        report = correct_biases(model, calibration_images)
        log(f"note: int8 bias correction: {report.layers} layer(s) shifted by up to {report.max_shift:.3g}, "
            f"from {report.images} calibration images")
        saved_model_dir = Path(tempfile.mkdtemp(prefix="edgetl-int8-saved-model-"))
        model.export(str(saved_model_dir), verbose=False)
        ctx.int8_model, ctx.int8_saved_model_dir = model, saved_model_dir
    return ctx.int8_model, ctx.int8_saved_model_dir


def _export_formats(ctx: _RunContext, formats, io_type, calib_set, calibration_images, num_threads, log,
                    progress, bias_correction: bool) -> list[ExportResult]:
    from tqdm import tqdm

    from . import calibration as calib

    run_dir = ctx.run_dir
    for note in ctx.notes:
        log(f"note: {note}")
    if any(FORMATS[f].needs_calibration for f in formats):
        if calib_set is None:
            calib_set = calib.build_calibration_set(ctx.dataset, ctx.resolution, calibration_images)
        for note in calib_set.notes:
            log(f"note: {note}")

    artifacts_dir = run_dir / ARTIFACTS_DIR
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    results: list[ExportResult] = []
    bar = tqdm(formats, desc="export", unit="format", disable=not progress, file=sys.stderr)
    for fmt in bar:
        spec = FORMATS[fmt]
        started = time.time()
        out_path = artifacts_dir / f"{fmt}{spec.suffix}"
        manifest_path = None
        fmt_io = io_type if fmt == "tflite-int8" else None
        bar.set_description(f"{fmt}: converting")
        metadata = artifact_metadata(ctx.run, fmt)
        try:
            model, saved_model_dir = ctx.model, ctx.saved_model_dir
            if spec.needs_calibration:
                if bias_correction and ctx.int8_model is None:
                    bar.set_description(f"{fmt}: bias correction")
                model, saved_model_dir = _int8_source(ctx, calib_set.images, bias_correction, log)
                metadata["bias_correction"] = bool(bias_correction)
                bar.set_description(f"{fmt}: converting")
            export_artifact(
                model, saved_model_dir, fmt, out_path, metadata,
                calibration_images=calib_set.images if spec.needs_calibration else None,
                io_type=io_type,
            )
        except ExportError:
            raise
        except Exception as e:  # a converter crash on one format must not lose the others
            result = ExportResult(fmt, None, 0, ctx.keras_accuracy, None, None, None,
                                  f"export failed: {type(e).__name__}: {_one_line(e)}",
                                  round(time.time() - started, 2), None, len(ctx.test_labels), fmt_io)
            log(f"{fmt}: {result.status}")
            results.append(result)
            _merge_summary(artifacts_dir, run_dir, result, {})
            continue
        if spec.needs_calibration:
            manifest_path = artifacts_dir / f"{fmt}.calibration.json"
            calib.write_manifest(manifest_path, calib_set.manifest)

        bar.set_description(f"{fmt}: checking")
        agreement = accuracy = max_diff = None
        try:
            probs = _predict_artifact(out_path, ctx.test_images, num_threads)
            if probs.shape != ctx.keras_probs.shape:
                raise ValueError(f"output shape {probs.shape}, expected {ctx.keras_probs.shape}")
            agreement = float((probs.argmax(1) == ctx.keras_probs.argmax(1)).mean())
            accuracy = float((probs.argmax(1) == ctx.test_labels).mean())
            if not spec.quantized:
                max_diff = float(np.abs(probs - ctx.keras_probs).max())
            status = check_status(fmt, agreement, max_diff)
        except Exception as e:
            status = f"load failed: {type(e).__name__}: {_one_line(e)}"
        result = ExportResult(
            format=fmt, path=out_path, size_bytes=out_path.stat().st_size,
            keras_test_accuracy=ctx.keras_accuracy, test_accuracy=accuracy, agreement=agreement,
            max_abs_diff=max_diff, status=status, seconds=round(time.time() - started, 2),
            calibration_manifest=manifest_path, num_test_images=len(ctx.test_labels), io_type=fmt_io,
        )
        extra = {"description": spec.description}
        if calib_set is not None and spec.needs_calibration:
            extra["num_calibration_images"] = len(calib_set.images)
            extra["bias_correction"] = bool(bias_correction)
        _merge_summary(artifacts_dir, run_dir, result, extra)
        results.append(result)
        if not result.ok:
            log(f"{fmt}: {status} (artifact kept at {out_path})")
    bar.close()
    return results


def _one_line(e: BaseException, limit: int = 500) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# CLI


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `edgetl export` (edgetl/cli.py adds them to its sub-command)."""
    parser.add_argument("--run", required=True, type=Path, help="run directory written by `edgetl train`")
    parser.add_argument("--format", default="tflite,onnx",
                        help=f"comma list of {', '.join(RUNTIMES)} (or full format names); default: tflite,onnx")
    parser.add_argument("--quantize", default="all",
                        help=f"comma list of {', '.join(QUANTIZATIONS)}, or all (default: all)")
    parser.add_argument("--io_type", "--io-type", dest="io_type", choices=IO_TYPES, default="uint8",
                        help="input/output type of tflite-int8 (default uint8: raw pixels, no scaling)")
    parser.add_argument("--calibration_images", "--calibration-images", dest="calibration_images", type=int,
                        default=200, help="representative images for int8 formats, from the training split, "
                        "balanced across classes (default 200)")
    parser.add_argument("--calibration_manifest", "--calibration-manifest", dest="calibration_manifest",
                        type=Path, default=None,
                        help="reuse the calibration images listed in this manifest (bit-for-bit reproducible int8)")
    parser.add_argument("--num_threads", "--num-threads", dest="num_threads", type=int, default=1,
                        help="threads for running the artifacts during the checks")
    parser.add_argument("--no_bias_correction", "--no-bias-correction", dest="bias_correction",
                        action="store_false",
                        help="convert int8 formats from the model as trained, without correcting the mean "
                        "shift that int8 weight rounding causes (on by default)")


def _format_row(r: ExportResult) -> str:
    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}"
    size = f"{r.size_bytes / 1e6:.2f} MB" if r.size_bytes else "-"
    return (f"{r.format:<15} {size:>10} {pct(r.test_accuracy):>8} {pct(r.agreement):>9} {diff:>9} "
            f"{r.seconds:>6.1f}s  {r.status}")


def run_export_command(args: argparse.Namespace) -> int:
    """`edgetl export`: 0 when every artifact passed its check, 1 when one failed, 2 on a usage error."""
    try:
        formats, notes = formats_from_flags(args.format, args.quantize)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        results = export_run(
            args.run, formats, io_type=args.io_type, calibration_images=args.calibration_images,
            calibration_manifest=args.calibration_manifest, num_threads=args.num_threads,
            bias_correction=args.bias_correction,
        )
    except ExportError as e:
        print(f"edgetl export: error: {e}", file=sys.stderr)
        return 2
    keras_acc = results[0].keras_test_accuracy if results else None
    print(f"{'format':<15} {'size':>10} {'accuracy':>8} {'agreement':>9} {'max diff':>9} {'time':>7}  status")
    for r in results:
        print(_format_row(r))
    if keras_acc is not None:
        print(f"(Keras float model test accuracy {keras_acc:.1%} on {results[0].num_test_images} images; "
              f"summary in {Path(args.run) / ARTIFACTS_DIR / EXPORT_SUMMARY})")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"edgetl export: error: {len(failed)} artifact(s) failed: "
              + "; ".join(f"{r.format}: {r.status}" for r in failed), file=sys.stderr)
        return 1
    return 0


__all__ = [
    "ExportError", "FormatSpec", "FORMATS", "ExportResult", "formats_from_flags", "export_artifact",
    "export_run", "add_export_arguments", "run_export_command", "artifact_metadata", "check_status",
]
