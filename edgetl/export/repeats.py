"""Calibration sensitivity (`ExportConfig.calibration_repeats`, `--calibration_repeats K`): is an int8 file good
only by a lucky draw of calibration images?

Each calibrated format is converted again on K - 1 further calibration sets, disjoint from the first and from
each other (the next images of each class in the same content-hash order, `edgetl.export.calibration`), each
bias-corrected on its own images when bias correction is on, and checked like the artifact itself: its test
accuracy, its check status, and its per-class accuracy on the fidelity images (which then leave every set's
images out). The artifact kept is the first set's; the others are deleted after their check. export.json
records the spread (`calibration_repeats`). tflite-int8-mixed is not repeated: its search for the layers to
keep in float would be repeated with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetl.export.calibration import manifest_sha256
from edgetl.export.formats import FORMATS, ExportError
from edgetl.export.tflite_mixed import FORMAT as MIXED


def repeated(fmt: str) -> bool:
    """Whether `--calibration_repeats` converts `fmt` again on the other calibration sets."""
    return FORMATS[fmt].needs_calibration and fmt != MIXED


def disjoint_sets(first, k: int, draw: Callable, log: Callable[[str], None]) -> list:
    """`first` and up to k - 1 more calibration sets, each `draw(hashes to leave out)`; fewer when the training
    split runs out (noted)."""
    sets, used = [first], {e["sha256"] for e in first.manifest["images"]}
    for _ in range(1, k):
        try:
            more = draw(frozenset(used))
        except ExportError:  # no training image left
            log(f"note: calibration repeats: the training split holds {len(sets)} disjoint set(s), not {k}")
            break
        sets.append(more)
        used |= {e["sha256"] for e in more.manifest["images"]}
    return sets


def spread(values) -> dict:
    """min, max, mean, sample sd and the values themselves (in set order)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return {}
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0

    def r(x: float) -> float:
        return round(float(x), 6)  # 1e-16 of float noise in an sd of equal values says nothing

    return {"min": r(v.min()), "max": r(v.max()), "mean": r(v.mean()), "sd": r(sd), "values": [r(x) for x in v]}


def summary(checks: list[dict], sets: list) -> dict:
    """export.json's `calibration_repeats` entry from each set's check (`status`, `test_accuracy`,
    `class_fidelity`), the first set's first."""
    per_class: dict[str, list[float]] = {}
    for check in checks:
        for row in (check.get("class_fidelity") or {}).get("classes", []):
            per_class.setdefault(row["class"], []).append(row["accuracy"])
    worst = [((c.get("class_fidelity") or {}).get("worst") or {}).get("drop_points") for c in checks]
    return {
        "repeats": len(checks),
        "images_per_set": [len(s.images) for s in sets],
        "manifest_sha256": [manifest_sha256(s.manifest) for s in sets],  # the first is the artifact's manifest
        "passed": sum(c.get("status") == "ok" for c in checks),
        "statuses": [c.get("status") for c in checks],
        "test_accuracy": spread(c.get("test_accuracy") for c in checks),
        "class_accuracy": {name: spread(values) for name, values in per_class.items()},  # on the fidelity images
        "worst_class_drop": spread(worst),  # points below the float model, the worst class of each set
    }


def repeat(first_check: dict, sets: list, convert: Callable, check: Callable[[Path], dict]) -> dict:
    """Convert (`convert(i, set) -> path`) and `check` the format on every set after the first, deleting each
    file after its check; the spread over all of them (`summary`)."""
    checks = [first_check]
    for i, calibration in enumerate(sets[1:], 1):
        path = convert(i, calibration)
        try:
            checks.append(check(path))
        finally:
            path.unlink(missing_ok=True)
    return summary(checks, sets)


def line(fmt: str, entry: dict) -> str:
    """One line for the log and the CLI: the spread of the overall and the worst class's accuracy."""
    acc, classes = entry.get("test_accuracy") or {}, entry.get("class_accuracy") or {}
    text = f"{fmt}: {entry['repeats']} calibration sets, {entry['passed']} pass"
    if acc:
        text += f"; test accuracy {acc['min']:.1%} .. {acc['max']:.1%} (sd {100 * acc['sd']:.1f} points)"
    if classes:
        name, s = max(classes.items(), key=lambda kv: kv[1]["max"] - kv[1]["min"] if kv[1] else -1)
        if s:
            text += f"; widest class {name} {s['min']:.1%} .. {s['max']:.1%}"
    return text
