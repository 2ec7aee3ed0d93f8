"""`edgetl export`: flags -> ExportConfig -> export_run -> a table, and the exit status."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgetl.export import repeats
from edgetl.export.config import ExportConfig
from edgetl.export.formats import IO_TYPES, QUANTIZATIONS, RUNTIMES, ExportError, formats_from_flags
from edgetl.export.pipeline import export_run
from edgetl.export.run import ARTIFACTS_DIR, EXPORT_SUMMARY, read_export_summary


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `edgetl export` (edgetl/cli.py adds them to its sub-command); defaults from ExportConfig."""
    d = ExportConfig()
    parser.add_argument("--run", required=True, type=Path, help="run directory written by `edgetl train`")
    parser.add_argument(
        "--format",
        default=",".join(RUNTIMES),
        help=f"comma list of {', '.join(RUNTIMES)} (or full format names); default: all of them",
    )
    parser.add_argument(
        "--quantize", default="all", help=f"comma list of {', '.join(QUANTIZATIONS)}, or all (default: all)"
    )
    add_shared_export_arguments(parser)
    parser.add_argument(
        "--calibration_manifest",
        "--calibration-manifest",
        dest="calibration_manifest",
        type=Path,
        default=d.calibration_manifest,
        help="reuse the calibration images listed in this manifest (bit-for-bit reproducible int8)",
    )
    parser.add_argument(
        "--num_threads",
        "--num-threads",
        dest="num_threads",
        type=int,
        default=d.num_threads,
        help=f"threads for running the artifacts during the checks (default {d.num_threads})",
    )


def add_shared_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The export flags `edgetl export` and `edgetl sweep` share: the int8 recipe and the check."""
    d = ExportConfig()
    parser.add_argument(
        "--max_accuracy_drop",
        type=float,
        default=d.max_accuracy_drop,
        help="an artifact fails its check when its test accuracy is significantly below the float "
        f"model's by more than this many points (default {d.max_accuracy_drop:g})",
    )
    parser.add_argument(
        "--max_class_drop",
        "--max-class-drop",
        dest="max_class_drop",
        type=float,
        default=d.max_class_drop,
        help="a quantized artifact also fails its check when one class is more than this many points below "
        "the float model, significantly after Holm's correction over classes (default "
        f"{d.max_class_drop:g})",
    )
    parser.add_argument(
        "--fidelity_images_per_class",
        "--fidelity-images-per-class",
        dest="fidelity_images_per_class",
        type=int,
        default=d.fidelity_images_per_class,
        help="images per class (train, validation and test, never calibration images) the per-class "
        f"check runs on (default {d.fidelity_images_per_class}; 0 turns it off)",
    )
    parser.add_argument(
        "--quantization_ladder",
        "--quantization-ladder",
        dest="quantization_ladder",
        choices=("on", "off"),
        default="on" if d.quantization_ladder else "off",
        help="when an int8 or dynamic-range file fails its check, also export and check tflite-int8-mixed (the "
        "layers with the largest int8 error kept in float), then tflite-int16x8, then tflite-float16, until one "
        "passes (default on)",
    )
    parser.add_argument(
        "--calibration_repeats",
        "--calibration-repeats",
        dest="calibration_repeats",
        type=int,
        default=d.calibration_repeats,
        help="convert and check each calibrated format on this many disjoint sets of calibration images and "
        "report the spread of its overall and per-class accuracy; the artifact kept is the first set's "
        f"(default {d.calibration_repeats}: off)",
    )
    parser.add_argument(
        "--io_type",
        "--io-type",
        dest="io_type",
        choices=IO_TYPES,
        default=d.io_type,
        help=f"input/output type of tflite-int8 (default {d.io_type}: raw pixels, no scaling)",
    )
    parser.add_argument(
        "--calibration_images",
        "--calibration-images",
        dest="calibration_images",
        type=int,
        default=d.num_calibration_images,
        help="representative images for int8 formats, from the training split, balanced across "
        f"classes (default {d.num_calibration_images})",
    )
    parser.add_argument(
        "--dynamic_batch",
        "--dynamic-batch",
        dest="dynamic_batch",
        action="store_true",
        help="leave the artifacts' input batch dimension open (several images per call); by default it is "
        "fixed at 1, which NNAPI and Core ML need to run the whole model",
    )
    parser.add_argument(
        "--no_bias_correction",
        "--no-bias-correction",
        dest="bias_correction",
        action="store_false",
        help="convert int8 formats from the model as trained, without correcting the mean "
        "shift that int8 weight rounding causes (on by default)",
    )


def export_config_from_args(args: argparse.Namespace, formats) -> ExportConfig:
    return ExportConfig(
        formats=tuple(formats),
        io_type=args.io_type,
        num_calibration_images=args.calibration_images,
        calibration_manifest=getattr(args, "calibration_manifest", None),
        bias_correction=args.bias_correction,
        num_threads=args.num_threads,
        max_accuracy_drop=args.max_accuracy_drop,
        max_class_drop=args.max_class_drop,
        fidelity_images_per_class=args.fidelity_images_per_class,
        quantization_ladder=args.quantization_ladder == "on",
        dynamic_batch=args.dynamic_batch,
        calibration_repeats=args.calibration_repeats,
    )


def _format_row(r) -> str:
    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}"
    size = f"{r.size_bytes / 1e6:.2f} MB" if r.size_bytes else "-"
    return (
        f"{r.format:<17} {size:>10} {pct(r.test_accuracy):>8} {pct(r.agreement):>9} {diff:>9} "
        f"{r.seconds:>6.1f}s  {r.status}"
    )


def run_export_command(args: argparse.Namespace) -> int:
    """`edgetl export`: 0 when every artifact passed its check, 1 when one failed, 2 on a usage error."""
    try:
        formats, notes = formats_from_flags(args.format, args.quantize)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        results = export_run(args.run, export_config_from_args(args, formats))
    except ExportError as e:
        print(f"edgetl export: error: {e}", file=sys.stderr)
        return 2
    print(f"{'format':<17} {'size':>10} {'accuracy':>8} {'agreement':>9} {'max diff':>9} {'time':>7}  status")
    for r in results:
        print(_format_row(r))
    if results:
        print(
            f"(Keras float model test accuracy {results[0].keras_test_accuracy:.1%} on "
            f"{results[0].num_test_images} images; summary in {Path(args.run) / ARTIFACTS_DIR / EXPORT_SUMMARY})"
        )
    for fmt, entry in read_export_summary(args.run).items():
        if entry.get("calibration_repeats") and fmt in {r.format for r in results}:
            print(repeats.line(fmt, entry["calibration_repeats"]))
    failed = [r for r in results if not r.ok]
    if failed:
        print(
            f"edgetl export: error: {len(failed)} artifact(s) failed: "
            + "; ".join(f"{r.format}: {r.status}" for r in failed),
            file=sys.stderr,
        )
        return 1
    return 0
