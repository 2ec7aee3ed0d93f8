"""Every config's declared constraints (edgetl.params): each refuses the invalid values generated from its own
table, with a message naming the field and the valid range; the defaults are valid. Fast, no TensorFlow."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from edgetl.data.augment import Distortions
from edgetl.data.dataset import SplitConfig
from edgetl.export.config import ExportConfig
from edgetl.features.backbones import BackboneSpec
from edgetl.features.bottlenecks import FeatureConfig
from edgetl.measure.bench import BenchConfig
from edgetl.params import Interval, OneOf
from edgetl.pick.budget import Budget
from edgetl.pick.pareto import PickConfig
from edgetl.sweep.config import SweepConfig
from edgetl.sweep.ray_tasks import ClusterConfig
from edgetl.train.finetune import FineTuneConfig
from edgetl.train.head import HeadConfig
from edgetl.train.run import TrainConfig

DEFAULTS = {
    HeadConfig: HeadConfig(),
    FineTuneConfig: FineTuneConfig(),
    FeatureConfig: FeatureConfig(),
    BenchConfig: BenchConfig(),
    PickConfig: PickConfig(),
    Budget: Budget(),
    ExportConfig: ExportConfig(),
    SplitConfig: SplitConfig(),
    ClusterConfig: ClusterConfig(),
    SweepConfig: SweepConfig(image_dir="photos", output_dir="out", points=(BackboneSpec("v1", 0.25, 96),)),
    TrainConfig: TrainConfig(image_dir="photos", output_dir="out", backbone=BackboneSpec("v1", 0.25, 96)),
    Distortions: Distortions(),
}
CASES = [
    (cls, name, value)
    for cls in DEFAULTS
    for name, constraint in cls.CONSTRAINTS.items()
    for value in constraint.invalid_examples()
]


def test_every_constraint_names_a_field_and_invalid_values_exist():
    for cls in DEFAULTS:
        names = {f.name for f in fields(cls)}
        assert set(cls.CONSTRAINTS) <= names, cls
        for constraint in cls.CONSTRAINTS.values():
            assert constraint.invalid_examples(), (cls, constraint)


@pytest.mark.parametrize(("cls", "name", "value"), CASES, ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in CASES])
def test_invalid_values_are_refused_with_the_valid_range(cls, name, value):
    with pytest.raises(ValueError) as raised:
        replace(DEFAULTS[cls], **{name: value})
    message = str(raised.value)
    assert name in message and repr(value) in message
    assert cls.CONSTRAINTS[name].describe() in message or "did you mean" in message


def test_the_issue_case_a_fractional_batch_size():
    with pytest.raises(ValueError, match=r"train_batch_size must be a whole number >= 1, got 2\.5"):
        HeadConfig(train_batch_size=2.5)


def test_descriptions():
    assert Interval(int, 1).describe() == "a whole number >= 1"
    assert Interval(float, 0, 1, "left").describe() == "a number in [0, 1)"
    assert Interval(float, 0, None, "neither", none_ok=True).describe() == "a number > 0 or None"
    assert OneOf(("a", "b")).describe() == "one of 'a', 'b'"
    assert Interval(float, 0, 1).accepts(1) and not Interval(float, 0, 1).accepts(float("inf"))
    assert not Interval(int, 0).accepts(True) and not Interval(int, 0).accepts(2.0)
