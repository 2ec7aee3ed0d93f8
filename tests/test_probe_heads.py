"""tools/probe_heads.py: the folds every image is tested in once, and the standardized head on toy features."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "probe_heads.py"
SPEC = importlib.util.spec_from_file_location("probe_heads", SCRIPT)
probe_heads = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe_heads)


def test_folds_spread_each_class_evenly_and_test_every_image_once():
    labels = np.repeat([0, 1, 2], [10, 7, 3])
    fold = probe_heads.stratified_folds(labels, 5)
    assert fold.shape == labels.shape and set(fold) <= set(range(5))
    for c in range(3):
        counts = np.bincount(fold[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1  # as even as the class size allows
    assert np.array_equal(fold, probe_heads.stratified_folds(labels, 5))  # seeded


def test_both_softmax_heads_learn_separable_features():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    features = (rng.normal(size=(120, 8)) + 3.0 * labels[:, None] * np.eye(8)[0] + 50.0).astype(np.float32)
    train, val, test = np.arange(0, 120, 3), np.arange(1, 120, 3), np.arange(2, 120, 3)
    for standardize in (False, True):
        predicted = probe_heads.softmax_head(standardize)(
            (features[train], labels[train]), (features[val], labels[val]), features[test], 2
        )
        assert (predicted == labels[test]).mean() >= 0.9
