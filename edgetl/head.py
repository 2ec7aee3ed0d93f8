"""The classification head: one softmax layer trained on cached bottleneck features.

Trained in numpy (mini-batch Adam, optional dropout on the features, early stopping on validation
cross-entropy), because a single dense layer needs no framework and numpy makes it bit-for-bit
repeatable for a given seed. The learned weights are then placed into a Keras Dense layer for export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HeadConfig:
    how_many_training_steps: int = 4000  # upper bound; early stopping usually ends sooner
    learning_rate: float = 0.001
    train_batch_size: int = 100
    eval_step_interval: int = 50
    dropout: float = 0.0
    l2: float = 0.0  # weight decay on the dense kernel
    early_stopping_patience: int = 10  # evaluations without a better validation loss
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("how_many_training_steps", "train_batch_size", "eval_step_interval", "early_stopping_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        # `not x > 0` also catches NaN, which would otherwise train to NaN weights without a word.
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate}")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise ValueError(f"l2 must be a number >= 0, got {self.l2}")


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


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12)))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else float("nan")


def train_head(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    config: HeadConfig = HeadConfig(),
    log=print,
) -> Head:
    """Fit the softmax layer; returns the weights with the best validation loss seen.

    One loop with Adam written inline (over 60 lines): the update order is what makes training
    bit-for-bit repeatable for a seed, and it reads best in one place.
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
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    beta1, beta2, eps = 0.9, 0.999, 1e-7
    # Early stopping falls back to training loss when there is no validation split.
    monitor_x, monitor_y = (val_x, val_y) if len(val_x) else (train_x, train_y)

    head = Head(w.copy(), b.copy())
    best_loss, stale = np.inf, 0
    order = rng.permutation(len(train_x))
    cursor = 0
    for step in range(1, config.how_many_training_steps + 1):
        if cursor + config.train_batch_size > len(order):
            order, cursor = rng.permutation(len(train_x)), 0
        idx = order[cursor : cursor + config.train_batch_size]
        cursor += config.train_batch_size
        x, y = train_x[idx], train_y[idx]
        if config.dropout:
            keep = 1.0 - config.dropout
            x = x * (rng.random(x.shape) < keep) / keep
        probs = _softmax(x @ w + b)
        probs[np.arange(len(y)), y] -= 1.0
        grad_w = x.T @ probs / len(y) + config.l2 * w
        grad_b = probs.mean(axis=0)
        for param, grad, m, v in ((w, grad_w, moments[0], moments[1]), (b, grad_b, moments[2], moments[3])):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            param -= (config.learning_rate * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)

        if step % config.eval_step_interval == 0 or step == config.how_many_training_steps:
            train_probs = _softmax(train_x @ w + b)
            val_probs = _softmax(monitor_x @ w + b)
            record = {
                "step": step,
                "train_accuracy": accuracy(train_probs, train_y),
                "train_cross_entropy": cross_entropy(train_probs, train_y),
                "validation_accuracy": accuracy(val_probs, monitor_y),
                "validation_cross_entropy": cross_entropy(val_probs, monitor_y),
            }
            head.history.append(record)
            log(
                f"step {step:5d}: train accuracy {record['train_accuracy']:.1%}, "
                f"cross entropy {record['train_cross_entropy']:.4f}; "
                f"validation accuracy {record['validation_accuracy']:.1%}, "
                f"cross entropy {record['validation_cross_entropy']:.4f}"
            )
            if record["validation_cross_entropy"] < best_loss - 1e-5:
                best_loss, stale = record["validation_cross_entropy"], 0
                head.weights, head.bias, head.best_step = w.copy(), b.copy(), step
            else:
                stale += 1
                if stale >= config.early_stopping_patience:
                    log(f"early stopping at step {step}: best validation loss {best_loss:.4f} at step {head.best_step}")
                    break
    return head
