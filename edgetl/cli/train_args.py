"""`edgetl train`'s options, shared by `edgetl sweep` and `edgetl retrain`: data split, backbone and features,
the head and its search, fine-tuning; each group's arguments and the frozen config built from them."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgetl.cli import retrain as retrain_cli


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    from edgetl.data.dataset import SplitConfig

    d = SplitConfig()
    p.add_argument("--image_dir", required=True, type=Path, help="folder with one sub-folder of images per class")
    p.add_argument("--validation_percentage", type=float, default=d.validation_percentage)
    p.add_argument("--testing_percentage", type=float, default=d.testing_percentage)


def split_from_args(args: argparse.Namespace):
    from edgetl.data.dataset import SplitConfig

    return SplitConfig(args.validation_percentage, args.testing_percentage)


def add_backbone_arguments(p: argparse.ArgumentParser) -> None:
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


def features_from_args(args: argparse.Namespace):
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


def add_head_arguments(p: argparse.ArgumentParser) -> None:
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


def add_fine_tune_arguments(p: argparse.ArgumentParser, switch: bool) -> None:
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
    parts = (split_from_args(args), features_from_args(args), head_config_from_args(args))
    return retrain_cli.train_config(args, *parts, tune_config_from_args(args), fine_tune, log)


def cmd_train(args: argparse.Namespace) -> int:
    from edgetl.train.run import train

    return train(train_config_from_args(args)) and 0
