#!/usr/bin/env python
"""Accuracy of every artifact of one or more runs on both held-out splits (validation and test).

    python tools/heldout_accuracy.py RUN_DIR [RUN_DIR ...]

`edgetl export` checks each artifact on the test split alone (360 images on flowers: one image is
0.28 points). Comparing int8 recipes on one small split invites choosing by noise, so this prints
validation, test and the two together, and each artifact's difference from the run's own float32
TFLite file on the same images. The validation split only chose the head's early-stopping step;
it never saw the calibration images (those come from the training split). Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetl.data.dataset import SplitConfig, decode_images, scan_dataset
from edgetl.export import ARTIFACTS_DIR, FORMATS
from edgetl.runtime import load_model, read_metadata

SPLITS = ("validation", "testing")


def heldout_images(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    run = json.loads((run_dir / "run.json").read_text())
    dataset = scan_dataset(run["image_dir"], SplitConfig(run["validation_percentage"], run["testing_percentage"]))
    size = int(run["backbone"]["resolution"])
    out = {}
    for split in SPLITS:
        images, records, failed = decode_images(dataset.split(split), size)
        for line in failed:
            print(f"skipped: {line}", file=sys.stderr)
        out[split] = (images, np.array([r.label_index for r in records]))
    return out


def correct(path: Path, images: np.ndarray, labels: np.ndarray) -> int:
    probs = load_model(path).predict(images)
    return int((probs.argmax(1) == labels).sum())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    args = p.parse_args(argv)
    print(
        f"{'run':<28} {'format':<15} {'bias corr.':>10} {'MB':>6} {'% of f32':>8} "
        f"{'val %':>6} {'test %':>6} {'both %':>6} {'vs f32':>7}"
    )
    for run_dir in args.runs:
        data = heldout_images(run_dir)
        n = {s: len(data[s][1]) for s in SPLITS}
        artifacts = run_dir / ARTIFACTS_DIR
        paths = [artifacts / f"{f}{spec.suffix}" for f, spec in FORMATS.items()]
        paths = [q for q in paths if q.is_file()]
        rows = {q: {s: correct(q, *data[s]) for s in SPLITS} for q in paths}
        reference = artifacts / "tflite-float32.tflite"
        ref = rows.get(reference) or {s: correct(run_dir / "model.tflite", *data[s]) for s in SPLITS}
        ref_size = (reference if reference.is_file() else run_dir / "model.tflite").stat().st_size
        both = lambda r: 100.0 * sum(r.values()) / sum(n.values())  # noqa: E731
        for q, r in rows.items():
            corrected = read_metadata(q).get("bias_correction")
            print(
                f"{run_dir.name[:28]:<28} {q.stem:<15} {'-' if corrected is None else str(corrected):>10} "
                f"{q.stat().st_size / 1e6:>6.2f} {100.0 * q.stat().st_size / ref_size:>7.1f}% "
                f"{100.0 * r['validation'] / n['validation']:>6.1f} {100.0 * r['testing'] / n['testing']:>6.1f} "
                f"{both(r):>6.2f} {both(r) - both(ref):>+7.2f}"
            )
        print(f"({run_dir}: {n['validation']} validation + {n['testing']} test images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
