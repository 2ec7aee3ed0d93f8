"""Train one grid point: dataset -> frozen backbone -> cached bottlenecks -> softmax head -> run directory."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgetl import __version__
from edgetl.data.dataset import Dataset, SplitConfig, scan_dataset
from edgetl.export import ModelSource, artifact_metadata, export_artifact
from edgetl.export.fidelity import FLOAT_PREDICTIONS, save_float_predictions
from edgetl.export.predictions import REFERENCE, save_reference
from edgetl.features.backbones import (
    BackboneSpec,
    ResolvedWeights,
    build_feature_extractor,
    build_hub_feature_extractor,
    count_macs,
    hub_fingerprint,
    hub_mobilenet,
    hub_unreachable,
    resolve_weights,
)
from edgetl.features.bottlenecks import FeatureConfig, cache_key, compute_features
from edgetl.features.engine import Embedder
from edgetl.io.faults import fault_point
from edgetl.io.files import atomic_write_json, atomic_write_text, sha256_file, writing
from edgetl.params import Interval, validate
from edgetl.train.curves import CURVES_PNG, plot_curves, write_summaries
from edgetl.train.finetune import FineTuneConfig, fine_tune, predict
from edgetl.train.head import Head, HeadConfig, accuracy
from edgetl.train.intermediate import store_intermediate
from edgetl.train.tuning import HeadFit, TuneConfig, fit_head


@dataclass(frozen=True)
class TrainConfig:
    """One grid point: which photos, which backbone, and the settings of each stage."""

    image_dir: Path
    output_dir: Path
    backbone: BackboneSpec
    split: SplitConfig = SplitConfig()
    features: FeatureConfig = FeatureConfig()
    head: HeadConfig = HeadConfig()  # the given settings: the search's starting point and accuracy floor
    tune: TuneConfig = TuneConfig()
    fine_tune: FineTuneConfig | None = None  # None: the head only, on frozen features
    tfhub_module: str | None = None  # handle (URL or local SavedModel dir); replaces the MobileNet backbone
    print_misclassified_test_images: bool = False
    summaries_dir: Path | None = None  # TensorBoard event files of the training curves (edgetl.train.curves)
    intermediate_store_frequency: int = 0  # > 0: the head every this-many steps as a .tflite (retrain.py's)
    intermediate_output_graphs_dir: Path | None = None  # where those go (default: RUN/intermediate)

    CONSTRAINTS: ClassVar[dict] = {"intermediate_store_frequency": Interval(int, 0)}  # 0: none

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class Bottlenecks:
    """What the feature stage hands the head: features per split, and the backbone that made them."""

    dataset: Dataset  # without the files that failed to decode
    splits: dict[str, tuple[np.ndarray, np.ndarray, list]]  # split -> (features, labels, records)
    extractor: object  # the Keras backbone (raw pixels -> pooled features)
    augmented: tuple[np.ndarray, np.ndarray]  # features and labels of the training images' augmented views
    backbone_info: dict  # run.json's "backbone"
    computed: int  # features computed now; the rest came from the cache
    cached: int


@dataclass
class TrainResult:
    run_dir: Path
    classes: list[str]
    metrics: dict
    features_computed: int
    features_cached: int
    skipped_files: list[tuple[str, str]]
    misclassified: list[tuple[str, str, str]]  # (path, true label, predicted label)


def build_classifier(extractor, head: Head, num_classes: int):
    """The deployable model: raw RGB pixels in, class probabilities out."""
    import keras

    dense = keras.layers.Dense(num_classes, activation="softmax", name="head")
    outputs = dense(extractor.output)
    dense.set_weights([head.weights, head.bias])
    return keras.Model(extractor.input, outputs, name="edgetl_classifier")


def local_hub_backbone(config: TrainConfig) -> tuple[BackboneSpec, str | None, str]:
    """(the backbone, the TF Hub handle to load or None, a note). A hub URL naming a MobileNet
    (`edgetl.features.backbones.hub_mobilenet`) that cannot be loaded now becomes that MobileNet on the
    local ImageNet weights, at the configured resolution; any other module is loaded as it is."""
    handle = config.tfhub_module
    try:
        mapped = hub_mobilenet(handle) if handle else None
    except ValueError:  # a MobileNet width edgetl cannot build: only the hub has it
        mapped = None
    why = hub_unreachable(handle) if mapped is not None else None
    if not why:
        return config.backbone, handle, ""
    spec = BackboneSpec(mapped.version, mapped.alpha, config.backbone.resolution)
    return (
        spec,
        None,
        (
            f"{handle} is MobileNet {spec.version} alpha {spec.alpha:g}; {why}, so the same network is built from "
            "its local ImageNet weights (same architecture and ImageNet training; not checked to give the hub module's "
            "exact features): "
        ),
    )


def featurize(
    dataset: Dataset, config: TrainConfig, log=print, weights: ResolvedWeights | None = None, load=None
) -> Bottlenecks:
    """Bottlenecks for every split, the backbone model, and what was resolved about the weights.

    `weights` already resolved (by a sweep, once per point) saves resolving them again; `load` (with
    `load_image`'s signature) is where a sweep's pixels come from, decoded once for the whole grid.
    """
    spec, handle, hub_note = local_hub_backbone(config)
    if handle:
        fingerprint = hub_fingerprint(config.tfhub_module)
        extractor = build_hub_feature_extractor(config.tfhub_module, spec.resolution)
        backbone_id, weights_note = f"hub-{fingerprint[:12]}", f"TF Hub module {config.tfhub_module}"
        weights_desc, weights_source = f"hub:{config.tfhub_module}", "tfhub"
        version, alpha = "hub", 0.0
    else:
        weights = weights or resolve_weights(spec, config.features.weights, config.features.weights_dir)
        extractor = build_feature_extractor(spec, weights)
        fingerprint, backbone_id, weights_note = weights.sha256, spec.id, hub_note + weights.note
        weights_desc, weights_source = weights.description, weights.source
        version, alpha = spec.version, spec.alpha
    log(f"backbone {backbone_id} at {spec.resolution}px: {weights_note}")
    key = cache_key(backbone_id, fingerprint, spec.resolution, config.features.engine)
    embed = Embedder(extractor, config.features.engine, config.features.num_threads)
    result = compute_features(
        dataset.records,
        embed,
        key,
        spec.resolution,
        cache_dir=config.features.bottleneck_dir,
        batch_size=config.features.batch_size,
        desc=f"bottlenecks {backbone_id}",
        load=load,
    )
    log(f"bottlenecks: {result.computed} computed, {result.cached} from cache, {len(result.failed)} failed to decode")
    dataset = dataset.without(result.failed)
    splits = {}
    for split in ("training", "validation", "testing"):
        rows = [i for i, r in enumerate(result.records) if r.split == split]
        splits[split] = (
            result.features[rows] if rows else np.zeros((0, result.features.shape[1]), np.float32),
            np.array([result.records[i].label_index for i in rows], dtype=np.int64),
            [result.records[i] for i in rows],
        )
    views_x, views_y, computed = [], [], result.computed
    for view in range(1, config.features.augment_views + 1):  # training images only, never validation or test
        views = compute_features(
            splits["training"][2],
            embed,
            key,
            spec.resolution,
            cache_dir=config.features.bottleneck_dir,
            batch_size=config.features.batch_size,
            view=view,
            desc=f"augmented view {view}/{config.features.augment_views}",
            distortions=config.features.distortions,
        )
        views_x.append(views.features)
        views_y.append(np.array([r.label_index for r in views.records], dtype=np.int64))
        computed += views.computed
    if views_x:
        log(f"augmented views: {config.features.augment_views} per training image, {sum(map(len, views_y))} features")
    dim = result.features.shape[1]
    augmented = (
        np.concatenate(views_x) if views_x else np.zeros((0, dim), np.float32),
        np.concatenate(views_y) if views_y else np.zeros(0, np.int64),
    )
    backbone_info = {
        "version": version,
        "alpha": alpha,
        "resolution": spec.resolution,
        "weights": weights_desc,
        "weights_source": weights_source,
        "weights_note": weights_note,
        "weights_sha256": fingerprint,
        "macs": count_macs(extractor),
        "params": int(extractor.count_params()),
        "feature_engine": embed.info if computed else {"engine": config.features.engine, "note": "all cached"},
    }
    return Bottlenecks(dataset, splits, extractor, augmented, backbone_info, computed, result.cached)


def train(
    config: TrainConfig, log=print, dataset: Dataset | None = None, weights: ResolvedWeights | None = None, load=None
) -> TrainResult:
    """Run one grid point end to end and write the run directory (docs/interfaces.md).

    A sweep passes the `dataset` it scanned and the `weights` it resolved, once for every point, and
    `load`, its pixels decoded once for the whole grid (`edgetl.data.pixels`).
    Long because it is the stage's script, top to bottom: scan, features, head, metrics, run.json.
    """
    started = time.time()
    if dataset is None:
        dataset = scan_dataset(config.image_dir, config.split)
        for line in dataset.messages():
            log(line)
    log(f"dataset: {dataset.summary()}")

    timings = {}
    clock = time.perf_counter()
    bottlenecks = featurize(dataset, config, log, weights, load)
    timings["features"], clock = time.perf_counter() - clock, time.perf_counter()
    dataset, splits = bottlenecks.dataset, bottlenecks.splits
    (train_x, train_y, _), (val_x, val_y, _), (test_x, test_y, test_records) = (
        splits["training"],
        splits["validation"],
        splits["testing"],
    )
    if len(np.unique(train_y)) < 2:
        raise ValueError("after skipping undecodable files, fewer than two classes have training images")
    fit = fit_head(
        (train_x, train_y),
        (val_x, val_y),
        len(dataset.classes),
        config.head,
        config.tune,
        log=log,
        extra_train=bottlenecks.augmented,
    )
    head = fit.head
    timings["head"], clock = time.perf_counter() - clock, time.perf_counter()
    fault_point("head")

    metrics = {
        "train_accuracy": accuracy(head.predict_proba(train_x), train_y),
        # Of the head trained without validation images (after a refit, validation is training data).
        "validation_accuracy": accuracy(fit.selected.predict_proba(val_x), val_y) if len(val_y) else None,
        "best_step": fit.selected.best_step,
        "refit_steps": fit.refit_steps,
        "num_train": len(train_y),
        "num_augmented": len(bottlenecks.augmented[1]),
        "num_validation": len(val_y),
        "num_test": len(test_y),
    }
    fine_tuned, every_image = None, None
    if config.fine_tune is None:
        model = build_classifier(bottlenecks.extractor, head, len(dataset.classes))
        test_probs = head.predict_proba(test_x)
        # The float model on every image, for the export's per-class fidelity check: free here (the features
        # are in memory), a forward pass per image there.
        every_image = (
            np.concatenate([head.predict_proba(x) for x, _, _ in splits.values()]),
            [r.path for _, _, records in splits.values() for r in records],
        )
    else:
        # From the head that never saw validation images, so early stopping on them stays honest.
        fine_tuned = fine_tune(
            build_classifier(bottlenecks.extractor, fit.selected, len(dataset.classes)),
            splits,
            config.backbone.resolution,
            fit.chosen,
            config.fine_tune,
            log,
        )
        model, test_probs = fine_tuned.model, predict(fine_tuned.model, test_records, config.backbone.resolution)
        best = fine_tuned.info["history"][fine_tuned.info["best_epoch"] - 1]
        metrics.update(train_accuracy=best["accuracy"], validation_accuracy=best["val_accuracy"])  # train: augmented
    if fine_tuned is not None:
        timings["fine_tune"], clock = time.perf_counter() - clock, time.perf_counter()
    metrics["test_accuracy"] = accuracy(test_probs, test_y)
    log(f"final test accuracy = {metrics['test_accuracy']:.1%} (N={len(test_y)})")
    misclassified = [
        (str(r.path), dataset.classes[t], dataset.classes[p])
        for r, t, p in zip(test_records, test_y, test_probs.argmax(axis=1))
        if t != p
    ]
    if config.print_misclassified_test_images:
        log("=== misclassified test images ===")
        for path, truth, predicted in misclassified:
            log(f"{path}  true: {truth}  predicted: {predicted}")

    run_dir = Path(config.output_dir)
    run = {
        "edgetl_version": __version__,
        "image_dir": str(Path(config.image_dir).resolve()),
        "validation_percentage": config.split.validation_percentage,
        "testing_percentage": config.split.testing_percentage,
        "classes": dataset.classes,
        "backbone": bottlenecks.backbone_info,
        "training": asdict(fit.chosen),
        "tuning": fit.summary(config.head),
        "augment_views": config.features.augment_views,
        "fine_tune": fine_tuned.info if fine_tuned else None,
        "head": {"macs": int(head.weights.size), "params": int(head.weights.size + head.bias.size)},
        "metrics": metrics,
        "history": fit.selected.history,
        "num_skipped_files": len(dataset.skipped),
        "skipped_files": [[str(p), why] for p, why in dataset.skipped],
        "seconds": round(time.time() - started, 1),  # without save_run's own, which "timings" has
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    save_run(run_dir, model, run, log, (test_probs, [r.path for r in test_records]), every_image)
    write_curves(config, run, fit, bottlenecks.extractor, log)
    return TrainResult(
        run_dir,
        dataset.classes,
        metrics,
        bottlenecks.computed,
        bottlenecks.cached,
        [(str(p), why) for p, why in dataset.skipped],
        misclassified,
    )


def write_curves(config: TrainConfig, run: dict, fit: HeadFit, extractor, log=print) -> None:
    """The run's training curves (RUN/curves.png; TensorBoard events in `summaries_dir`) and retrain.py's
    intermediate graphs; none of them is part of the run's model files."""
    run_dir = Path(config.output_dir)
    png = plot_curves(run, run_dir / CURVES_PNG)
    if config.summaries_dir is not None:
        refit = fit.head.history if fit.refit_steps else None
        events = write_summaries(config.summaries_dir, run, fit.histories, refit)
        log(
            f"training curves: {len(events)} TensorBoard event files in {config.summaries_dir}"
            + (f", {png}" if png else "")
        )
    elif png:
        log(f"training curves: {png}")
    if config.intermediate_store_frequency:
        store_intermediate(
            fit,
            lambda head: build_classifier(extractor, head, len(run["classes"])),
            run,
            config.intermediate_output_graphs_dir or run_dir / "intermediate",
            config.intermediate_store_frequency,
            log,
        )


def save_run(
    run_dir: Path,
    model,
    run: dict,
    log=print,
    test_predictions: tuple | None = None,
    float_predictions: tuple | None = None,
) -> None:
    """Write the run directory; each piece lands atomically and run.json last (it marks the run complete).
    `test_predictions`: (the model's probabilities on the test split, those images' paths), which every
    export check compares with (`edgetl.export.predictions`); `float_predictions`: the same on every image
    (`edgetl.export.fidelity`)."""

    started = time.perf_counter()
    with writing(run_dir, "the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").unlink(missing_ok=True)  # until rewritten, the directory is not a finished run
    atomic_write_text(run_dir / "labels.txt", "\n".join(run["classes"]) + "\n", "the labels")
    tmp_keras = run_dir / ".model.tmp.keras"
    with writing(run_dir / "model.keras", "the Keras model", cleanup=(tmp_keras,)):
        model.save(tmp_keras)
        os.replace(tmp_keras, run_dir / "model.keras")
    # No SavedModel: writing one traced the model for longer than the conversion took, and every TFLite
    # conversion starts from the model's frozen forward function (edgetl.export.tflite).
    shutil.rmtree(run_dir / "saved_model", ignore_errors=True)  # an older run's, no longer what model.keras is
    fault_point("save_run:tflite")
    export_artifact(
        ModelSource(model, None), "tflite-float32", run_dir / "model.tflite", artifact_metadata(run, "tflite-float32")
    )
    names = ("model.keras", "model.tflite")
    if test_predictions is not None:
        run = {**run, "reference": save_reference(run_dir, *test_predictions)}
        names += (REFERENCE,)
    if float_predictions is not None:
        save_float_predictions(run_dir, *float_predictions)
        names += (FLOAT_PREDICTIONS,)
    else:
        (run_dir / FLOAT_PREDICTIONS).unlink(missing_ok=True)  # an older run's, not this model's
    # What the model files hash to, so a resumed sweep notices one a power cut truncated.
    run = {
        **run,
        "files": {name: sha256_file(run_dir / name) for name in names},
        "timings": {**run.get("timings", {}), "save": round(time.perf_counter() - started, 2)},
    }
    atomic_write_json(run_dir / "run.json", run, "run.json")
    log(f"wrote {run_dir}/model.tflite, model.keras, labels.txt, run.json")
