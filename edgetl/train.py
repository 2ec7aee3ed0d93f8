"""Train one grid point: dataset -> frozen backbone -> cached bottlenecks -> softmax head -> run directory."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .backbones import (
    BackboneSpec,
    ResolvedWeights,
    build_feature_extractor,
    build_hub_feature_extractor,
    count_macs,
    hub_fingerprint,
    resolve_weights,
)
from .data import Dataset, SplitConfig, scan_dataset
from .features import FeatureConfig, cache_key, compute_features
from .files import atomic_write_json, atomic_write_text, checkpoint, sha256_file, writing
from .head import Head, HeadConfig, accuracy, train_head


@dataclass(frozen=True)
class TrainConfig:
    """One grid point: which photos, which backbone, and the settings of each stage."""

    image_dir: Path
    output_dir: Path
    backbone: BackboneSpec
    split: SplitConfig = SplitConfig()
    features: FeatureConfig = FeatureConfig()
    head: HeadConfig = HeadConfig()
    tfhub_module: str | None = None  # handle (URL or local SavedModel dir); replaces the MobileNet backbone
    print_misclassified_test_images: bool = False


@dataclass
class Bottlenecks:
    """What the feature stage hands the head: features per split, and the backbone that made them."""

    dataset: Dataset  # without the files that failed to decode
    splits: dict[str, tuple[np.ndarray, np.ndarray, list]]  # split -> (features, labels, records)
    extractor: object  # the Keras backbone (raw pixels -> pooled features)
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


def featurize(dataset: Dataset, config: TrainConfig, log=print, weights: ResolvedWeights | None = None) -> Bottlenecks:
    """Bottlenecks for every split, the backbone model, and what was resolved about the weights.

    `weights` already resolved (by a sweep, once per point) saves resolving them again.
    """
    spec = config.backbone
    if config.tfhub_module:
        fingerprint = hub_fingerprint(config.tfhub_module)
        extractor = build_hub_feature_extractor(config.tfhub_module, spec.resolution)
        backbone_id, weights_note = f"hub-{fingerprint[:12]}", f"TF Hub module {config.tfhub_module}"
        weights_desc, weights_source = f"hub:{config.tfhub_module}", "tfhub"
        version, alpha = "hub", 0.0
    else:
        weights = weights or resolve_weights(spec, config.features.weights, config.features.weights_dir)
        extractor = build_feature_extractor(spec, weights)
        fingerprint, backbone_id, weights_note = weights.sha256, spec.id, weights.note
        weights_desc, weights_source = weights.description, weights.source
        version, alpha = spec.version, spec.alpha
    log(f"backbone {backbone_id} at {spec.resolution}px: {weights_note}")
    key = cache_key(backbone_id, fingerprint, spec.resolution)
    result = compute_features(
        dataset.records,
        lambda batch: extractor.predict_on_batch(batch),
        key,
        spec.resolution,
        cache_dir=config.features.bottleneck_dir,
        batch_size=config.features.batch_size,
        desc=f"bottlenecks {backbone_id}",
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
    }
    return Bottlenecks(dataset, splits, extractor, backbone_info, result.computed, result.cached)


def train(config: TrainConfig, log=print, dataset: Dataset | None = None,
          weights: ResolvedWeights | None = None) -> TrainResult:
    """Run one grid point end to end and write the run directory (docs/interfaces.md).

    A sweep passes the `dataset` it scanned and the `weights` it resolved, once for every point.
    Long because it is the stage's script, top to bottom: scan, features, head, metrics, run.json.
    """
    started = time.time()
    if dataset is None:
        dataset = scan_dataset(config.image_dir, config.split)
        for note in dataset.warnings:
            log(f"warning: {note}")
        for path, why in dataset.skipped:
            log(f"warning: skipping {path}: {why}")
    log(f"dataset: {dataset.summary()}")

    bottlenecks = featurize(dataset, config, log, weights)
    dataset, splits = bottlenecks.dataset, bottlenecks.splits
    (train_x, train_y, _), (val_x, val_y, _), (test_x, test_y, test_records) = (
        splits["training"], splits["validation"], splits["testing"]
    )
    if len(np.unique(train_y)) < 2:
        raise ValueError("after skipping undecodable files, fewer than two classes have training images")
    head = train_head(train_x, train_y, val_x, val_y, len(dataset.classes), config.head, log=log)
    checkpoint("head")

    test_probs = head.predict_proba(test_x)
    metrics = {
        "train_accuracy": accuracy(head.predict_proba(train_x), train_y),
        "validation_accuracy": accuracy(head.predict_proba(val_x), val_y) if len(val_y) else None,
        "test_accuracy": accuracy(test_probs, test_y),
        "best_step": head.best_step,
        "num_train": len(train_y),
        "num_validation": len(val_y),
        "num_test": len(test_y),
    }
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
        "training": asdict(config.head),
        "head": {"macs": int(head.weights.size), "params": int(head.weights.size + head.bias.size)},
        "metrics": metrics,
        "history": head.history,
        "num_skipped_files": len(dataset.skipped),
        "skipped_files": [[str(p), why] for p, why in dataset.skipped],
        "seconds": round(time.time() - started, 1),
    }
    save_run(run_dir, build_classifier(bottlenecks.extractor, head, len(dataset.classes)), run, log)
    return TrainResult(
        run_dir, dataset.classes, metrics, bottlenecks.computed, bottlenecks.cached,
        [(str(p), why) for p, why in dataset.skipped], misclassified,
    )


def save_run(run_dir: Path, model, run: dict, log=print) -> None:
    """Write the run directory; each piece lands atomically and run.json last (it marks the run complete)."""
    from .export import ModelSource, artifact_metadata, export_artifact

    with writing(run_dir, "the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").unlink(missing_ok=True)  # until rewritten, the directory is not a finished run
    atomic_write_text(run_dir / "labels.txt", "\n".join(run["classes"]) + "\n", "the labels")
    tmp_keras = run_dir / ".model.tmp.keras"
    with writing(run_dir / "model.keras", "the Keras model", cleanup=(tmp_keras,)):
        model.save(tmp_keras)
        os.replace(tmp_keras, run_dir / "model.keras")
    checkpoint("save_run:saved_model")
    tmp_saved = run_dir / ".saved_model.tmp"
    shutil.rmtree(tmp_saved, ignore_errors=True)
    with writing(run_dir / "saved_model", "the SavedModel", cleanup=(tmp_saved,)):
        model.export(str(tmp_saved), verbose=False)
        if (run_dir / "saved_model").exists():
            shutil.rmtree(run_dir / "saved_model")
        os.replace(tmp_saved, run_dir / "saved_model")
    checkpoint("save_run:tflite")
    export_artifact(ModelSource(model, run_dir / "saved_model"), "tflite-float32", run_dir / "model.tflite",
                    artifact_metadata(run, "tflite-float32"))
    # What the model files hash to, so a resumed sweep notices one a power cut truncated.
    run = {**run, "files": {name: sha256_file(run_dir / name) for name in ("model.keras", "model.tflite")}}
    atomic_write_json(run_dir / "run.json", run, "run.json")
    log(f"wrote {run_dir}/model.tflite, model.keras, saved_model/, labels.txt, run.json")
