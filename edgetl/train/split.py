"""Fine-tuning on cached activations: the classifier split where its trained layers begin.

Every layer below the first trained one is frozen, and so is every batch norm (in inference mode), so the
lower part's output for a given input image never changes during fine-tuning. It is computed once (in
LiteRT) for each of `views` augmented views of every training image and each validation image, kept in memory,
and only the upper part (the trained layers and the head) runs forward and backward every epoch; epoch
`e` shows image `i` its view `(e + offset_i) mod views`. The two parts share the classifier's layers,
so training the upper part trains the classifier itself, which stays an ordinary raw-pixels-in model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from edgetl.features.engine import Embedder
from edgetl.io.quiet import bars_off


def backbone_of(model):
    """The classifier's backbone: its one nested Keras model."""
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def cut_point(backbone, layers: int) -> tuple[int, object] | None:
    """(index of the upper part's first layer, the one tensor that crosses the cut), or None when nothing is
    frozen below. The cut is at the first trained layer, or lower when a residual connection crosses it there
    (the frozen layers between then run, frozen, in the upper part)."""
    import keras

    produced = {id(layer.output): i for i, layer in enumerate(backbone.layers)}
    for cut in range(len(backbone.layers) - layers, 1, -1):
        crossing = {
            id(t): t
            for layer in backbone.layers[cut:]
            for t in keras.tree.flatten(layer.input)
            if produced.get(id(t), -1) < cut
        }
        if len(crossing) == 1:
            return cut, next(iter(crossing.values()))
    return None


@dataclass
class Split:
    lower: object  # keras.Model: raw pixels -> the activations at the cut (frozen)
    upper: object  # keras.Model: activations at the cut -> class probabilities (what fine-tuning trains)
    cut: str  # the name of the backbone layer whose output is cached

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.upper.input.shape[1:])

    @property
    def bytes_per_image(self) -> int:
        return int(np.prod(self.shape)) * 4


def split_classifier(classifier, layers: int) -> Split | None:
    """`classifier` (input -> preprocessing -> backbone -> pooling -> head, one chain) as lower and upper parts
    sharing its layers; None when no layer of the backbone lies below the trained ones."""
    import keras

    backbone = backbone_of(classifier)
    found = cut_point(backbone, layers)
    if found is None:
        return None
    cut, tensor = found
    at = classifier.layers.index(backbone)
    before = [layer for layer in classifier.layers[:at] if not isinstance(layer, keras.layers.InputLayer)]
    lower_inner, upper_inner = keras.Model(backbone.input, tensor), keras.Model(tensor, backbone.output)
    pixels = x = keras.Input(classifier.input.shape[1:], dtype=classifier.input.dtype)
    for layer in before:
        x = layer(x)
    lower = keras.Model(pixels, lower_inner(x, training=False), name="lower")
    cached = y = keras.Input(tensor.shape[1:], name="activations")
    y = upper_inner(y, training=False)  # as the classifier calls its backbone: batch norm in inference mode
    for layer in classifier.layers[at + 1 :]:
        y = layer(y)
    return Split(lower, keras.Model(cached, y, name="upper"), backbone.layers[cut - 1].name)


def cache_views(split: Split, images: np.ndarray, views: int, augment, batch_size: int = 32) -> tuple[np.ndarray, dict]:
    """The lower part's output for `views` augmented views of each image: float32 (views, N, *split.shape), and
    how it was computed. The lower part runs in LiteRT (`edgetl.features.engine`: checked against TensorFlow on
    the first images, TensorFlow when they differ), many times faster than TensorFlow's forward pass here.

    `augment` maps a tf.data dataset of uint8 images to float32 batches (None: the images as they are)."""
    import tensorflow as tf

    embed = Embedder(split.lower)
    out = np.empty((views, len(images), *split.shape), np.float32)
    with tqdm(
        total=views * len(images), desc="caching activations", unit="img", leave=False, disable=bars_off()
    ) as bar:
        for view in range(views):
            data = tf.data.Dataset.from_tensor_slices(images)
            if augment is None:
                data = data.batch(batch_size).map(lambda a: tf.cast(a, tf.float32))
            else:
                data = augment(data, batch_size)
            at = 0
            for batch in data.prefetch(tf.data.AUTOTUNE):
                out[view, at : at + len(batch)] = embed(batch.numpy())
                at += len(batch)
                bar.update(len(batch))
    return out, embed.info


def view_batches(activations: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, seed: int | None):
    """A keras PyDataset of (activations, one-hot labels): shuffled, each image in one of its views per epoch,
    the views cycling across epochs; in order and view 0 when `seed` is None (validation)."""
    import keras

    class Views(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.onehot = np.eye(num_classes, dtype=np.float32)[labels]
            self.rng = np.random.default_rng(seed) if seed is not None else None
            self.offset = self.rng.integers(0, len(activations), len(labels)) if self.rng else np.zeros_like(labels)
            self.epoch = 0
            self.order = self.rng.permutation(len(labels)) if self.rng else np.arange(len(labels))

        def __len__(self) -> int:
            return math.ceil(len(labels) / batch_size)

        def __getitem__(self, i: int):
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            return activations[(self.offset[idx] + self.epoch) % len(activations), idx], self.onehot[idx]

        def on_epoch_end(self) -> None:
            if self.rng is not None:
                self.epoch += 1
                self.order = self.rng.permutation(len(labels))

    return Views()
