"""Fine-tuning: the top layers of the backbone trained together with the head, on augmented photos.

Starts from the head trained on the cached features (so the first steps do not tear the backbone apart
with a random head's gradients), unfreezes the last `layers` layers of the backbone, keeps every batch
norm frozen and in inference mode (its statistics were learned on ImageNet's million images and a few
thousand photos would only make them noisy), and trains with Adam at a low learning rate. The photos are
decoded once into memory and augmented by a random flip, rotation, zoom, contrast and brightness. By
default (`views` > 0) the frozen layers' output is computed once for a few augmented views of every
training image and only the trained layers run every epoch (`edgetl.train.split`); with `views` = 0 each
epoch sees a fresh augmentation of every image through the whole backbone. Early stopping watches the
validation loss, and the best epoch's weights are kept. The result is an ordinary Keras classifier: raw
pixels in, probabilities out.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
from tqdm import tqdm

from edgetl.data.augment import Distortions
from edgetl.data.dataset import decode_images
from edgetl.io.quiet import bars_off
from edgetl.params import Interval, OneOf, validate
from edgetl.train.head import HeadConfig, class_weights
from edgetl.train.split import backbone_of, cache_views, split_classifier, view_batches


@dataclass(frozen=True)
class FineTuneConfig:
    # Measured on flowers, V2 1.0 @224 (tools/benchmark_quality.py): the last 50 layers at a fixed 1e-4
    # gave 91.7 % test, the last 100 with 1e-4 decayed by a cosine over 8 epochs 94.7 %.
    layers: int = 100  # the backbone's last this-many Keras layers are trained (batch norm stays frozen)
    learning_rate: float = 1e-4  # Adam's starting rate, decayed to zero by a cosine over max_epochs
    max_epochs: int = 10
    batch_size: int = 32
    patience: int = 3  # epochs without a lower validation loss before stopping
    augment: bool = True
    seed: int = 0
    distortions: Distortions | None = None  # retrain.py's distortions instead of the default augmentation
    # > 0: the frozen layers' output computed once for this many augmented views of each training image and
    # reused across epochs (edgetl.train.split); 0: every epoch a fresh augmentation through the whole backbone.
    views: int = 2

    CONSTRAINTS: ClassVar[dict] = {
        "layers": Interval(int, 1),
        "learning_rate": Interval(float, 0, None, "neither"),
        "max_epochs": Interval(int, 1),
        "batch_size": Interval(int, 1),
        "patience": Interval(int, 1),
        "augment": OneOf((True, False)),
        "seed": Interval(int, 0),
        "views": Interval(int, 0),
    }

    def __post_init__(self) -> None:
        validate(self)
        if self.distortions is not None and not isinstance(self.distortions, Distortions):
            raise ValueError(f"fine-tuning distortions must be None or a Distortions, got {self.distortions!r}")


@dataclass
class FineTuneResult:
    model: object  # keras.Model, raw pixels -> probabilities
    info: dict  # run.json's "fine_tune"


def _augmenter(seed: int):
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(10 / 360, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.3, 0.0), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomContrast(0.2, seed=seed + 3),
            keras.layers.RandomBrightness(0.2, value_range=(0, 255), seed=seed + 4),
        ],
        name="augment",
    )


def _distorter(d: Distortions, size: int, seed: int):
    """retrain.py's distortions of one decoded image (uint8 -> float32), as `edgetl.data.augment.distort`
    draws them, in TensorFlow for tf.data: enlarge by crop x scale, cut a random square, flip, brighten."""
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(seed)
    margin, b = 1.0 + d.random_crop / 100.0, d.random_brightness / 100.0

    def apply(image):
        scale = margin * rng.uniform([], 1.0, 1.0 + d.random_scale / 100.0)
        side = tf.maximum(size, tf.cast(tf.round(size * scale), tf.int32))
        image = tf.image.resize(tf.cast(image, tf.float32), tf.stack([side, side]))
        corner = rng.uniform([2], 0, side - size + 1, dtype=tf.int32)
        image = image[corner[0] : corner[0] + size, corner[1] : corner[1] + size]
        if d.flip_left_right:
            image = tf.where(rng.uniform([]) < 0.5, image[:, ::-1], image)
        return tf.clip_by_value(image * rng.uniform([], 1.0 - b, 1.0 + b), 0.0, 255.0)

    return apply


def unfreeze_top(model, layers: int) -> int:
    """Make the backbone's last `layers` layers trainable, batch norm excepted; returns how many weights
    train (the head included)."""
    import keras

    backbone = backbone_of(model)
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        top = i >= len(backbone.layers) - layers
        layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


class _Progress:
    """A tqdm bar over every step of every epoch (so its ETA is the whole fine-tune's), fed by Keras."""

    def __new__(cls, total: int):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = tqdm(total=total, desc="fine-tuning", unit="step", leave=False, disable=bars_off())

            def on_train_batch_end(self, batch, logs=None):
                self.bar.update(1)

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                self.bar.set_postfix_str(
                    f"epoch {epoch + 1}: val_loss {logs.get('val_loss', float('nan')):.4f}, "
                    f"val_acc {logs.get('val_accuracy', float('nan')):.1%}"
                )

            def on_train_end(self, logs=None):
                self.bar.close()

        return Callback()


def fine_tune(
    classifier, splits: dict, resolution: int, head: HeadConfig, config: FineTuneConfig, log=print
) -> FineTuneResult:
    """Fine-tune `classifier` (backbone + trained head) on the training split, early-stopped on validation.

    `splits` maps split name -> (features, labels, records), as `train.featurize` returns them.
    """
    import keras

    started = time.time()
    train_x, train_y, val_x, val_y = _decode_splits(splits, resolution, log)
    num_classes = int(classifier.output.shape[-1])
    trainable = unfreeze_top(classifier, config.layers)
    keras.utils.set_random_seed(config.seed)
    steps = math.ceil(len(train_x) / config.batch_size)
    split = split_classifier(classifier, config.layers) if config.views else None
    cached = {}
    if split is None:
        model = classifier
        train_data, val_data = _pixel_batches(config, resolution, num_classes, (train_x, train_y), (val_x, val_y))
    else:
        model = split.upper
        train_data, val_data, cached = _cached_batches(
            split, config, resolution, num_classes, splits_xy=(train_x, train_y, val_x, val_y), log=log
        )
    # Cosine decay to zero over the longest run: late epochs take small steps instead of hopping around
    # the minimum, which is where a fixed rate left validation loss jumping by +-0.03 per epoch.
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=config.max_epochs * steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=head.label_smoothing),
        metrics=["accuracy"],
    )
    weights = class_weights(train_y, num_classes, head.class_weights)
    log(
        f"fine-tuning the last {config.layers} backbone layers ({trainable:,} trainable weights) on "
        f"{len(train_x)} images, at most {config.max_epochs} epochs of {steps} steps"
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.max_epochs,
        verbose=0,
        callbacks=[stop, _Progress(config.max_epochs * steps)],
        class_weight=None if head.class_weights == "none" else dict(enumerate(weights.tolist())),
    )
    records = [
        {"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items()}}
        for i in range(len(history.history["loss"]))
    ]
    best = int(np.argmin([r["val_loss"] for r in records]))
    classifier.trainable = False  # the saved model is for inference
    info = {
        **asdict(config),
        **cached,
        "trainable_weights": trainable,
        "epochs_run": len(records),
        "best_epoch": best + 1,
        "history": records,
        "seconds": round(time.time() - started, 1),
    }
    log(
        f"fine-tuned: best epoch {best + 1} of {len(records)}, validation accuracy "
        f"{records[best]['val_accuracy']:.1%} ({info['seconds']:.0f} s)"
    )
    return FineTuneResult(classifier, info)


def _augmentation(config: FineTuneConfig, resolution: int):
    """(a tf.data dataset of uint8 images, batch size) -> float32 batches of their augmented views, drawn as
    the pixel path draws them; None without augmentation."""
    import tensorflow as tf

    if config.distortions is not None:
        distort = _distorter(config.distortions, resolution, config.seed)
        return lambda data, size: data.map(distort).batch(size)
    if not config.augment:
        return None
    augmenter = _augmenter(config.seed)
    return lambda data, size: (
        data.batch(size)
        .map(lambda a: tf.cast(a, tf.float32))
        .map(lambda a: augmenter(a, training=True), num_parallel_calls=tf.data.AUTOTUNE)
    )


def _cached_batches(split, config: FineTuneConfig, resolution: int, num_classes: int, splits_xy: tuple, log) -> tuple:
    """Training and validation data for the upper part: the lower part's activations of `config.views`
    augmented views of each training image, and of each validation image as it is; and run.json's note."""
    train_x, train_y, val_x, val_y = splits_xy
    augment = _augmentation(config, resolution)
    views = config.views if augment is not None else 1  # without augmentation every view is the image itself
    megabytes = split.bytes_per_image * (views * len(train_x) + len(val_x)) / 1e6
    log(
        f"caching the frozen layers' output ({split.cut}, {'x'.join(map(str, split.shape))} float32, "
        f"{split.bytes_per_image / 1e3:.0f} kB an image) for {views} view(s) of {len(train_x)} training and "
        f"{len(val_x)} validation images: {megabytes:,.0f} MB in memory"
    )
    clock = time.time()
    train_acts, engine = cache_views(split, train_x, views, augment, config.batch_size)
    val_acts, _ = cache_views(split, val_x, 1, None, config.batch_size)
    note = {
        "cut": split.cut,
        "cache_megabytes": round(megabytes, 1),
        "cache_seconds": round(time.time() - clock, 1),
        "cache_engine": engine.get("engine"),
    }
    return (
        view_batches(train_acts, train_y, num_classes, config.batch_size, config.seed),
        view_batches(val_acts, val_y, num_classes, config.batch_size, None),
        note,
    )


def _pixel_batches(config: FineTuneConfig, resolution: int, num_classes: int, train: tuple, val: tuple) -> tuple:
    """Training and validation batches of decoded photos, for the whole classifier: a fresh augmentation of
    each training image every epoch (`views` = 0, or nothing frozen to cache)."""
    import tensorflow as tf

    augmenter = _augmenter(config.seed) if config.augment else None
    distort = _distorter(config.distortions, resolution, config.seed) if config.distortions else None

    def batches(x, y, shuffle: bool):
        data = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, num_classes)))
        if shuffle:
            data = data.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
        if shuffle and distort is not None:  # per image, as retrain.py drew them; one generator, so in order
            data = data.map(lambda a, b: (distort(a), b))
        data = data.batch(config.batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
        if shuffle and augmenter is not None and distort is None:
            data = data.map(lambda a, b: (augmenter(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
        return data.prefetch(tf.data.AUTOTUNE)

    return batches(*train, True), batches(*val, False)


def _decode_splits(splits: dict, resolution: int, log) -> tuple:
    """Training and validation photos as uint8 arrays, decoded once for every epoch."""
    out = []
    for name in ("training", "validation"):
        _, labels, records = splits[name]
        images, kept, failed = decode_images(records, resolution)
        for line in failed:
            log(f"warning: skipping {line}")
        keep = {id(r) for r in kept}
        out += [images, np.array([y for y, r in zip(labels, records) if id(r) in keep], dtype=np.int64)]
    if not len(out[2]):
        raise ValueError("fine-tuning needs a validation split for early stopping; give --validation_percentage > 0")
    return tuple(out)


def predict(model, records: list, resolution: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of `model` for `records` (decoded as everywhere else)."""
    images, kept, _ = decode_images(records, resolution)
    return (
        model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
        if len(kept)
        else np.zeros((0, int(model.output.shape[-1])), np.float32)
    )
