"""edgetl.train.head: the numpy softmax head (repeatability, early stopping, config checks). No TensorFlow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgetl.train.head import HeadConfig, accuracy, cross_entropy, train_head, train_heads


def blobs(
    seed: int, n_train: int = 30, n_val: int = 300, dim: int = 60, classes: int = 3, flip: float = 0.0, sep: float = 0.5
):
    """Gaussian class clusters; `flip` of the training labels are wrong, so long training overfits."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, sep, (classes, dim)).astype(np.float32)

    def draw(n):
        y = np.arange(n) % classes
        return (means[y] + rng.normal(0, 1, (n, dim))).astype(np.float32), y

    (tx, ty), (vx, vy) = draw(n_train), draw(n_val)
    noisy = rng.random(n_train) < flip
    return tx, np.where(noisy, (ty + 1) % classes, ty), vx, vy


def quiet(_message: str) -> None:
    pass


def fit(data, **config):
    tx, ty, vx, vy = data
    return train_head(tx, ty, vx, vy, 3, HeadConfig(**config), log=quiet)


# ---------------------------------------------------------------------------------------------------------
# learning and repeatability


def test_head_learns_separable_classes():
    data = blobs(0, n_train=90, sep=1.0)
    head = fit(data, how_many_training_steps=300, eval_step_interval=50, learning_rate=0.01, train_batch_size=30)
    tx, ty, vx, vy = data
    assert accuracy(head.predict_proba(vx), vy) > 0.95
    probs = head.predict_proba(vx)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert head.weights.dtype == np.float32 and head.weights.shape == (60, 3) and head.bias.shape == (3,)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_seeded_training_is_bit_for_bit_repeatable(dropout):
    data = blobs(1, n_train=50, flip=0.2)
    config = dict(
        how_many_training_steps=400,
        eval_step_interval=20,
        learning_rate=0.01,
        train_batch_size=16,
        dropout=dropout,
        l2=1e-3,
        seed=7,
        early_stopping_patience=1000,
    )
    a, b = fit(data, **config), fit(data, **config)
    assert a.weights.tobytes() == b.weights.tobytes()
    assert a.bias.tobytes() == b.bias.tobytes()
    assert a.history == b.history and a.best_step == b.best_step
    c = fit(data, **{**config, "seed": 8})
    assert c.weights.tobytes() != a.weights.tobytes()


@pytest.mark.parametrize("shared", [dict(dropout=0.0), dict(dropout=0.3, class_weights="balanced")])
def test_heads_trained_together_are_bit_for_bit_the_heads_trained_alone(shared):
    """The tuning search trains its candidates stacked; each must be what it would be alone, including
    heads that stop early at different steps and a fixed-step refit."""
    tx, ty, vx, vy = blobs(3, n_train=60, flip=0.2)
    base = dict(
        how_many_training_steps=600,
        eval_step_interval=20,
        train_batch_size=16,
        early_stopping_patience=3,
        seed=5,
        **shared,
    )
    configs = [
        HeadConfig(**base, learning_rate=lr, l2=l2, label_smoothing=s)
        for lr, l2, s in [(0.001, 0.0, 0.0), (0.03, 1e-3, 0.0), (0.01, 0.0, 0.1), (0.1, 1e-2, 0.2)]
    ]
    for fixed_steps in (None, 70):
        together = train_heads(tx, ty, vx, vy, 3, configs, log=quiet, fixed_steps=fixed_steps)
        alone = [train_head(tx, ty, vx, vy, 3, c, log=quiet, fixed_steps=fixed_steps) for c in configs]
        for a, b in zip(together, alone):
            assert a.weights.tobytes() == b.weights.tobytes() and a.bias.tobytes() == b.bias.tobytes()
            assert a.history == b.history and a.best_step == b.best_step
    assert len({h.best_step for h in together}) == 1 and len({h.best_step for h in alone}) == 1
    stops = {len(h.history) for h in train_heads(tx, ty, vx, vy, 3, configs, log=quiet)}
    assert len(stops) > 1  # the heads did stop at different steps


def test_heads_trained_together_must_share_their_batches():
    tx, ty, vx, vy = blobs(4)
    with pytest.raises(
        ValueError, match="differ only in learning_rate, l2, label_smoothing; these differ: dropout, seed"
    ):
        train_heads(tx, ty, vx, vy, 3, [HeadConfig(), HeadConfig(dropout=0.3, seed=1)], log=quiet)
    with pytest.raises(ValueError, match="at least one"):
        train_heads(tx, ty, vx, vy, 3, [], log=quiet)


def test_log_reports_each_evaluation():
    lines = []
    tx, ty, vx, vy = blobs(2)
    train_head(tx, ty, vx, vy, 3, HeadConfig(how_many_training_steps=100, eval_step_interval=25), log=lines.append)
    steps = [line for line in lines if line.startswith("step")]
    assert len(steps) == 4 and "validation accuracy" in steps[-1]


# ---------------------------------------------------------------------------------------------------------
# early stopping


OVERFIT = dict(learning_rate=0.01, train_batch_size=10, eval_step_interval=10, early_stopping_patience=5)


def test_early_stopping_restores_the_best_validation_weights():
    data = blobs(2, flip=0.4)  # noisy training labels: validation loss falls, then rises
    head = fit(data, how_many_training_steps=5000, **OVERFIT)
    losses = [r["validation_cross_entropy"] for r in head.history]
    steps = [r["step"] for r in head.history]
    best = int(np.argmin(losses))
    # it stopped early, `patience` evaluations after the best, and the best is not the first or the last
    assert steps[-1] < 5000
    assert steps[-1] == head.best_step + OVERFIT["early_stopping_patience"] * OVERFIT["eval_step_interval"]
    assert head.best_step == steps[best] and 0 < best < len(steps) - 1
    assert losses[-1] > losses[best] + 0.01
    # the returned weights are the best ones: their validation loss is the best one recorded ...
    _, _, vx, vy = data
    assert cross_entropy(head.predict_proba(vx), vy) == pytest.approx(losses[best], abs=1e-6)
    # ... bit-for-bit the weights of a run that simply ends at the best step ...
    at_best = fit(data, how_many_training_steps=head.best_step, **{**OVERFIT, "early_stopping_patience": 10**6})
    assert at_best.weights.tobytes() == head.weights.tobytes()
    # ... and not those of the last step trained
    at_stop = fit(
        data,
        how_many_training_steps=steps[-1],
        **{**OVERFIT, "eval_step_interval": steps[-1], "early_stopping_patience": 10**6},
    )
    assert at_stop.best_step == steps[-1]
    assert not np.allclose(at_stop.weights, head.weights)
    assert cross_entropy(at_stop.predict_proba(vx), vy) > losses[best] + 0.01


def test_without_validation_images_training_loss_is_monitored():
    tx, ty, _, _ = blobs(3, n_train=60, sep=1.0)
    empty = np.zeros((0, tx.shape[1]), np.float32)
    head = train_head(
        tx,
        ty,
        empty,
        np.zeros(0, np.int64),
        3,
        HeadConfig(how_many_training_steps=100, eval_step_interval=50),
        log=quiet,
    )
    assert [r["validation_cross_entropy"] for r in head.history] == [r["train_cross_entropy"] for r in head.history]
    assert head.best_step == 100


def test_bad_feature_arrays_are_rejected():
    tx, ty, vx, vy = blobs(4)
    with pytest.raises(ValueError, match="no training"):
        train_head(tx[:0], ty[:0], vx, vy, 3, HeadConfig(), log=quiet)
    with pytest.raises(ValueError, match="differ in size"):
        train_head(tx, ty, vx[:, :10], vy, 3, HeadConfig(), log=quiet)


# ---------------------------------------------------------------------------------------------------------
# HeadConfig


@pytest.mark.parametrize(
    "bad",
    [
        {"how_many_training_steps": 0},
        {"how_many_training_steps": -5},
        {"train_batch_size": 0},
        {"eval_step_interval": 0},
        {"early_stopping_patience": 0},
        {"early_stopping_patience": -1},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"dropout": math.nan},
        {"learning_rate": 0.0},
        {"learning_rate": -0.01},
        {"learning_rate": math.nan},  # would train to NaN weights and silently return the initial ones
        {"learning_rate": math.inf},
        {"l2": -1e-4},  # negative weight decay makes the weights grow without bound
        {"l2": math.nan},
    ],
    ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items()),
)
def test_head_config_rejects_bad_values(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):  # the message names the setting
        HeadConfig(**bad)


def test_head_config_accepts_good_values():
    config = HeadConfig(
        how_many_training_steps=1,
        learning_rate=1e-5,
        train_batch_size=1,
        eval_step_interval=1,
        dropout=0.0,
        l2=0.0,
        early_stopping_patience=1,
        seed=123,
    )
    assert config.seed == 123
    HeadConfig(dropout=0.99, l2=0.5)
