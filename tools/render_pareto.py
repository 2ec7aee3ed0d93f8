#!/usr/bin/env python
"""Render pareto.png for a sweep's results.json, or for a constructed result set of a given grid, to look at.

    python tools/render_pareto.py --results runs/flowers/results.json --max_latency_ms 15 -o pareto.png
    python tools/render_pareto.py --grid readme -o readme.png     # 6 points x 4 formats, like the README sweep
    python tools/render_pareto.py --grid full20 -o full20.png     # 20 points x 4 formats (80 artifacts)

Constructed rows follow the shape of the real sweeps (accuracy rising with width and resolution, latency with
MACs, int8 a quarter of float32's size and a little faster) with per-image answers that overlap as real
models' do, so the pick's paired tie test and the intervals behave as on real results. They are for looking
at the plot, not figures about models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgetl.measure.results import ArtifactResult, read_results  # noqa: E402
from edgetl.pick.pareto import Budget, pick  # noqa: E402
from edgetl.pick.plot import plot_pareto  # noqa: E402
from edgetl.stats import wilson_interval  # noqa: E402

FORMATS = {  # format -> (accuracy shift, latency factor, size factor)
    "tflite-float32": (0.0, 1.0, 1.0),
    "tflite-int8": (-0.004, 0.62, 0.27),
    "onnx-float32": (0.0, 1.12, 1.01),
    "onnx-int8": (-0.006, 0.85, 0.29),
}
GRIDS = {
    "readme": [("v1", a, r) for a in (0.25, 1.0) for r in (128, 224)] + [("v2", 1.0, r) for r in (128, 224)],
    "full20": [("v1", a, r) for a in (0.25, 0.5, 0.75, 1.0) for r in (128, 160, 192, 224)]
    + [("v2", 1.0, r) for r in (128, 160, 192, 224)],
}


def constructed_rows(points: list[tuple[str, float, int]], n_test: int = 360, seed: int = 0) -> list[ArtifactResult]:
    """One row per point and format; a shared per-image difficulty makes the models' answers overlap."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_test)
    labels = rng.integers(0, 5, n_test)
    rows = []
    for version, alpha, resolution in points:
        base = 0.72 + 0.17 * alpha**0.5 * (resolution / 224) ** 0.35 + (0.012 if version == "v2" else 0.0)
        macs = int((569e6 if version == "v1" else 300e6) * alpha**2 * (resolution / 224) ** 2)
        float_ms = 0.25 + 11.5 * macs / 569e6 * (0.75 if version == "v2" else 1.0)
        float_bytes = int((4.2e6 if version == "v1" else 8.9e6) * alpha**2 + 0.02e6)
        point = f"{version}-a{alpha:g}-r{resolution}"
        for fmt, (shift, lat, size) in FORMATS.items():
            accuracy = float(np.clip(base + shift + rng.normal(0, 0.004), 0, 1))
            correct = difficulty < accuracy
            predictions = np.where(correct, labels, (labels + 1) % 5)
            low, high = wilson_interval(int(correct.sum()), n_test)
            ms = float_ms * lat * float(rng.normal(1, 0.03))
            rows.append(
                ArtifactResult(
                    point=point, backbone=version, alpha=alpha, resolution=resolution, format=fmt,
                    path=f"points/{point}/{fmt}", size_bytes=int(float_bytes * size), accuracy=float(correct.mean()),
                    top5_accuracy=None, latency_ms_p50=ms, latency_ms_p90=ms * 1.1, latency_ms_p99=ms * 1.3,
                    latency_ms_mean=ms * 1.05, num_threads=1, peak_rss_mib=100.0, macs=macs, params=0,
                    num_test_images=n_test, accuracy_low=low, accuracy_high=high,
                    predictions=predictions.tolist(), labels=labels.tolist(),
                )
            )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", type=Path, help="a sweep's results.json (or its folder)")
    source.add_argument("--grid", choices=sorted(GRIDS), help="a constructed result set of this grid")
    p.add_argument("--max_latency_ms", type=float, default=15.0)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    if args.results is not None:
        folder = args.results if args.results.is_dir() else args.results.parent
        rows, title = read_results(folder), str(folder)
    else:
        rows, title = constructed_rows(GRIDS[args.grid]), f"constructed {args.grid} grid"
    budget = Budget(max_latency_ms=args.max_latency_ms)
    chosen = pick(rows, budget)
    plot_pareto(rows, chosen, args.output, title=title, budget=budget)
    print(f"{args.output}: {len(rows)} artifacts, front {len(chosen.front)}, tied {len(chosen.tied)}, pick "
          f"{chosen.chosen.point + ' ' + chosen.chosen.format if chosen.chosen else None}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
