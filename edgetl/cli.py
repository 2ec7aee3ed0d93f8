"""The `edgetl` command: train, export, sweep, bench, report, label."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# TensorFlow's C++ start-up chatter buries the messages users need; set before any TF import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image_dir", required=True, type=Path, help="folder with one sub-folder of images per class")
    p.add_argument("--validation_percentage", type=float, default=10.0)
    p.add_argument("--testing_percentage", type=float, default=10.0)


def _add_backbone_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default="imagenet",
                   help="'imagenet' (default), 'none' for random weights (pipeline tests only), or a weights file")
    p.add_argument("--weights_dir", type=Path, default=None,
                   help="folder holding Keras' ImageNet weight files (default: $EDGETL_WEIGHTS_DIR, then Keras' cache)")
    p.add_argument("--bottleneck_dir", type=Path, default=None,
                   help="bottleneck feature cache (default: $EDGETL_CACHE_DIR or the user cache dir)")


def _add_head_arguments(p: argparse.ArgumentParser) -> None:
    from .head import HeadConfig

    d = HeadConfig()
    p.add_argument("--how_many_training_steps", type=int, default=d.how_many_training_steps)
    p.add_argument("--learning_rate", type=float, default=d.learning_rate)
    p.add_argument("--train_batch_size", type=int, default=d.train_batch_size)
    p.add_argument("--eval_step_interval", type=int, default=d.eval_step_interval)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--early_stopping_patience", type=int, default=d.early_stopping_patience)
    p.add_argument("--seed", type=int, default=d.seed)


def head_config_from_args(args: argparse.Namespace):
    from .head import HeadConfig

    return HeadConfig(
        how_many_training_steps=args.how_many_training_steps,
        learning_rate=args.learning_rate,
        train_batch_size=args.train_batch_size,
        eval_step_interval=args.eval_step_interval,
        dropout=args.dropout,
        early_stopping_patience=args.early_stopping_patience,
        seed=args.seed,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .backbones import BackboneSpec
    from .train import TrainConfig, train

    config = TrainConfig(
        image_dir=args.image_dir,
        output_dir=args.output_dir,
        backbone=BackboneSpec(args.backbone, args.alpha, args.resolution),
        weights=args.weights,
        weights_dir=args.weights_dir,
        bottleneck_dir=args.bottleneck_dir,
        validation_percentage=args.validation_percentage,
        testing_percentage=args.testing_percentage,
        head=head_config_from_args(args),
        print_misclassified_test_images=args.print_misclassified_test_images,
    )
    train(config)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from .label_image import main as label_main

    return label_main(args.label_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one grid point (backbone x alpha x resolution) and export float32 TFLite")
    _add_data_arguments(p)
    p.add_argument("--backbone", choices=["v1", "v2"], default="v2")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    _add_backbone_arguments(p)
    _add_head_arguments(p)
    p.add_argument("--print_misclassified_test_images", action="store_true")
    p.add_argument("--output_dir", type=Path, required=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a trained run to TFLite/ONNX formats, checked against the float model")
    from .export import add_export_arguments, run_export_command

    add_export_arguments(p)
    p.set_defaults(func=run_export_command)

    p = sub.add_parser("label", help="label images with a .tflite or .onnx model (same flags as tools/label_image.py)",
                       add_help=False)
    p.add_argument("label_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_label)
    return parser


# Errors a user can fix: printed as one message, never a traceback.
def _user_errors() -> tuple[type[BaseException], ...]:
    from .backbones import WeightsNotFoundError
    from .data import DatasetError

    errors: list[type[BaseException]] = [DatasetError, WeightsNotFoundError, FileNotFoundError]
    try:
        from .export import ExportError

        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"edgetl {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgetl {args.command}: interrupted; finished work is saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
