"""The `edgetl` command: train, export, sweep, bench, report, label."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edgetl.cli import retrain as retrain_cli
from edgetl.cli.outcome import (
    EXIT_CODES_EPILOG,
    EXIT_USER_ERROR,
    LOGGER,
    add_strict_argument,
    add_verbosity_arguments,
    configure_logging,
    failed_units,
    pick_exit_code,
    quiet_progress,
    user_errors,
)
from edgetl.cli.pick import (
    add_bench_arguments,
    add_budget_arguments,
    add_device_arguments,
    bench_from_args,
    budget_from_args,
    cmd_bundle,
    cmd_report,
    pick_from_args,
)
from edgetl.io.text import visible


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    from edgetl.data.dataset import SplitConfig

    d = SplitConfig()
    p.add_argument("--image_dir", required=True, type=Path, help="folder with one sub-folder of images per class")
    p.add_argument("--validation_percentage", type=float, default=d.validation_percentage)
    p.add_argument("--testing_percentage", type=float, default=d.testing_percentage)


def _split_from_args(args: argparse.Namespace):
    from edgetl.data.dataset import SplitConfig

    return SplitConfig(args.validation_percentage, args.testing_percentage)


def _add_backbone_arguments(p: argparse.ArgumentParser) -> None:
    from edgetl.features.bottlenecks import FeatureConfig

    d = FeatureConfig()
    p.add_argument(
        "--weights",
        default=d.weights,
        help=f"'imagenet' (default: {d.weights}), 'none' for random weights (pipeline tests only), or a weights file",
    )
    p.add_argument(
        "--weights_dir",
        type=Path,
        default=d.weights_dir,
        help="folder holding Keras' ImageNet weight files (default: $EDGETL_WEIGHTS_DIR, then Keras' cache)",
    )
    p.add_argument(
        "--bottleneck_dir",
        type=Path,
        default=d.bottleneck_dir,
        help="bottleneck feature cache (default: $EDGETL_CACHE_DIR or the user cache dir)",
    )
    p.add_argument(
        "--feature_engine",
        choices=["litert", "tensorflow"],
        default=d.engine,
        help="what computes the bottlenecks: the backbone converted to TFLite in LiteRT on all cores "
        "(default; checked against TensorFlow on the first batch), or TensorFlow's forward pass",
    )
    p.add_argument(
        "--augment_views",
        type=int,
        default=d.augment_views,
        help="augmented views (flip, crop, rotation, colour) of each training image whose features are "
        f"cached and trained on beside the image's own (default {d.augment_views})",
    )


def _features_from_args(args: argparse.Namespace):
    from edgetl.features.bottlenecks import FeatureConfig

    distortions = retrain_cli.distortions_from_args(args)  # retrain.py's flags shape the views
    return FeatureConfig(
        weights=args.weights,
        weights_dir=args.weights_dir,
        bottleneck_dir=args.bottleneck_dir,
        augment_views=args.augment_views or (retrain_cli.RETRAIN_VIEWS if distortions else 0),
        engine=args.feature_engine,
        distortions=distortions,
    )


def _add_head_arguments(p: argparse.ArgumentParser) -> None:
    from edgetl.train.head import CLASS_WEIGHTS, HeadConfig
    from edgetl.train.tuning import TuneConfig

    d, t = HeadConfig(), TuneConfig()
    p.add_argument("--how_many_training_steps", type=int, default=d.how_many_training_steps)
    p.add_argument("--train_batch_size", type=int, default=d.train_batch_size)
    p.add_argument("--eval_step_interval", type=int, default=d.eval_step_interval)
    # The searched settings default to None: a value given here is held fixed, the others are searched.
    for name, help_text in (
        ("learning_rate", "the head's Adam learning rate"),
        ("l2", "weight decay on the head's kernel"),
        ("dropout", "dropout on the features while training the head"),
        ("label_smoothing", "share of each target spread over all classes"),
    ):
        p.add_argument(
            f"--{name}",
            type=float,
            default=None,
            help=f"{help_text}; fixes it (default: chosen on validation from "
            f"{', '.join(f'{v:g}' for v in getattr(t, name))})",
        )
    p.add_argument(
        "--class_weights",
        choices=CLASS_WEIGHTS,
        default=d.class_weights,
        help="'balanced' weighs each class by n / (classes * n_class) in the loss, for unbalanced folders",
    )
    p.add_argument("--early_stopping_patience", type=int, default=d.early_stopping_patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--no_tune",
        dest="tune",
        action="store_false",
        help="skip the search on validation: train with the given (or default) settings only",
    )
    p.add_argument(
        "--no_refit",
        dest="refit",
        action="store_false",
        help="keep the head trained on the training split instead of refitting on train + validation",
    )


def head_config_from_args(args: argparse.Namespace):
    from edgetl.train.head import HeadConfig
    from edgetl.train.tuning import SEARCHED

    given = {name: getattr(args, name) for name in SEARCHED if getattr(args, name) is not None}
    return HeadConfig(
        how_many_training_steps=args.how_many_training_steps,
        train_batch_size=args.train_batch_size,
        eval_step_interval=args.eval_step_interval,
        class_weights=args.class_weights,
        early_stopping_patience=args.early_stopping_patience,
        seed=args.seed,
        **given,
    )


def tune_config_from_args(args: argparse.Namespace):
    from edgetl.train.tuning import SEARCHED, TuneConfig

    given = {name: getattr(args, name) for name in SEARCHED if getattr(args, name) is not None}
    return TuneConfig(search=args.tune, refit=args.refit).fixing(**given)


def _add_fine_tune_arguments(p: argparse.ArgumentParser, switch: bool) -> None:
    from edgetl.train.finetune import FineTuneConfig

    d = FineTuneConfig()
    if switch:
        p.add_argument(
            "--fine_tune",
            action="store_true",
            help="after the head, train the backbone's top layers with it on augmented photos",
        )
    p.add_argument("--fine_tune_learning_rate", type=float, default=d.learning_rate)
    for name, default, what in (
        ("layers", d.layers, "backbone layers (from the top) that fine-tuning trains; batch norm stays frozen"),
        ("patience", d.patience, "epochs without a lower validation loss before fine-tuning stops"),
        ("epochs", d.max_epochs, "most epochs of fine-tuning; early stopping on validation loss ends sooner"),
        (
            "views",
            d.views,
            "augmented views of each training image whose frozen layers' output is computed once and reused "
            "every epoch; 0: a fresh augmentation every epoch through the whole backbone, slower",
        ),
    ):
        p.add_argument(f"--fine_tune_{name}", type=int, default=default, help=f"{what} (default {default})")


def fine_tune_config_from_args(args: argparse.Namespace):
    from edgetl.train.finetune import FineTuneConfig

    return FineTuneConfig(
        layers=args.fine_tune_layers,
        learning_rate=args.fine_tune_learning_rate,
        max_epochs=args.fine_tune_epochs,
        patience=args.fine_tune_patience,
        views=args.fine_tune_views,
        seed=args.seed,
        distortions=retrain_cli.distortions_from_args(args),
    )


def train_config_from_args(args: argparse.Namespace, log=print):
    """`edgetl train`'s TrainConfig (`edgetl retrain` builds its config here too)."""
    fine_tune = fine_tune_config_from_args(args) if args.fine_tune else None
    parts = (_split_from_args(args), _features_from_args(args), head_config_from_args(args))
    return retrain_cli.train_config(args, *parts, tune_config_from_args(args), fine_tune, log)


def cmd_train(args: argparse.Namespace) -> int:
    from edgetl.train.run import train

    return train(train_config_from_args(args)) and 0


def _csv(cast):
    def parse(text: str):
        try:
            return [cast(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def cmd_sweep(args: argparse.Namespace) -> int:
    from edgetl.cli.export import export_config_from_args
    from edgetl.sweep.config import SweepConfig
    from edgetl.sweep.grid import grid, read_grid_file
    from edgetl.sweep.run import sweep

    if args.grid:
        points, notes = read_grid_file(args.grid)
    else:
        points, notes = grid(args.backbones, args.alphas, args.resolutions)
    log = logging.getLogger(LOGGER).info
    for note in notes:
        log(f"note: {note}")
    config = SweepConfig(
        image_dir=args.image_dir,
        output_dir=args.output_dir,
        points=tuple(points),
        split=_split_from_args(args),
        features=_features_from_args(args),
        head=head_config_from_args(args),
        tune=tune_config_from_args(args),
        export=export_config_from_args(args, args.formats),
        bench=bench_from_args(args),
        budget=budget_from_args(args),
        pick=pick_from_args(args),
        force=args.force,
        fine_tune_front=args.fine_tune_front,
        fine_tune_settings=fine_tune_config_from_args(args),
        summaries_dir=args.summaries_dir,
    )
    if args.ray is not None:
        from edgetl.sweep.ray_driver import ClusterConfig, sweep_on_ray

        result = sweep_on_ray(config, ClusterConfig(args.ray, args.bench_resource), notes, log=log)
    elif args.bench_resource is not None:
        raise ValueError("--bench_resource names the Ray nodes that measure latency; it needs --ray")
    else:
        result = sweep(config, notes, log=log)
    if args.device_results:
        from edgetl.pick.rebuild import rebuild_report

        rebuild_report(args.output_dir, config.budget, config.pick, args.device_results, args.device_threads)
    print(f"report: {result.report}")
    if result.pick is None:
        print("no artifact fits the budget; see the report for the closest ones")
    else:
        c = result.pick
        print(
            f"pick: {c.point} {c.format}: accuracy {c.accuracy:.1%}, p50 {c.latency_ms_p50:.2f} ms, "
            f"{c.size_bytes / 1e6:.2f} MB -> {Path(args.output_dir) / 'best'}"
        )
    return pick_exit_code(result.pick is not None, failed_units(result.results, result.notes), args.strict)


def cmd_bench(args: argparse.Namespace) -> int:
    from edgetl.measure.bench import bench_model

    row = bench_model(args.model, args.image_dir, bench_from_args(args), _split_from_args(args))
    print(json.dumps(row.to_dict(), indent=2))
    return 0 if row.status == "ok" else 1


def cmd_label(args: argparse.Namespace) -> int:
    from edgetl.runtime.label_image import main as label_main

    return label_main(args.label_args)


def _add_sweep_parser(sub) -> None:
    from edgetl.cli.export import add_shared_export_arguments
    from edgetl.sweep.config import SWEEP_FORMATS

    help_text = "train, export and benchmark a width x resolution grid; pick on the Pareto front"
    p = sub.add_parser("sweep", help=help_text, **EXIT_CODES_EPILOG)
    _add_data_arguments(p)
    p.add_argument("--backbones", type=_csv(str), default=["v1", "v2"])
    p.add_argument("--alphas", type=_csv(float), default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--resolutions", type=_csv(int), default=[128, 160, 192, 224])
    p.add_argument("--grid", type=Path, default=None, help="YAML/TOML grid file (overrides the three lists)")
    p.add_argument(
        "--formats",
        type=_csv(str),
        default=list(SWEEP_FORMATS),
        help=f"comma list of format names (default {','.join(SWEEP_FORMATS)})",
    )
    add_shared_export_arguments(p)
    add_bench_arguments(p)
    add_budget_arguments(p)
    _add_backbone_arguments(p)
    _add_head_arguments(p)
    p.add_argument(
        "--fine_tune_front",
        type=int,
        default=0,
        metavar="K",
        help="after the head-only grid, fine-tune the K most accurate points of its Pareto front and add "
        "them as points <id>-ft (exported and benchmarked like the others)",
    )
    _add_fine_tune_arguments(p, switch=False)
    retrain_cli.add_curve_arguments(p)
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="redo every stage even if finished")
    add_strict_argument(p)
    add_device_arguments(p)
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the units as Ray tasks (pip install 'edgetl[ray]'): without ADDRESS on a Ray started "
        "here, 'auto' on the cluster this machine has joined, or the head's host:port",
    )
    p.add_argument(
        "--bench_resource",
        default=None,
        metavar="NAME",
        help="with --ray: measure latency on the nodes offering this custom resource (ray start "
        "--resources='{\"NAME\": 1}'), one at a time per node (default: on this machine's node)",
    )
    p.set_defaults(func=cmd_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgetl", description=__doc__, **EXIT_CODES_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one grid point (backbone x alpha x resolution) and export float32 TFLite")
    _add_data_arguments(p)
    p.add_argument("--backbone", choices=["v1", "v2"], default="v2")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    _add_backbone_arguments(p)
    _add_head_arguments(p)
    _add_fine_tune_arguments(p, switch=True)
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

    _add_sweep_parser(sub)

    p = sub.add_parser("bench", help="measure one .tflite/.onnx on a dataset's test split")
    p.add_argument("model", type=Path)
    _add_data_arguments(p)
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
