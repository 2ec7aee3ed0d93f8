"""`edgetl retrain`: TensorFlow's classic retrain.py command line, run as one `edgetl train`.

Every one of retrain.py's 25 flags is accepted. Each is translated into `edgetl train`'s own flags, parsed
by `edgetl train`'s parser and turned into a TrainConfig by the same function (`edgetl retrain` prints
that command), so there is one implementation; then retrain.py's outputs are put where it put them: the
float .tflite at `--output_graph`, the labels at `--output_labels`, a SavedModel at `--saved_model_dir`,
TensorBoard curves in `--summaries_dir`. `RETRAIN_FLAGS` says what edgetl does with each flag; the README's
"Coming from retrain.py" table is that list.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

SAME, MAPPED, NOTED = "same", "mapped", "noted"
#: Augmented views per training image when distortions are asked for without --augment_views. retrain.py
#: distorted every image afresh at every step (and so could not cache a bottleneck); edgetl caches K views.
RETRAIN_VIEWS = 4

# (flag, how edgetl takes it, what it does). Order: retrain.py's own.
RETRAIN_FLAGS = (
    ("image_dir", SAME, "folder of class sub-folders"),
    ("output_graph", MAPPED, "the float32 .tflite (labels embedded); a `.pb` name gets `.tflite` instead"),
    ("intermediate_output_graphs_dir", MAPPED, "where the intermediate .tflite files go"),
    ("intermediate_store_frequency", MAPPED, "the head every N steps as `intermediate_<step>.tflite`"),
    ("output_labels", SAME, "labels, one per line"),
    ("summaries_dir", MAPPED, "TensorBoard events: `train/`, `validation/`, `search/` (also a curves PNG)"),
    ("how_many_training_steps", MAPPED, "upper bound on the head's steps; early stopping on validation"),
    ("learning_rate", MAPPED, "Adam's rate, held fixed; without it, chosen on validation"),
    ("testing_percentage", SAME, "retrain.py's name-hashed split"),
    ("validation_percentage", SAME, "retrain.py's name-hashed split"),
    ("eval_step_interval", SAME, "steps between evaluations (edgetl's default 50, retrain.py's 10)"),
    ("train_batch_size", SAME, "images per training step"),
    ("test_batch_size", NOTED, "edgetl always tests the whole test split (retrain.py's -1)"),
    ("validation_batch_size", NOTED, "edgetl always evaluates the whole validation split (retrain.py's -1)"),
    ("print_misclassified_test_images", SAME, "lists each misclassified test image"),
    ("bottleneck_dir", MAPPED, "edgetl's bottleneck cache, keyed by backbone, weights and resolution"),
    ("final_tensor_name", NOTED, "the output is the model's one output tensor, whatever its name"),
    ("flip_left_right", MAPPED, "cached augmented views (and fine-tuning) mirror half the images"),
    ("random_crop", MAPPED, "views enlarged by (1 + crop%) and cut at a random place"),
    ("random_scale", MAPPED, "views enlarged by a further uniform(1, 1 + scale%)"),
    ("random_brightness", MAPPED, "view pixels times uniform(1 - b%, 1 + b%), clipped to 0..255"),
    ("tfhub_module", MAPPED, "a TF Hub module; MobileNet URLs fall back to local weights offline"),
    ("saved_model_dir", MAPPED, "a SavedModel: raw 0..255 pixels `image` in, probabilities `prediction` out"),
    ("logging_verbosity", MAPPED, "DEBUG/INFO: every line; WARN: warnings only; ERROR/FATAL: errors only"),
    ("checkpoint_path", NOTED, "no checkpoint: the run directory's model.keras holds the trained weights"),
)

# TensorFlow's label_image.py (examples/label_image, the tutorial's) and its TFLite sibling.
LABEL_IMAGE_FLAGS = (
    ("image", SAME, "one or more photos"),
    ("graph", MAPPED, "alias of `--model_file`; a `.pb` path runs the `.tflite` `edgetl retrain` wrote beside it"),
    ("labels", SAME, "alias of `--label_file` (optional: edgetl models carry their labels)"),
    ("input_height", MAPPED, "checked against the model's input; an error when they differ"),
    ("input_width", MAPPED, "checked against the model's input; an error when they differ"),
    ("input_mean", MAPPED, "(pixel - mean) / std; default from the model's metadata (edgetl models: 0)"),
    ("input_std", MAPPED, "default from the model's metadata (edgetl models: 1, raw 0..255 pixels)"),
    ("input_layer", NOTED, "the model's one input is fed; a note when the file has no tensor of that name"),
    ("output_layer", NOTED, "the model's one output is read; a note when the file has no tensor of that name"),
    ("model_file", SAME, "the .tflite (or .onnx) to run"),
    ("label_file", SAME, "labels, one per line"),
    ("num_threads", SAME, "interpreter threads"),
)

#: retrain.py's defaults for the flags whose notes are printed only when given.
_NOTED_DEFAULTS = {
    "test_batch_size": -1,
    "validation_batch_size": 100,
    "final_tensor_name": "final_result",
    "checkpoint_path": "/tmp/_retrain_checkpoint",
}
VERBOSITY = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def flag_counts(rows=RETRAIN_FLAGS + LABEL_IMAGE_FLAGS) -> dict[str, int]:
    return {kind: sum(1 for _, k, _ in rows if k == kind) for kind in (SAME, MAPPED, NOTED)}


def add_distortion_arguments(p: argparse.ArgumentParser) -> None:
    """retrain.py's distortion flags (edgetl train and retrain): they shape the augmented views."""
    p.add_argument("--flip_left_right", action="store_true", help="mirror half the augmented views (retrain.py's)")
    for name, what in (
        ("random_crop", "margin added around the crop box"),
        ("random_scale", "most the views are enlarged by, at random"),
        ("random_brightness", "most the pixel values are multiplied or divided by"),
    ):
        p.add_argument(f"--{name}", type=float, default=0.0, help=f"percentage: {what} (retrain.py's; default 0)")


def distortions_from_args(args: argparse.Namespace):
    """A Distortions when any retrain.py distortion flag is set, else None."""
    from edgetl.data.augment import Distortions

    d = Distortions(
        bool(getattr(args, "flip_left_right", False)),
        getattr(args, "random_crop", 0.0),
        getattr(args, "random_scale", 0.0),
        getattr(args, "random_brightness", 0.0),
    )
    return d if d.active else None


def add_curve_arguments(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument(
        "--summaries_dir",
        type=Path,
        default=default,
        help="write TensorBoard event files of the training curves here (`tensorboard --logdir DIR`)",
    )


def add_intermediate_arguments(p: argparse.ArgumentParser, default_dir: str | None = None) -> None:
    p.add_argument(
        "--intermediate_store_frequency",
        type=int,
        default=0,
        help="write the head every this-many training steps as intermediate_<step>.tflite (0: never)",
    )
    p.add_argument(
        "--intermediate_output_graphs_dir",
        type=Path,
        default=default_dir,
        help="where the intermediate .tflite files go (default: RUN/intermediate)",
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """retrain.py's flags that `edgetl train` takes too: distortions, curves, intermediate files."""
    add_distortion_arguments(p)
    add_curve_arguments(p)
    add_intermediate_arguments(p)


def train_config(args: argparse.Namespace, split, features, head, tune, fine_tune, log=print):
    """`edgetl train`'s TrainConfig from its flags and the stage configs built from them (`edgetl.cli.main`)."""
    from edgetl.train.run import TrainConfig

    return TrainConfig(
        image_dir=args.image_dir,
        output_dir=args.output_dir,
        backbone=backbone_from_args(args, features, log),
        split=split,
        features=features,
        head=head,
        tune=tune,
        fine_tune=fine_tune,
        print_misclassified_test_images=args.print_misclassified_test_images,
        tfhub_module=args.tfhub_module,
        summaries_dir=args.summaries_dir,
        intermediate_store_frequency=args.intermediate_store_frequency,
        intermediate_output_graphs_dir=args.intermediate_output_graphs_dir,
    )


def backbone_from_args(args: argparse.Namespace, features, log=print):
    """`edgetl train`'s backbone: the flags', or the MobileNet a --tfhub_module URL names; notes on both."""
    from edgetl.features.backbones import BackboneSpec, hub_mobilenet

    backbone = BackboneSpec(args.backbone, args.alpha, args.resolution)
    mobilenet = hub_mobilenet(args.tfhub_module) if args.tfhub_module else None
    if mobilenet is not None and mobilenet != backbone:
        log(f"note: --tfhub_module names MobileNet {mobilenet.id}: the backbone, alpha and resolution follow it")
        backbone = mobilenet
    if features.distortions and not args.augment_views:
        log(f"note: retrain.py's distortions make {features.augment_views} augmented views of each training image")
    return backbone


def _add_retrain_flags(p: argparse.ArgumentParser) -> None:
    from edgetl.data.dataset import SplitConfig
    from edgetl.train.head import HeadConfig

    h, s = HeadConfig(), SplitConfig()
    p.add_argument("--image_dir", required=True, type=Path, help="folder with one sub-folder of images per class")
    p.add_argument("--output_graph", type=Path, default=Path("/tmp/output_graph.pb"))
    add_intermediate_arguments(p, "/tmp/intermediate_graph/")
    p.add_argument("--output_labels", type=Path, default=Path("/tmp/output_labels.txt"))
    add_curve_arguments(p, "/tmp/retrain_logs")
    p.add_argument("--how_many_training_steps", type=int, default=h.how_many_training_steps)
    p.add_argument("--learning_rate", type=float, default=None, help="default: chosen on validation")
    p.add_argument("--testing_percentage", type=float, default=s.testing_percentage)
    p.add_argument("--validation_percentage", type=float, default=s.validation_percentage)
    p.add_argument("--eval_step_interval", type=int, default=h.eval_step_interval)
    p.add_argument("--train_batch_size", type=int, default=h.train_batch_size)
    for name, default in _NOTED_DEFAULTS.items():
        p.add_argument(f"--{name}", type=type(default), default=None, help=f"accepted, noted (retrain.py's {default})")
    p.add_argument("--print_misclassified_test_images", action="store_true")
    p.add_argument("--bottleneck_dir", type=Path, default=None, help="default: edgetl's bottleneck cache")
    add_distortion_arguments(p)
    p.add_argument(
        "--tfhub_module",
        default=None,
        help="TF Hub feature-vector module; MobileNet URLs use local weights offline (default: MobileNet V2 1.0 @224)",
    )
    p.add_argument("--saved_model_dir", type=Path, default=None)
    p.add_argument("--logging_verbosity", choices=VERBOSITY, default="INFO")


def add_retrain_parser(sub, train_parser: argparse.ArgumentParser, train_config_from_args) -> None:
    """Register `edgetl retrain`; `train_parser` and `train_config_from_args` are `edgetl train`'s own."""
    p = sub.add_parser(
        "retrain",
        help="TensorFlow's retrain.py command line (every flag), run as `edgetl train`",
        description=__doc__.split("\n\n")[0],
    )
    _add_retrain_flags(p)
    extra = p.add_argument_group("edgetl's own")
    extra.add_argument("--output_dir", type=Path, default=None, help="the run directory (default: OUTPUT_GRAPH_run)")
    extra.add_argument("--weights_dir", type=Path, default=None, help="folder of Keras' ImageNet weight files")
    extra.add_argument(
        "--augment_views", type=int, default=None, help=f"views per image (default {RETRAIN_VIEWS} with distortions)"
    )
    extra.add_argument("--fine_tune", action="store_true", help="also fine-tune the backbone's top layers")
    p.set_defaults(func=cmd_retrain, train_parser=train_parser, train_config_from_args=train_config_from_args)


def graph_path(output_graph: Path) -> Path:
    """Where the .tflite goes: `--output_graph` itself, or with the suffix `.tflite` for retrain.py's `.pb`."""
    return output_graph if output_graph.suffix.lower() == ".tflite" else output_graph.with_suffix(".tflite")


def run_dir_for(args: argparse.Namespace) -> Path:
    return args.output_dir or graph_path(args.output_graph).with_name(f"{args.output_graph.stem}_run")


def train_argv(args: argparse.Namespace) -> list[str]:
    """The `edgetl train` command line that does what this retrain.py command line asks."""
    from edgetl.features.backbones import hub_mobilenet

    argv = ["--image_dir", str(args.image_dir), "--output_dir", str(run_dir_for(args))]
    for name in ("how_many_training_steps", "testing_percentage", "validation_percentage", "eval_step_interval"):
        argv += [f"--{name}", f"{getattr(args, name):g}"]
    argv += ["--train_batch_size", str(args.train_batch_size)]
    if args.learning_rate is not None:
        argv += ["--learning_rate", f"{args.learning_rate:g}"]
    for name in ("bottleneck_dir", "weights_dir", "summaries_dir", "tfhub_module"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    mobilenet = hub_mobilenet(args.tfhub_module) if args.tfhub_module else None
    if mobilenet is not None:
        argv += ["--backbone", mobilenet.version, "--alpha", f"{mobilenet.alpha:g}"]
        argv += ["--resolution", str(mobilenet.resolution)]
    if args.intermediate_store_frequency:
        argv += ["--intermediate_store_frequency", str(args.intermediate_store_frequency)]
        argv += ["--intermediate_output_graphs_dir", str(args.intermediate_output_graphs_dir)]
    distortions = distortions_from_args(args)
    if distortions is not None:
        argv += ["--flip_left_right"] if distortions.flip_left_right else []
        for name in ("random_crop", "random_scale", "random_brightness"):
            argv += [f"--{name}", f"{getattr(distortions, name):g}"] if getattr(distortions, name) else []
    views = args.augment_views if args.augment_views is not None else (RETRAIN_VIEWS if distortions else 0)
    argv += ["--augment_views", str(views)] if views else []
    argv += ["--print_misclassified_test_images"] if args.print_misclassified_test_images else []
    argv += ["--fine_tune"] if args.fine_tune else []
    return argv


def _logger(level: str):
    """edgetl's lines at retrain.py's --logging_verbosity; TensorFlow's own logging follows it too."""
    if level != "INFO":  # INFO, the default, leaves TensorFlow's logging as the environment set it
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = str(max(0, VERBOSITY.index(level) - 1))
        logging.getLogger("tensorflow").setLevel({"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level))
    if level in ("DEBUG", "INFO"):
        return print
    if level == "WARN":
        return lambda msg: print(msg) if msg.startswith(("warning", "note")) else None
    return lambda msg: None


def save_saved_model(model_file: Path, out_dir: Path) -> Path:
    """A TensorFlow SavedModel of the run's Keras model: signature `serving_default`, input `image` (raw RGB
    0..255, float32 [N, R, R, 3]), output `prediction` (probabilities). Replaces `out_dir`."""
    import keras
    import tensorflow as tf

    from edgetl.features.backbones import register_custom_layers

    register_custom_layers()
    model = keras.saving.load_model(model_file, compile=False)
    size = int(model.input.shape[1])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda image: {"prediction": model(image, training=False)},
        input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")],
    )
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(str(tmp), verbose=False)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def cmd_retrain(args: argparse.Namespace) -> int:
    from edgetl.io.files import atomic_write_bytes
    from edgetl.train.run import train

    log = _logger(args.logging_verbosity)
    for name in _NOTED_DEFAULTS:
        if getattr(args, name) is not None:
            log(f"note: --{name} {getattr(args, name)}: {dict((f, w) for f, _, w in RETRAIN_FLAGS)[name]}")
    argv = train_argv(args)
    log("note: the same as: edgetl train " + " ".join(argv))
    train_args = args.train_parser.parse_args(argv)
    result = train(args.train_config_from_args(train_args, log), log=log)
    graph = graph_path(args.output_graph)
    if graph != args.output_graph:
        log(f"note: --output_graph {args.output_graph}: edgetl writes TFLite, not a GraphDef; wrote {graph}")
    atomic_write_bytes(graph, (result.run_dir / "model.tflite").read_bytes(), "--output_graph")
    atomic_write_bytes(args.output_labels, (result.run_dir / "labels.txt").read_bytes(), "--output_labels")
    outputs = [str(graph), str(args.output_labels)]
    if args.saved_model_dir:
        outputs.append(str(save_saved_model(result.run_dir / "model.keras", args.saved_model_dir)))
    log(f"wrote {', '.join(outputs)}; run directory {result.run_dir}")
    if args.summaries_dir:
        log(f"training curves: tensorboard --logdir {args.summaries_dir}")
    sys.stdout.flush()
    return 0
