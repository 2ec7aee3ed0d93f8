"""The `edgetl` command: train, export, sweep, bench, report, label."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edgetl.cli import retrain as retrain_cli
from edgetl.cli.outcome import (
    EXIT_CODES_EPILOG,
    EXIT_USER_ERROR,
    add_strict_argument,
    add_verbosity_arguments,
    configure_logging,
    quiet_progress,
    user_errors,
)
from edgetl.cli.pick import (
    add_bench_arguments,
    add_budget_arguments,
    add_device_arguments,
    bench_from_args,
    cmd_bundle,
    cmd_report,
)
from edgetl.cli.sweep import add_sweep_parser
from edgetl.cli.train_args import (
    add_backbone_arguments,
    add_data_arguments,
    add_fine_tune_arguments,
    add_head_arguments,
    cmd_train,
    split_from_args,
    train_config_from_args,
)
from edgetl.io.text import visible

__all__ = ["build_parser", "main", "train_config_from_args"]  # train_config_from_args: retrain's tests build with it


def cmd_bench(args: argparse.Namespace) -> int:
    from edgetl.measure.bench import bench_model

    row = bench_model(args.model, args.image_dir, bench_from_args(args), split_from_args(args))
    print(json.dumps(row.to_dict(), indent=2))
    return 0 if row.status == "ok" else 1


def cmd_label(args: argparse.Namespace) -> int:
    from edgetl.runtime.label_image import main as label_main

    return label_main(args.label_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetl", description=__doc__, **EXIT_CODES_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one grid point (backbone x alpha x resolution) and export float32 TFLite")
    add_data_arguments(p)
    p.add_argument("--backbone", choices=["v1", "v2"], default="v2")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    add_backbone_arguments(p)
    add_head_arguments(p)
    add_fine_tune_arguments(p, switch=True)
    p.add_argument(
        "--tfhub_module",
        default=None,
        help="TF Hub image feature-vector module (URL or local SavedModel dir) instead of MobileNet; "
        "--resolution must match what the module expects",
    )
    p.add_argument("--print_misclassified_test_images", action="store_true")
    retrain_cli.add_train_arguments(p)
    p.add_argument("--output_dir", type=Path, required=True)
    p.set_defaults(func=cmd_train)
    retrain_cli.add_retrain_parser(sub, p, train_config_from_args)

    p = sub.add_parser("export", help="export a trained run to TFLite/ONNX formats, checked against the float model")
    from edgetl.cli.export import add_export_arguments, run_export_command

    add_export_arguments(p)
    p.set_defaults(func=run_export_command)

    add_sweep_parser(sub)

    p = sub.add_parser("bench", help="measure one .tflite/.onnx on a dataset's test split")
    p.add_argument("model", type=Path)
    add_data_arguments(p)
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "report", help="rebuild results.csv/json, pareto.png and report.md of a sweep", **EXIT_CODES_EPILOG
    )
    p.add_argument("run_dir", type=Path)
    add_strict_argument(p)
    add_budget_arguments(p)
    add_device_arguments(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bundle", help="pack a sweep's artifacts, test images and device_bench.py for a device")
    p.add_argument("run_dir", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="the .zip to write")
    p.add_argument("--front", action="store_true", help="only the artifacts on the Pareto front")
    p.set_defaults(func=cmd_bundle)

    about = "label images with a .tflite or .onnx model (same flags as tools/label_image.py)"
    p = sub.add_parser("label", help=about, add_help=False, prefix_chars="\0")  # no options: all are label_image's
    p.add_argument("label_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_label)
    for name, command in sub.choices.items():
        if name != "label":  # label passes every flag on to label_image
            add_verbosity_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_progress(argv)
    args = build_parser().parse_args(argv)
    configure_logging(args)
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:
        print(f"edgetl {args.command}: error: {visible(e)}", file=sys.stderr)  # may quote a file's names
        return EXIT_USER_ERROR
    except OSError as e:  # a disk fault no stage named (the last line of defence): still a message, not a traceback
        from edgetl.io.files import describe_disk_error, disk_reason

        if disk_reason(e) is None or os.environ.get("EDGETL_DEBUG"):
            raise
        print(f"edgetl {args.command}: error: {describe_disk_error(e, e.filename or '.', 'a file')}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"edgetl {args.command}: interrupted; finished work is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
