"""Head settings chosen on validation, the refit, class weights, label smoothing, augmented views. No TensorFlow."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_head import blobs, quiet

from edgetl.data.augment import augment, augmented_image, view_seed
from edgetl.features.bottlenecks import view_key
from edgetl.train.head import HeadConfig, accuracy, class_weights, train_head
from edgetl.train.tuning import SEARCHED, TuneConfig, choose, fit_head

FAST = HeadConfig(how_many_training_steps=300, eval_step_interval=10, train_batch_size=16, early_stopping_patience=5)


def test_candidates_put_the_given_settings_first_and_cover_the_grid():
    tune = TuneConfig(learning_rate=(0.01, 0.003), l2=(0.0, 1e-3), dropout=(0.0,), label_smoothing=(0.0, 0.1))
    base = HeadConfig(learning_rate=0.001)  # not in the grid: added, so the floor is always tried
    candidates = tune.candidates(base)
    assert candidates[0] == base
    assert len(candidates) == 3 * 2 * 1 * 2 and len(set(candidates)) == len(candidates)
    assert {c.learning_rate for c in candidates} == {0.001, 0.01, 0.003}


def test_fixing_a_setting_holds_it_and_no_search_tries_only_the_given():
    base = HeadConfig(l2=0.05)
    fixed = TuneConfig().fixing(l2=0.05).candidates(base)
    assert {c.l2 for c in fixed} == {0.05} and len(fixed) == len(TuneConfig().candidates(HeadConfig())) // 3
    assert TuneConfig(search=False).candidates(base) == [base]


@pytest.mark.parametrize(
    "bad", [dict(l2=()), dict(dropout=(1.5,)), dict(learning_rate=(0.0,)), dict(label_smoothing=(-0.1,))]
)
def test_tune_config_rejects_what_head_config_rejects(bad):
    with pytest.raises(ValueError):
        TuneConfig(**bad)


def test_choose_takes_the_lowest_loss_among_rows_at_least_as_accurate_as_the_given():
    table = [
        {"validation_accuracy": 0.80, "validation_cross_entropy": 0.50},  # the given settings
        {"validation_accuracy": 0.79, "validation_cross_entropy": 0.30},  # lower loss but less accurate
        {"validation_accuracy": 0.80, "validation_cross_entropy": 0.45},
        {"validation_accuracy": 0.85, "validation_cross_entropy": 0.48},
    ]
    assert choose(table) == 2
    assert choose(table[:2]) == 0


def test_fit_head_is_never_worse_on_validation_than_the_given_settings():
    tx, ty, vx, vy = blobs(4, n_train=60, flip=0.3)
    for seed in range(3):
        base = HeadConfig(
            how_many_training_steps=300,
            eval_step_interval=10,
            train_batch_size=16,
            early_stopping_patience=5,
            seed=seed,
        )
        fit = fit_head((tx, ty), (vx, vy), 3, base, TuneConfig(refit=False), log=quiet)
        given = train_head(tx, ty, vx, vy, 3, base, log=quiet)
        assert accuracy(fit.selected.predict_proba(vx), vy) >= accuracy(given.predict_proba(vx), vy)
        assert fit.table[0]["validation_accuracy"] == accuracy(given.predict_proba(vx), vy)
        assert len(fit.table) == len(TuneConfig().candidates(base))
        assert set(SEARCHED) <= set(fit.table[0])


def test_refit_trains_on_validation_too_for_the_same_number_of_epochs():
    tx, ty, vx, vy = blobs(5, n_train=60, n_val=30)
    fit = fit_head((tx, ty), (vx, vy), 3, FAST, TuneConfig(search=False), log=quiet)
    assert fit.refit_steps == math.ceil(fit.selected.best_step * 90 / 60)
    assert fit.head is not fit.selected and fit.head.best_step == fit.refit_steps
    assert not np.array_equal(fit.head.weights, fit.selected.weights)
    same = fit_head((tx, ty), (vx, vy), 3, FAST, TuneConfig(search=False), log=quiet)
    assert same.head.weights.tobytes() == fit.head.weights.tobytes()  # the refit is seeded too
    kept = fit_head((tx, ty), (vx, vy), 3, FAST, TuneConfig(search=False, refit=False), log=quiet)
    assert kept.head is kept.selected and kept.refit_steps is None


def test_without_validation_there_is_no_search_and_no_refit():
    tx, ty, vx, vy = blobs(6, n_train=60)
    fit = fit_head((tx, ty), (vx[:0], vy[:0]), 3, FAST, TuneConfig(), log=quiet)
    assert fit.chosen == FAST and fit.refit_steps is None and len(fit.table) == 1


def test_augmented_views_join_training_only():
    tx, ty, vx, vy = blobs(7, n_train=30)
    lines = []
    fit = fit_head((tx, ty), (vx, vy), 3, FAST, TuneConfig(search=False), log=lines.append, extra_train=(tx + 0.1, ty))
    assert fit.refit_steps == math.ceil(fit.selected.best_step * (60 + 300) / 60)


# ---------------------------------------------------------------------------------------------------------
# class weights and label smoothing


def test_balanced_class_weights_follow_n_over_classes_times_count():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    np.testing.assert_allclose(class_weights(labels, 4, "balanced"), [10 / 24, 10 / 12, 10 / 4, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(class_weights(labels, 3, "none"), [1, 1, 1])


def test_balanced_class_weights_raise_recall_of_a_rare_class():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [1.2, 1.2]], np.float32)

    def draw(counts):
        y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
        return (means[y] + rng.normal(0, 1, (len(y), 2))).astype(np.float32), y

    (tx, ty), (vx, vy) = draw([400, 40]), draw([500, 500])
    config = dict(
        how_many_training_steps=800,
        eval_step_interval=50,
        learning_rate=0.01,
        train_batch_size=50,
        early_stopping_patience=1000,
    )
    plain = train_head(tx, ty, vx, vy, 2, HeadConfig(**config), log=quiet)
    balanced = train_head(tx, ty, vx, vy, 2, HeadConfig(**config, class_weights="balanced"), log=quiet)
    recall = lambda head: float((head.predict_proba(vx[vy == 1]).argmax(1) == 1).mean())  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.2


def test_label_smoothing_makes_the_head_less_sure():
    tx, ty, vx, vy = blobs(8, n_train=90, sep=1.5)
    config = dict(
        how_many_training_steps=400,
        eval_step_interval=50,
        learning_rate=0.01,
        train_batch_size=30,
        early_stopping_patience=1000,
    )
    sharp = train_head(tx, ty, vx, vy, 3, HeadConfig(**config), log=quiet).predict_proba(vx).max(1).mean()
    smooth = train_head(tx, ty, vx, vy, 3, HeadConfig(**config, label_smoothing=0.2), log=quiet)
    assert smooth.predict_proba(vx).max(1).mean() < sharp - 0.02


@pytest.mark.parametrize("bad", [dict(label_smoothing=1.0), dict(class_weights="auto")])
def test_head_config_rejects_bad_new_settings(bad):
    with pytest.raises(ValueError, match="label_smoothing|class_weights"):
        HeadConfig(**bad)


# ---------------------------------------------------------------------------------------------------------
# augmented views


def test_a_view_is_the_same_pixels_every_time_and_views_differ(tmp_path):
    from conftest import synthetic_images
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_images(2, size=120, height=90, seed=3)[1]).save(path)
    one = augmented_image(path, "abc", 64, 1)
    assert one.shape == (64, 64, 3) and one.dtype == np.uint8
    assert np.array_equal(one, augmented_image(path, "abc", 64, 1))
    assert not np.array_equal(one, augmented_image(path, "abc", 64, 2))
    assert not np.array_equal(one, augmented_image(path, "abd", 64, 1))  # another image, another draw
    assert view_seed("abc", 1) != view_seed("abc", 2)


def test_rotation_never_brings_in_blank_corners():
    from PIL import Image

    white = Image.new("RGB", (200, 150), (255, 255, 255))
    for seed in range(20):
        view = augment(white, 48, np.random.default_rng(seed)).astype(int)
        assert view.min() >= 255 * 0.8 - 1 - 1  # only the brightness/contrast jitter, no black fill


def test_each_view_has_its_own_cache_key():
    assert view_key("k", 0) == "k"
    assert len({view_key("k", v) for v in range(4)}) == 4
