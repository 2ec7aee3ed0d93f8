"""The classification head: one softmax layer trained on cached bottleneck features.

Trained in numpy (mini-batch Adam, optional dropout on the features, label smoothing, class weights,
early stopping on validation cross-entropy), because a single dense layer needs no framework and numpy
makes it bit-for-bit repeatable for a given seed. The learned weights are then placed into a Keras
Dense layer for export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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

    def __post_init__(self) -> None:
        for name in ("how_many_training_steps", "train_batch_size", "eval_step_interval", "early_stopping_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        # `not x > 0` also catches NaN, which would otherwise train to NaN weights without a word.
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise ValueError(f"l2 must be a number >= 0, got {self.l2}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weights!r}")


@dataclass
class Head:
    weights: np.ndarray  # (D, C) float32
    bias: np.ndarray  # (C,) float32
    history: list[dict] = field(default_factory=list)  # one dict per evaluation
    best_step: int = 0

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return _softmax(features @ self.weights + self.bias)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


class _Adam:
    """Adam on (kernel, bias), written out so the update order, and so the result, is fixed for a seed."""

    def __init__(self, w: np.ndarray, b: np.ndarray, learning_rate: float) -> None:
        self.params, self.learning_rate = (w, b), learning_rate
        self.moments = [(np.zeros_like(w), np.zeros_like(w)), (np.zeros_like(b), np.zeros_like(b))]

    def step(self, step: int, grads: tuple[np.ndarray, np.ndarray]) -> None:
        beta1, beta2, eps = 0.9, 0.999, 1e-7
        for param, grad, (m, v) in zip(self.params, grads, self.moments):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            param -= (self.learning_rate * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)


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
    if len(train_x) == 0:
        raise ValueError("no training features")
    if train_x.shape[1] != (val_x.shape[1] if len(val_x) else train_x.shape[1]):
        raise ValueError("train and validation features differ in size")
    rng = np.random.default_rng(config.seed)
    dim = train_x.shape[1]
    # Glorot-uniform like Keras' Dense default.
    limit = np.sqrt(6.0 / (dim + num_classes))
    w = rng.uniform(-limit, limit, (dim, num_classes)).astype(np.float32)
    b = np.zeros(num_classes, np.float32)
    adam = _Adam(w, b, config.learning_rate)
    weight_of = class_weights(train_y, num_classes, config.class_weights)
    smooth = config.label_smoothing
    # Early stopping falls back to training loss when there is no validation split.
    monitor_x, monitor_y = (val_x, val_y) if len(val_x) else (train_x, train_y)
    total_steps = fixed_steps or config.how_many_training_steps

    head = Head(w.copy(), b.copy())
    best_loss, stale = np.inf, 0
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
        delta = _softmax(x @ w + b)  # d(loss)/d(logits) = probs - target
        if smooth:
            delta -= smooth / num_classes
        delta[np.arange(len(y)), y] -= 1.0 - smooth
        if config.class_weights != "none":
            delta *= weight_of[y][:, None]
        adam.step(step, (x.T @ delta / len(y) + config.l2 * w, delta.mean(axis=0)))

        if step % config.eval_step_interval and step != total_steps:
            continue
        record = _evaluate(step, w, b, (train_x, train_y), (monitor_x, monitor_y), weight_of, config)
        head.history.append(record)
        log(
            f"step {step:5d}: train accuracy {record['train_accuracy']:.1%}, "
            f"cross entropy {record['train_cross_entropy']:.4f}; "
            f"validation accuracy {record['validation_accuracy']:.1%}, "
            f"cross entropy {record['validation_cross_entropy']:.4f}"
        )
        if fixed_steps:
            continue
        if record["validation_cross_entropy"] < best_loss - 1e-5:
            best_loss, stale = record["validation_cross_entropy"], 0
            head.weights, head.bias, head.best_step = w.copy(), b.copy(), step
        else:
            stale += 1
            if stale >= config.early_stopping_patience:
                log(f"early stopping at step {step}: best validation loss {best_loss:.4f} at step {head.best_step}")
                break
    if fixed_steps:
        head.weights, head.bias, head.best_step = w.copy(), b.copy(), total_steps
    return head


def _evaluate(step: int, w, b, train: tuple, monitor: tuple, weight_of: np.ndarray, config: HeadConfig) -> dict:
    """One history record. Cross-entropy is on the hard labels (what the model is judged on), weighted
    by class when class weights are on, so early stopping watches the loss being optimised."""
    weighted = config.class_weights != "none"
    record = {"step": step}
    for name, (x, y) in (("train", train), ("validation", monitor)):
        probs = _softmax(x @ w + b)
        record[f"{name}_accuracy"] = accuracy(probs, y)
        record[f"{name}_cross_entropy"] = cross_entropy(probs, y, weight_of[y] if weighted else None)
    return record
