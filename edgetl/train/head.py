"""The classification head: one softmax layer trained on cached bottleneck features.

Trained in numpy (mini-batch Adam, optional dropout on the features, label smoothing, class weights,
early stopping on validation cross-entropy), because a single dense layer needs no framework and numpy
makes it bit-for-bit repeatable for a given seed. The learned weights are then placed into a Keras
Dense layer for export.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from edgetl.params import Interval, OneOf, validate

CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class HeadConfig:
    how_many_training_steps: int = 4000  # upper bound; early stopping usually ends sooner
    learning_rate: float = 0.001
    train_batch_size: int = 100
    eval_step_interval: int = 50
    dropout: float = 0.0
    l2: float = 0.0  # weight decay on the dense kernel
    label_smoothing: float = 0.0  # share of each target spread evenly over the classes
    class_weights: str = "none"  # "balanced": each class weighs n / (classes * n_class) in the loss
    early_stopping_patience: int = 10  # evaluations without a better validation loss
    seed: int = 0

    # NaN is refused everywhere: it would train to NaN weights without a word.
    CONSTRAINTS: ClassVar[dict] = {
        "how_many_training_steps": Interval(int, 1),
        "learning_rate": Interval(float, 0, None, "neither"),
        "train_batch_size": Interval(int, 1),
        "eval_step_interval": Interval(int, 1),
        "dropout": Interval(float, 0, 1, "left"),
        "l2": Interval(float, 0),
        "label_smoothing": Interval(float, 0, 1, "left"),
        "class_weights": OneOf(CLASS_WEIGHTS),
        "early_stopping_patience": Interval(int, 1),
        "seed": Interval(int, 0),
    }

    def __post_init__(self) -> None:
        validate(self)


HEAD_FIELDS = tuple(f.name for f in fields(HeadConfig))  # the settings (CONSTRAINTS is not one)


@dataclass
class Head:
    weights: np.ndarray  # (D, C) float32
    bias: np.ndarray  # (C,) float32
    history: list[dict] = field(default_factory=list)  # one dict per evaluation
    best_step: int = 0

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return _softmax(features @ self.weights + self.bias)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Over the last axis: one head's (N, C) logits or a stack of heads' (K, N, C)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(probs: np.ndarray, labels: np.ndarray, sample_weights: np.ndarray | None = None) -> float:
    losses = -np.log(probs[np.arange(len(labels)), labels] + 1e-12)
    if sample_weights is None:
        return float(np.mean(losses))
    return float(np.sum(losses * sample_weights) / np.sum(sample_weights))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else float("nan")


def class_weights(labels: np.ndarray, num_classes: int, rule: str) -> np.ndarray:
    """Per-class loss weights: ones, or n / (classes * n_class) ("balanced", as scikit-learn defines it)."""
    if rule == "none":
        return np.ones(num_classes, np.float32)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    # A class absent from the labels gets weight 0 rather than a division by zero.
    return np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)


#: HeadConfig fields that may differ between heads trained together (`train_heads`): the batches and the
#: dropout masks depend only on the other fields, so heads that share those see the same ones.
PER_HEAD = ("learning_rate", "l2", "label_smoothing")


class _Stack:
    """K softmax layers trained side by side: kernels (K, D, C), biases (K, 1, C), Adam moments, and each
    head's own learning rate, weight decay and label smoothing as (K, 1, 1) float32 (the precision a
    Python float takes next to a float32 array, so a stack of one computes exactly what one head did)."""

    def __init__(self, configs: list[HeadConfig], w: np.ndarray, num_classes: int) -> None:
        per_head = lambda values: np.asarray(values, np.float32).reshape(-1, 1, 1)  # noqa: E731
        self.rows = np.arange(len(configs))  # which of the configs each stacked head is
        self.w, self.b = w, np.zeros((len(configs), 1, num_classes), np.float32)
        self.learning_rate = per_head([c.learning_rate for c in configs])
        self.l2 = per_head([c.l2 for c in configs])
        self.off_target = per_head([c.label_smoothing / num_classes for c in configs])
        self.on_target = per_head([1.0 - c.label_smoothing for c in configs]).reshape(-1, 1)
        self.moments = [(np.zeros_like(p), np.zeros_like(p)) for p in (self.w, self.b)]

    def keep(self, live: np.ndarray) -> None:
        """Drop the heads that stopped (`live` False): a finished head costs nothing afterwards."""
        for name in ("rows", "w", "b", "learning_rate", "l2", "off_target", "on_target"):
            setattr(self, name, getattr(self, name)[live])
        self.moments = [(m[live], v[live]) for m, v in self.moments]

    def step(self, step: int, x: np.ndarray, y: np.ndarray, weight_of: np.ndarray | None) -> None:
        """One Adam step of every head on the batch (x, y): written out so the update order, and so the
        result, is fixed for a seed."""
        delta = _softmax(x @ self.w + self.b)  # d(loss)/d(logits) = probs - target
        delta -= self.off_target
        delta[:, np.arange(len(y)), y] -= self.on_target
        if weight_of is not None:
            delta *= weight_of[y][:, None]
        grads = (x.T @ delta / len(y) + self.l2 * self.w, delta.mean(axis=1, keepdims=True))
        beta1, beta2, eps = 0.9, 0.999, 1e-7
        for param, grad, (m, v) in zip((self.w, self.b), grads, self.moments):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            param -= (self.learning_rate * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)


def _shared_config(configs: list[HeadConfig]) -> HeadConfig:
    """The settings every head of one `train_heads` call shares; ValueError naming those that differ."""
    if not configs:
        raise ValueError("train_heads needs at least one HeadConfig")
    differ = sorted(
        {f for c in configs for f in HEAD_FIELDS if f not in PER_HEAD and getattr(c, f) != getattr(configs[0], f)}
    )
    if differ:
        raise ValueError(
            f"heads trained together may differ only in {', '.join(PER_HEAD)}; these differ: {', '.join(differ)}"
        )
    return configs[0]


def train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    config: HeadConfig = HeadConfig(),
    log=print,
    fixed_steps: int | None = None,
) -> Head:
    """Fit the softmax layer; returns the weights with the best validation loss seen.

    `fixed_steps`: train exactly that many steps and return the final weights, no early stopping (the
    refit on train + validation, whose step count was chosen on validation before).
    """
    return train_heads(train_x, train_y, val_x, val_y, num_classes, [config], log, fixed_steps)[0]


# One BLAS thread: a head's products are too small to gain from a second one, and in a sweep the export worker
# keeps the other core busy, where two BLAS threads contending with it made the head search over twice as
# slow (tools/bench_sweep.py times the head search).
@threadpool_limits.wrap(limits=1, user_api="blas")
def train_heads(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    configs: list[HeadConfig],
    log=print,
    fixed_steps: int | None = None,
) -> list[Head]:
    """`train_head` for several settings at once, each head exactly (bit for bit) what it would be alone.

    The configs may differ only in PER_HEAD fields, so every head sees the same batches and dropout
    masks; the heads are stacked, and numpy's stacked matmul runs each head's product as the same BLAS
    call it would be alone. What is saved is Python's per-step overhead, which a 5-class head is mostly.
    Each head stops early on its own.
    """
    config = _shared_config(list(configs))
    if len(train_x) == 0:
        raise ValueError("no training features")
    if train_x.shape[1] != (val_x.shape[1] if len(val_x) else train_x.shape[1]):
        raise ValueError("train and validation features differ in size")
    rng = np.random.default_rng(config.seed)
    dim = train_x.shape[1]
    limit = np.sqrt(6.0 / (dim + num_classes))  # Glorot-uniform like Keras' Dense default
    w = rng.uniform(-limit, limit, (1, dim, num_classes)).astype(np.float32)
    stack = _Stack(list(configs), np.repeat(w, len(configs), axis=0), num_classes)
    weight_of = class_weights(train_y, num_classes, config.class_weights)
    # Early stopping falls back to training loss when there is no validation split.
    monitor_x, monitor_y = (val_x, val_y) if len(val_x) else (train_x, train_y)
    total_steps = fixed_steps or config.how_many_training_steps
    heads = [Head(w[0].copy(), stack.b[0, 0].copy()) for _ in configs]
    watches = [{"best_loss": np.inf, "stale": 0} for _ in configs]
    order, cursor = rng.permutation(len(train_x)), 0
    for step in range(1, total_steps + 1):
        if cursor + config.train_batch_size > len(order):
            order, cursor = rng.permutation(len(train_x)), 0
        idx = order[cursor : cursor + config.train_batch_size]
        cursor += config.train_batch_size
        x, y = train_x[idx], train_y[idx]
        if config.dropout:
            keep = 1.0 - config.dropout
            x = x * (rng.random(x.shape) < keep) / keep
        stack.step(step, x, y, weight_of if config.class_weights != "none" else None)
        if step % config.eval_step_interval and step != total_steps:
            continue
        records = _evaluate(step, stack, (train_x, train_y), (monitor_x, monitor_y), weight_of, config)
        live = np.array(
            [
                _watch(step, stack, i, record, heads, watches, fixed_steps, config, log)
                for i, record in enumerate(records)
            ]
        )
        if not live.any():
            break
        if not live.all():
            stack.keep(live)
    if fixed_steps:  # the final weights, not the best seen
        for i, row in enumerate(stack.rows):
            heads[row].weights, heads[row].bias, heads[row].best_step = (
                stack.w[i].copy(),
                stack.b[i, 0].copy(),
                total_steps,
            )
    return heads


def _watch(
    step: int,
    stack: _Stack,
    i: int,
    record: dict,
    heads: list[Head],
    watches: list[dict],
    fixed_steps: int | None,
    config: HeadConfig,
    log,
) -> bool:
    """Record one head's evaluation and keep its best weights; False when it stops early."""
    row = stack.rows[i]
    head, watch = heads[row], watches[row]
    head.history.append(record)
    log(
        f"step {step:5d}: train accuracy {record['train_accuracy']:.1%}, "
        f"cross entropy {record['train_cross_entropy']:.4f}; "
        f"validation accuracy {record['validation_accuracy']:.1%}, "
        f"cross entropy {record['validation_cross_entropy']:.4f}"
    )
    if fixed_steps:
        return True
    if record["validation_cross_entropy"] < watch["best_loss"] - 1e-5:
        watch["best_loss"], watch["stale"] = record["validation_cross_entropy"], 0
        head.weights, head.bias, head.best_step = stack.w[i].copy(), stack.b[i, 0].copy(), step
        return True
    watch["stale"] += 1
    if watch["stale"] >= config.early_stopping_patience:
        log(f"early stopping at step {step}: best validation loss {watch['best_loss']:.4f} at step {head.best_step}")
        return False
    return True


def _evaluate(
    step: int, stack: _Stack, train: tuple, monitor: tuple, weight_of: np.ndarray, config: HeadConfig
) -> list[dict]:
    """One history record per stacked head. Cross-entropy is on the hard labels (what the model is judged
    on), weighted by class when class weights are on, so early stopping watches the loss being optimised."""
    weighted = config.class_weights != "none"
    records = [{"step": step} for _ in stack.rows]
    for name, (x, y) in (("train", train), ("validation", monitor)):
        probs = _softmax(x @ stack.w + stack.b)
        for record, head_probs in zip(records, probs):
            record[f"{name}_accuracy"] = accuracy(head_probs, y)
            record[f"{name}_cross_entropy"] = cross_entropy(head_probs, y, weight_of[y] if weighted else None)
    return records
