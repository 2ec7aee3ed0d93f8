"""Pareto front, budgets and the pick (edgetl.pick.pareto). Fast: no TensorFlow, no files."""

from __future__ import annotations

import math
import random

import pytest
from conftest import make_result

from edgetl.measure.results import ArtifactResult
from edgetl.pick.pareto import Budget, Pick, PickConfig, dominates, knee, pareto_front, pick


def brute_force_front(results: list[ArtifactResult]) -> list[ArtifactResult]:
    """O(n^2) reference written independently of edgetl.pick.pareto.dominates."""
    ok = [r for r in results if r.status == "ok"]

    def dom(a: ArtifactResult, b: ArtifactResult) -> bool:
        ge = a.accuracy >= b.accuracy and a.latency_ms_p50 <= b.latency_ms_p50 and a.size_bytes <= b.size_bytes
        gt = a.accuracy > b.accuracy or a.latency_ms_p50 < b.latency_ms_p50 or a.size_bytes < b.size_bytes
        return ge and gt

    return [r for r in ok if not any(dom(o, r) for o in ok if o is not r)]


def random_results(seed: int, n: int) -> list[ArtifactResult]:
    """Random rows drawn from small value grids so ties (on one axis and whole triples) are common."""
    rng = random.Random(seed)
    accs = [0.6, 0.7, 0.75, 0.8, 0.9]
    lats = [2.0, 5.0, 8.0, 13.0, 40.0]
    sizes = [0.5, 1.0, 2.5, 4.0, 14.0]
    out = []
    for _ in range(n):
        out.append(
            make_result(
                rng.choice(accs),
                rng.choice(lats),
                rng.choice(sizes),
                status="ok" if rng.random() > 0.1 else "error: conversion failed",
            )
        )
    # Guarantee at least one exact duplicate triple.
    d = out[0]
    out.append(make_result(d.accuracy, d.latency_ms_p50, d.size_bytes / 1e6, status="ok"))
    return out


def ids(rows):
    return [id(r) for r in rows]


# ------------------------------------------------------------------------------------- front


@pytest.mark.parametrize("seed", range(12))
def test_front_matches_brute_force(seed):
    results = random_results(seed, n=5 + seed * 4)
    assert ids(pareto_front(results)) == ids(brute_force_front(results))  # same rows, same order


def test_exact_ties_both_stay_and_order_is_stable():
    a = make_result(0.9, 5.0, 2.0, point="a")
    b = make_result(0.7, 3.0, 1.0, point="b")
    c = make_result(0.9, 5.0, 2.0, point="c")  # identical triple to a
    d = make_result(0.6, 6.0, 3.0, point="d")  # dominated by everything
    front = pareto_front([a, b, c, d])
    assert [r.point for r in front] == ["a", "b", "c"]
    assert not dominates(a, c) and not dominates(c, a)
    assert dominates(a, d)


def test_front_tradeoff_on_size_alone_keeps_the_point():
    fast_big = make_result(0.9, 2.0, 10.0, point="fast-big")
    slow_small = make_result(0.9, 4.0, 1.0, point="slow-small")
    slow_big = make_result(0.9, 4.0, 10.0, point="slow-big")  # dominated by both
    assert [r.point for r in pareto_front([fast_big, slow_small, slow_big])] == ["fast-big", "slow-small"]


def test_failed_rows_are_never_on_the_front_nor_picked():
    best_but_failed = make_result(
        0.99, 0.1, 0.1, point="failed", status="accuracy check failed", latency_ms_p90=math.nan
    )
    ok = make_result(0.7, 10.0, 4.0, point="ok")
    assert pareto_front([best_but_failed, ok]) == [ok]
    assert pick([best_but_failed, ok]).chosen is ok
    assert pick([best_but_failed, ok], Budget(max_latency_ms=20)).chosen is ok
    p = pick([best_but_failed, ok], Budget(max_latency_ms=1))
    assert p.chosen is None and p.closest == [ok]
    assert not Budget(max_latency_ms=100).fits(best_but_failed)


def test_all_failed():
    rows = [make_result(status="error"), make_result(status="error")]
    assert pareto_front(rows) == []
    p = pick(rows, Budget(max_latency_ms=10))
    assert p.chosen is None and "failed" in p.reason and p.closest == []


# ------------------------------------------------------------------------------------- pick with budget


BUDGETS = [
    Budget(max_latency_ms=8.0),
    Budget(max_size_mb=2.5),
    Budget(min_accuracy=0.75),
    Budget(max_latency_ms=13.0, max_size_mb=4.0),
    Budget(max_latency_ms=40.0, max_size_mb=14.0, min_accuracy=0.6),
    Budget(max_latency_ms=5.0, max_size_mb=1.0, min_accuracy=0.8),
]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("budget", BUDGETS, ids=lambda b: b.describe())
def test_budgeted_pick_is_best_fitting_and_on_front(seed, budget):
    results = random_results(seed, n=25)
    p = pick(results, budget)
    assert isinstance(p, Pick)
    assert ids(p.front) == ids(brute_force_front(results))
    fitting = [r for r in results if r.status == "ok" and budget.fits(r)]
    if not fitting:
        assert p.chosen is None
        return
    c = p.chosen
    assert c is not None and budget.fits(c) and c.status == "ok"
    assert not any(r.accuracy > c.accuracy for r in fitting)
    # Tie-break: among equally accurate fitting rows, nothing is faster; among those, nothing smaller.
    same_acc = [r for r in fitting if r.accuracy == c.accuracy]
    assert not any(r.latency_ms_p50 < c.latency_ms_p50 for r in same_acc)
    same = [r for r in same_acc if r.latency_ms_p50 == c.latency_ms_p50]
    assert not any(r.size_bytes < c.size_bytes for r in same)
    assert any(c is f for f in p.front)
    assert p.closest == []


def test_budget_limits_are_inclusive_and_tie_break():
    a = make_result(0.8, 10.0, 4.0, point="a")
    b = make_result(0.8, 9.0, 4.0, point="b")  # same accuracy, faster
    c = make_result(0.85, 10.5, 4.0, point="c")  # more accurate, just over the latency limit
    p = pick([a, b, c], Budget(max_latency_ms=10.0, max_size_mb=4.0))
    assert p.chosen is b
    assert "most accurate" in p.reason
    assert Budget(max_latency_ms=10.0, max_size_mb=4.0, min_accuracy=0.8).fits(a)


def test_nothing_fits_gives_closest_three_by_relative_violation():
    budget = Budget(max_latency_ms=10.0, max_size_mb=2.0)
    rows = [
        make_result(0.9, 12.0, 2.0, point="lat20pct"),  # 0.20
        make_result(0.9, 10.0, 2.1, point="size5pct"),  # 0.05
        make_result(0.9, 11.0, 2.2, point="both20pct"),  # 0.10 + 0.10
        make_result(0.9, 30.0, 2.0, point="lat200pct"),  # 2.0
        make_result(0.9, 10.5, 2.0, point="lat5pct-b"),  # 0.05, ties size5pct
        make_result(0.95, 50.0, 9.0, point="far"),  # 4 + 3.5
        make_result(0.99, 1.0, 0.1, point="failed", status="timeout"),
    ]
    p = pick(rows, budget)
    assert p.chosen is None
    assert p.reason.startswith("no artifact fits:")
    assert len(p.closest) == 3
    # size5pct and lat5pct-b both violate by 5%: same accuracy, so the faster one (size5pct) first.
    assert [r.point for r in p.closest] == ["size5pct", "lat5pct-b", "both20pct"]
    assert budget.describe_violation(p.closest[0]) == "size 2.10 MB > 2 MB"
    assert budget.describe_violation(p.closest[2]) == "latency 11 ms > 10 ms; size 2.20 MB > 2 MB"
    assert budget.describe_violation(make_result(0.5, 23.1, 1.0)) == "latency 23.1 ms > 10 ms"
    assert Budget(min_accuracy=0.75).describe_violation(make_result(0.7)) == "accuracy 70.0% < 75%"
    for r in p.closest:
        assert r.point in p.reason
        assert budget.describe_violation(r)
    assert budget.describe_violation(make_result(0.5, 5.0, 1.0)) == ""


def test_size_budget_uses_decimal_megabytes():
    r = make_result(size_mb=4.0)  # 4,000,000 bytes
    assert r.size_bytes == 4_000_000
    assert Budget(max_size_mb=4.0).fits(r)
    assert not Budget(max_size_mb=3.999).fits(r)


# ------------------------------------------------------------------------------------- knee


def test_knee_on_obvious_front():
    # Accuracy climbs steeply up to 5 ms, then barely moves: the knee is the 5 ms point.
    rows = [
        make_result(0.50, 1.0, 1.0, point="fastest"),
        make_result(0.80, 3.0, 1.0, point="steep"),
        make_result(0.90, 5.0, 1.0, point="knee"),
        make_result(0.91, 20.0, 1.0, point="flat"),
        make_result(0.92, 50.0, 1.0, point="most-accurate"),
        make_result(0.60, 60.0, 9.0, point="dominated"),
    ]
    p = pick(rows)
    assert [r.point for r in p.front] == ["fastest", "steep", "knee", "flat", "most-accurate"]
    assert p.chosen.point == "knee"
    assert "knee" in p.reason
    assert pick(rows, Budget()).chosen.point == "knee"  # all-None budget means "no budget"


def test_knee_ignores_size_only_points_below_the_chord():
    rows = [
        make_result(0.50, 1.0, 5.0, point="fastest"),
        make_result(0.88, 4.0, 5.0, point="knee"),
        make_result(0.90, 40.0, 5.0, point="most-accurate"),
        make_result(0.40, 30.0, 0.1, point="tiny"),  # on the 3-D front only for its size
    ]
    assert len(pareto_front(rows)) == 4
    assert pick(rows).chosen.point == "knee"


def test_knee_with_one_or_two_front_points_is_most_accurate():
    a = make_result(0.7, 2.0, 1.0, point="a")
    b = make_result(0.9, 9.0, 1.0, point="b")
    assert pick([a]).chosen is a
    assert pick([a, b]).chosen is b
    assert knee([a, b]) is b


def test_knee_straight_front_falls_back_to_most_accurate():
    rows = [make_result(0.5 + 0.1 * i, 1.0 + i, 1.0, point=f"p{i}") for i in range(4)]
    assert pick(rows).chosen.point == "p3"


@pytest.mark.parametrize("seed", range(6))
def test_knee_is_on_front(seed):
    results = random_results(seed, n=30)
    p = pick(results)
    if p.front:
        assert any(p.chosen is f for f in p.front)


# ------------------------------------------------------------------------------------- bad inputs


def test_empty_results_raise():
    with pytest.raises(ValueError, match="empty"):
        pareto_front([])
    with pytest.raises(ValueError, match="empty"):
        pick([], Budget(max_latency_ms=10))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_latency_ms": -1.0},
        {"max_size_mb": -0.5},
        {"min_accuracy": -0.1},
        {"max_latency_ms": 0},
        {"min_accuracy": 90},  # a percentage, not a fraction
        {"max_size_mb": math.nan},
        {"max_latency_ms": "15"},
    ],
)
def test_bad_budgets_raise(kwargs):
    with pytest.raises(ValueError, match="budget"):
        Budget(**kwargs)


@pytest.mark.parametrize(
    "overrides",
    [
        {"accuracy": math.nan},
        {"accuracy": 91.0},
        {"latency_ms_p50": -1.0},
        {"latency_ms_p50": math.inf},
        {"size_bytes": -5},
    ],
)
def test_bad_ok_rows_raise(overrides):
    bad = make_result(**overrides)
    with pytest.raises(ValueError):
        pareto_front([make_result(), bad])
    with pytest.raises(ValueError):
        pick([bad])


def test_non_results_raise():
    with pytest.raises(ValueError):
        pareto_front([{"accuracy": 0.9}])
    with pytest.raises(ValueError):
        pick([make_result()], budget={"max_latency_ms": 10})


# ---------------------------------------------------------------------------------------------------------
# the statistical pick: ties decided paired, on the same test images


def _with_predictions(accuracy_images: int, n: int = 360, **kw) -> ArtifactResult:
    """A row whose first `accuracy_images` of n test images are right (labels all 0)."""
    predictions = [0] * accuracy_images + [1] * (n - accuracy_images)
    return make_result(accuracy_images / n, predictions=predictions, labels=[0] * n, **kw)


def test_cheaper_artifact_within_a_few_images_is_tied_and_picked():
    float32 = _with_predictions(326, latency=7.66, size_mb=8.92, format="tflite-float32")  # 90.6%
    int8 = _with_predictions(323, latency=4.05, size_mb=2.50, format="tflite-int8")  # 89.7%: 3 images fewer
    chosen = pick([float32, int8], Budget(max_latency_ms=15))
    assert chosen.chosen is int8 and {r.format for r in chosen.tied} == {"tflite-float32", "tflite-int8"}
    assert chosen.reference is float32 and "tied with the most accurate" in chosen.reason
    # today's rule on request: the most accurate within budget
    assert pick([float32, int8], Budget(max_latency_ms=15), PickConfig(rule="most_accurate")).chosen is float32


def test_a_significant_or_too_large_loss_is_not_a_tie():
    best = _with_predictions(330, latency=8.0, size_mb=9.0)
    much_worse = _with_predictions(290, latency=2.0, size_mb=2.0)  # 11 points, p << 0.05
    assert pick([best, much_worse], Budget(max_latency_ms=15)).chosen is best
    # 5 images (1.4 points) is not significant, but more than the 1-point tolerance...
    slightly = _with_predictions(325, latency=2.0, size_mb=2.0)
    assert pick([best, slightly]).chosen is best
    # ...unless the tolerance allows it
    assert pick([best, slightly], None, PickConfig(accuracy_tolerance=2.0)).chosen is slightly


def test_rows_without_predictions_fall_back_to_the_most_accurate_with_a_note():
    a, b = make_result(0.9, 8.0, 9.0), make_result(0.897, 4.0, 2.5)
    chosen = pick([a, b], Budget(max_latency_ms=15))
    assert chosen.chosen is a and "cannot be compared paired" in chosen.reason


def test_start_up_budget():
    fast_start = _with_predictions(326, latency=8.0, load_ms=20.0, first_inference_ms=10.0)
    slow_start = _with_predictions(326, latency=4.0, load_ms=400.0, first_inference_ms=200.0)
    assert pick([fast_start, slow_start]).chosen is slow_start
    assert pick([fast_start, slow_start], Budget(max_init_ms=100)).chosen is fast_start
    assert "start-up 600 ms > 100 ms" in Budget(max_init_ms=100).describe_violation(slow_start)


def test_pick_config_is_validated():
    with pytest.raises(ValueError, match="rule must be one of"):
        PickConfig(rule="fastest")
    with pytest.raises(ValueError, match=r"accuracy_tolerance must be a number in \[0, 100\]"):
        PickConfig(accuracy_tolerance=-1)
