"""edgetl.stats: Wilson intervals, exact McNemar, Newcombe paired interval.

Reference values were computed independently, not with edgetl.stats:
* Wilson: statsmodels 0.15.0 ``proportion_confint(correct, n, alpha=1 - confidence, method="wilson")``.
* McNemar: scipy 1.17.1 ``binomtest(min(b01, b10), b01 + b10, 0.5).pvalue``, which agreed to the last
  bit with statsmodels ``mcnemar([[x, b01], [b10, y]], exact=True).pvalue``; the small ones by hand.
* Newcombe paired interval: the published value for the Cavo et al. (2012) table in Fagerland,
  Lydersen & Laake, *Statistical Analysis of Contingency Tables*, ch. 8 (-0.0621, CI -0.1186 to
  -0.0046).
"""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from edgetl import stats
from edgetl.stats import (
    McNemarResult,
    accuracy_interval,
    mcnemar_exact,
    mcnemar_p_value,
    significantly_worse,
    wilson_interval,
)


def paired_masks(both: int, b01: int, b10: int, neither: int, seed: int = 0):
    """Correctness masks for A and B with exactly this paired table, in a shuffled image order."""
    a = np.array([True] * both + [True] * b01 + [False] * b10 + [False] * neither)
    b = np.array([True] * both + [False] * b01 + [True] * b10 + [False] * neither)
    order = np.random.default_rng(seed).permutation(a.size)
    return a[order], b[order]


# --------------------------------------------------------------------------------------------
# Wilson
# --------------------------------------------------------------------------------------------

# (correct, n, confidence, low, high) from statsmodels proportion_confint(method="wilson")
WILSON_REFERENCE = [
    (81, 263, 0.95, 0.2552885198782742, 0.36620957698280004),
    (0, 10, 0.95, 0.0, 0.2775327998628892),
    (10, 10, 0.95, 0.7224672001371107, 0.9999999999999999),
    (1, 1, 0.95, 0.20654931437723745, 1.0),
    (300, 360, 0.95, 0.7913590381730007, 0.8682689239012036),
    (354, 360, 0.99, 0.9552710053980437, 0.993902145401892),
    (5, 20, 0.90, 0.1273771685203577, 0.4322017501601246),
    (180, 360, 0.95, 0.4486237971218836, 0.5513762028781164),
]


@pytest.mark.parametrize("correct, n, confidence, low, high", WILSON_REFERENCE)
def test_wilson_matches_statsmodels(correct, n, confidence, low, high):
    got_low, got_high = wilson_interval(correct, n, confidence)
    assert got_low == pytest.approx(low, rel=1e-12, abs=1e-15)
    assert got_high == pytest.approx(high, rel=1e-12, abs=1e-15)


def test_wilson_textbook_value():
    # Newcombe (1998) / Wikipedia example: 81 of 263 -> 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_wilson_ends_are_exact_and_inside_unit_interval():
    assert wilson_interval(0, 300)[0] == 0.0
    assert wilson_interval(300, 300)[1] == 1.0
    for n in (1, 2, 7, 50, 263):
        for c in range(n + 1):
            low, high = wilson_interval(c, n)
            assert 0.0 <= low <= c / n <= high <= 1.0


def test_wilson_is_symmetric_and_widens_with_confidence():
    low, high = wilson_interval(30, 200)
    mirror_low, mirror_high = wilson_interval(170, 200)
    assert low == pytest.approx(1 - mirror_high, abs=1e-15)
    assert high == pytest.approx(1 - mirror_low, abs=1e-15)
    widths = [np.subtract(*wilson_interval(30, 200, c)[::-1]) for c in (0.5, 0.8, 0.9, 0.95, 0.99)]
    assert widths == sorted(widths)


def test_wilson_n_zero_is_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_wilson_accepts_numpy_integers():
    assert wilson_interval(np.int64(81), np.int32(263)) == wilson_interval(81, 263)


def test_normal_quantile_matches_scipy():
    # scipy.stats.norm.ppf(0.975), norm.ppf(0.995)
    assert stats._z(0.95) == pytest.approx(1.959963984540054, rel=1e-14)
    assert stats._z(0.99) == pytest.approx(2.5758293035489004, rel=1e-14)


@pytest.mark.parametrize(
    "args, match",
    [
        ((5, 3), r"correct must be between 0 and n=3, got 5"),
        ((-1, 3), r"correct must be a non-negative integer, got -1"),
        ((1, -3), r"n must be a non-negative integer, got -3"),
        ((2.5, 10), r"correct must be a non-negative integer, got 2.5"),
        ((2, 10.0), r"n must be a non-negative integer, got 10.0"),
        ((True, 10), r"correct must be a non-negative integer, got True"),
        ((2, 10, 0.0), r"confidence must be a float in the open interval \(0, 1\), got 0.0"),
        ((2, 10, 1.0), r"confidence must be a float in the open interval \(0, 1\), got 1.0"),
        ((2, 10, 95), r"confidence must be a float in the open interval \(0, 1\), got 95"),
        ((2, 10, float("nan")), r"confidence must be .* got nan"),
        ((2, 10, "0.95"), r"confidence must be .* got '0.95'"),
    ],
)
def test_wilson_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        wilson_interval(*args)


# --------------------------------------------------------------------------------------------
# accuracy_interval
# --------------------------------------------------------------------------------------------


def test_accuracy_interval_from_bool_mask():
    mask = np.array([True] * 81 + [False] * 182)
    acc, low, high = accuracy_interval(mask)
    assert acc == 81 / 263
    assert (low, high) == wilson_interval(81, 263)


@pytest.mark.parametrize(
    "mask",
    [
        [True, False, True, True],
        [1, 0, 1, 1],
        np.array([1, 0, 1, 1], dtype=np.uint8),
        np.array([1.0, 0.0, 1.0, 1.0]),
        (True, False, True, True),
    ],
)
def test_accuracy_interval_accepts_bool_and_0_1(mask):
    assert accuracy_interval(mask) == (0.75, *wilson_interval(3, 4))


def test_accuracy_interval_confidence_is_passed_on():
    mask = [True] * 354 + [False] * 6
    assert accuracy_interval(mask, confidence=0.99)[1:] == wilson_interval(354, 360, 0.99)


def test_accuracy_interval_empty_is_nan():
    assert all(math.isnan(x) for x in accuracy_interval([]))


@pytest.mark.parametrize(
    "mask, match",
    [
        ([0, 1, 2], r"correct_mask must contain only booleans or 0/1; got 2 at index 2"),
        ([0.0, 0.7, 1.0], r"got 0.7 at index 1 \(1 invalid value\(s\) in total\)"),
        ([1.0, float("nan")], r"got nan at index 1"),
        ([-1, 0, 1, 3], r"got -1 at index 0 \(2 invalid value\(s\) in total\)"),
        (["yes", "no"], r"correct_mask must be a 1-D array-like of booleans \(or 0/1\), got dtype"),
        ([True, None], r"correct_mask must be a 1-D array-like of booleans \(or 0/1\), got dtype"),
        ([[True, False], [True, True]], r"one per image; got an array of shape \(2, 2\)"),
        (True, r"got an array of shape \(\)"),
    ],
)
def test_accuracy_interval_bad_masks(mask, match):
    with pytest.raises(ValueError, match=match):
        accuracy_interval(mask)


# --------------------------------------------------------------------------------------------
# McNemar p-value
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "b01, b10, p",
    [
        (0, 5, 0.0625),  # 2 * (1/2)**5, by hand
        (1, 9, 0.021484375),  # 2 * (1 + 10) / 2**10, by hand
        (3, 0, 0.25),  # 2 / 2**3
        (0, 1, 1.0),  # 2 * 1/2, capped
        (4, 4, 1.0),
        (30, 0, 1.862645149230957e-09),  # 2 / 2**30
        (10, 7, 0.629058837890625),
        (6, 16, 0.052478790283203125),
        (12, 25, 0.04703102743951604),
        (100, 130, 0.05561357778139238),
    ],
)
def test_mcnemar_p_value_matches_scipy_binomtest(b01, b10, p):
    assert mcnemar_p_value(b01, b10) == pytest.approx(p, rel=1e-13)
    assert mcnemar_p_value(b10, b01) == mcnemar_p_value(b01, b10)


def test_mcnemar_p_value_no_discordant_pairs_is_one():
    assert mcnemar_p_value(0, 0) == 1.0


def test_mcnemar_p_value_is_exact_for_small_tables():
    # every table with up to 12 discordant pairs, against the exact rational value
    from fractions import Fraction

    for m in range(1, 13):
        for k in range(m + 1):
            tail = Fraction(sum(math.comb(m, i) for i in range(min(k, m - k) + 1)), 2**m)
            assert mcnemar_p_value(k, m - k) == float(min(Fraction(1), 2 * tail))


def test_mcnemar_p_value_bad_counts():
    with pytest.raises(ValueError, match=r"b10 must be a non-negative integer, got -2"):
        mcnemar_p_value(3, -2)


# --------------------------------------------------------------------------------------------
# mcnemar_exact
# --------------------------------------------------------------------------------------------


def test_mcnemar_exact_counts_the_paired_table():
    a = [True, True, True, False, False, True, False]
    b = [True, False, True, True, False, False, False]
    r = mcnemar_exact(a, b)
    assert (r.n, r.both_correct, r.b01, r.b10, r.both_wrong) == (7, 2, 2, 1, 2)
    assert r.discordant == 3
    assert r.accuracy_a == 4 / 7 and r.accuracy_b == 3 / 7
    assert r.diff_points == pytest.approx(100 / 7)
    assert r.p_value == 1.0


@pytest.mark.parametrize("b01, b10, p", [(0, 5, 0.0625), (1, 9, 0.021484375)])
def test_mcnemar_exact_hand_computed_p(b01, b10, p):
    a, b = paired_masks(40, b01, b10, 15)
    r = mcnemar_exact(a, b)
    assert (r.b01, r.b10) == (b01, b10)
    assert r.p_value == p


def test_mcnemar_exact_newcombe_interval_matches_published_value():
    # Cavo et al. (2012) paired table [[59, 6], [16, 80]] (Fagerland et al., ch. 8):
    # estimate -0.0621, 95% CI -0.1186 to -0.0046
    a, b = paired_masks(59, 6, 16, 80)
    r = mcnemar_exact(a, b)
    assert round(r.diff_points, 2) == -6.21
    assert round(r.diff_low_points, 2) == -11.86
    assert round(r.diff_high_points, 2) == -0.46
    assert r.p_value == pytest.approx(0.052478790283203125, rel=1e-13)


def test_mcnemar_exact_swap_keeps_p_and_negates_difference():
    a, b = paired_masks(250, 17, 9, 84, seed=3)
    ab, ba = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert (ba.b01, ba.b10) == (ab.b10, ab.b01)
    assert ba.p_value == ab.p_value
    assert ba.diff_points == -ab.diff_points
    assert (ba.diff_low_points, ba.diff_high_points) == (-ab.diff_high_points, -ab.diff_low_points)
    assert (ba.accuracy_a, ba.accuracy_b) == (ab.accuracy_b, ab.accuracy_a)


def test_mcnemar_exact_no_discordant_pairs():
    a = np.array([True] * 300 + [False] * 60)
    r = mcnemar_exact(a, a.copy())
    assert (r.b01, r.b10, r.p_value, r.diff_points) == (0, 0, 1.0, 0.0)
    assert r.diff_low_points < 0.0 < r.diff_high_points


@pytest.mark.parametrize(
    "table",
    [(300, 0, 0, 0), (0, 0, 0, 300), (0, 300, 0, 0), (200, 0, 100, 0), (1, 0, 0, 0), (5, 3, 0, 0)],
)
def test_mcnemar_exact_interval_at_the_edges(table):
    # all right, all wrong, one classifier constant: the interval stays finite, inside [-100, 100]
    # and contains the estimate
    r = mcnemar_exact(*paired_masks(*table))
    assert -100.0 <= r.diff_low_points <= r.diff_points <= r.diff_high_points <= 100.0
    assert all(math.isfinite(x) for x in (r.diff_low_points, r.diff_high_points))


def test_mcnemar_exact_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(7)
    for _ in range(200):
        table = tuple(int(x) for x in rng.integers(0, 40, size=4))
        if sum(table) == 0:
            continue
        r = mcnemar_exact(*paired_masks(*table))
        assert r.diff_low_points <= r.diff_points <= r.diff_high_points
    small = mcnemar_exact(*paired_masks(80, 6, 4, 10))
    big = mcnemar_exact(*paired_masks(800, 60, 40, 100))
    assert (big.diff_high_points - big.diff_low_points) < (small.diff_high_points - small.diff_low_points)


def test_mcnemar_exact_confidence_widens_interval():
    a, b = paired_masks(250, 17, 9, 84)
    r90, r95, r99 = (mcnemar_exact(a, b, confidence=c) for c in (0.90, 0.95, 0.99))
    assert r99.diff_low_points < r95.diff_low_points < r90.diff_low_points
    assert r90.diff_high_points < r95.diff_high_points < r99.diff_high_points
    assert r95.confidence == 0.95 and r90.p_value == r99.p_value


def test_mcnemar_result_is_frozen_and_json_ready():
    r = mcnemar_exact(*paired_masks(59, 6, 16, 80))
    assert isinstance(r, McNemarResult)
    with pytest.raises(FrozenInstanceError):
        r.p_value = 0.0
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["b01"] == 6 and d["b10"] == 16 and d["n"] == 161
    assert "McNemar" in d["test"] and "Newcombe" in d["ci_method"]
    assert all(type(v) in (int, float, str) for v in d.values())


@pytest.mark.parametrize(
    "a, b, match",
    [
        (
            [True, False, True],
            [True, False],
            r"a_correct and b_correct must have the same length .* got 3 and 2",
        ),
        ([], [], r"a_correct and b_correct are empty: need at least one test image"),
        ([True, 2], [True, False], r"a_correct must contain only booleans or 0/1; got 2 at index 1"),
        ([True, False], [0.5, 1], r"b_correct must contain only booleans or 0/1; got 0.5 at index 0"),
        ([[True]], [[True]], r"a_correct must be a 1-D array-like"),
    ],
)
def test_mcnemar_exact_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        mcnemar_exact(a, b)


def test_mcnemar_exact_bad_confidence():
    with pytest.raises(ValueError, match=r"confidence must be a float in the open interval \(0, 1\)"):
        mcnemar_exact([True, False], [True, True], confidence=1.5)


# --------------------------------------------------------------------------------------------
# significantly_worse on simulated 360-image test splits
# --------------------------------------------------------------------------------------------

N_IMAGES = 360


def test_three_images_of_360_is_not_significant():
    # the int8 artifact loses 3 images net out of 360 (0.83 points): noise
    for b01, b10 in [(0, 3), (5, 8), (12, 15)]:
        both = 300 - b01  # reference right on 300
        cand, ref = paired_masks(both, b01, b10, N_IMAGES - both - b01 - b10, seed=b10)
        r = mcnemar_exact(cand, ref)
        assert r.diff_points == pytest.approx(-100 * 3 / N_IMAGES)
        assert r.p_value > 0.05
        assert r.diff_low_points < 0.0 < r.diff_high_points
        assert not significantly_worse(cand, ref)


def test_thirty_images_of_360_all_one_sided_is_significant():
    # the candidate is wrong on 30 images the reference gets right, and never the other way round
    cand, ref = paired_masks(270, 0, 30, 60, seed=1)
    assert cand.size == N_IMAGES
    r = mcnemar_exact(cand, ref)
    assert r.p_value == pytest.approx(2 / 2**30, rel=1e-13)
    assert r.diff_high_points < 0.0
    assert significantly_worse(cand, ref)
    assert significantly_worse(cand, ref, alpha=1e-8)
    assert not significantly_worse(cand, ref, alpha=1e-9)


def test_significantly_worse_is_one_sided():
    # a significantly *better* candidate is not "worse"
    cand, ref = paired_masks(270, 30, 0, 60)
    assert mcnemar_exact(cand, ref).p_value < 0.05
    assert not significantly_worse(cand, ref)
    assert significantly_worse(ref, cand)


def test_significantly_worse_needs_p_strictly_below_alpha():
    cand, ref = paired_masks(300, 0, 5, 55)  # p = 0.0625 exactly
    assert not significantly_worse(cand, ref, alpha=0.0625)
    assert significantly_worse(cand, ref, alpha=0.0626)


@pytest.mark.parametrize("alpha", [0, 1, -0.05, 5, float("nan")])
def test_significantly_worse_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a float in the open interval \(0, 1\)"):
        significantly_worse([True, False], [True, True], alpha=alpha)


def test_module_is_import_light():
    import subprocess
    import sys

    code = (
        "import sys, edgetl.stats; "
        "heavy = [m for m in ('tensorflow', 'scipy', 'onnxruntime', 'keras') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
