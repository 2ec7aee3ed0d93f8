#!/usr/bin/env python
"""What each accuracy step buys, and what it costs: test top-1 with its 95 % interval, wall time, int8.

    .venv/bin/python tools/benchmark_quality.py [--datasets flowers,cats_dogs] [--points v2-1.0-224,v1-0.25-128]
        [--augment_views 2] [--steps defaults,tuned,refit,views,fine_tune] [--out quality.json]

For each dataset and grid point it trains, from an empty bottleneck cache of its own:
  defaults   the head with the old fixed settings (`--no_tune --no_refit`), which also fills the cache;
  tuned      the head settings chosen on validation (`--no_refit`);
  refit      tuned, then refit on train + validation (today's default);
  views      refit, plus K augmented views of each training image (`--augment_views K`);
  fine_tune  the tuned head, then the backbone's top layers fine-tuned (`--fine_tune`);
then exports each run's tflite-int8 (bias-corrected, calibrated as in a sweep) and reads its test
accuracy from the export check. Every step is compared with `defaults` on the same test images
(paired: exact McNemar p and Newcombe's interval of the difference, `edgetl.stats`). Wall time is
`edgetl train`'s (the first step pays for the bottlenecks; the others find them cached), and the
export's separately. Run it with nothing else on the machine; it prints where it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetl.data.dataset import scan_dataset
from edgetl.export import ExportConfig, export_run
from edgetl.features.backbones import BackboneSpec
from edgetl.features.bottlenecks import FeatureConfig
from edgetl.stats import accuracy_interval, mcnemar_exact
from edgetl.train.finetune import FineTuneConfig
from edgetl.train.run import TrainConfig, train
from edgetl.train.tuning import TuneConfig

DATA = Path(os.environ.get("EDGETL_TEST_DATA", Path(__file__).resolve().parents[2] / "shared"))
STEPS = ("defaults", "tuned", "refit", "views", "fine_tune")


def step_config(base: TrainConfig, step: str, views: int) -> TrainConfig:
    if step == "defaults":
        return replace(base, tune=TuneConfig(search=False, refit=False))
    if step == "tuned":
        return replace(base, tune=TuneConfig(refit=False))
    if step == "refit":
        return base
    if step == "views":
        return replace(base, features=replace(base.features, augment_views=views))
    return replace(base, tune=TuneConfig(refit=False), fine_tune=FineTuneConfig())


def measure_step(base: TrainConfig, step: str, views: int, test_paths: list[str], dataset) -> dict:
    config = step_config(base, step, views)
    started = time.time()
    result = train(config, log=lambda msg: None, dataset=dataset)
    train_seconds = time.time() - started
    wrong = {path for path, _, _ in result.misclassified}
    correct = [path not in wrong for path in test_paths]
    started = time.time()
    (int8,) = export_run(
        config.output_dir, ExportConfig(formats=("tflite-int8",)), log=lambda msg: None, progress=False, dataset=dataset
    )
    export_seconds = time.time() - started
    acc, low, high = accuracy_interval(correct)
    run = json.loads((Path(config.output_dir) / "run.json").read_text())
    return {
        "step": step,
        "correct": correct,
        "test_accuracy": acc,
        "low": low,
        "high": high,
        "validation_accuracy": result.metrics["validation_accuracy"],
        "train_seconds": round(train_seconds, 1),
        "int8_test_accuracy": int8.test_accuracy,
        "int8_status": int8.status,
        "export_seconds": round(export_seconds, 1),
        "chosen": run["tuning"]["chosen"],
        "fine_tune_epochs": (run.get("fine_tune") or {}).get("epochs_run"),
    }


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| step | test top-1 [95% CI] | vs defaults (paired) | validation | train s | tflite-int8 | int8 - float |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    ref = rows[0]["correct"]
    for r in rows:
        cmp = mcnemar_exact(r["correct"], ref)
        versus = (
            "-"
            if r is rows[0]
            else (
                f"{cmp.diff_points:+.1f} [{cmp.diff_low_points:+.1f}, {cmp.diff_high_points:+.1f}], p={cmp.p_value:.2f}"
            )
        )
        int8 = r["int8_test_accuracy"]
        int8_text = "-" if int8 is None else f"{int8:.1%}"
        drop = "-" if int8 is None else f"{100 * (int8 - r['test_accuracy']):+.1f}"
        print(
            f"| {r['step']} | {r['test_accuracy']:.1%} [{r['low']:.1%}, {r['high']:.1%}] | {versus} | "
            f"{r['validation_accuracy']:.1%} | {r['train_seconds']:.0f} | {int8_text} ({r['int8_status']}) | "
            f"{drop} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="flowers,cats_dogs")
    p.add_argument("--points", default="v2-1.0-224,v1-0.25-128")
    p.add_argument("--steps", default=",".join(STEPS))
    p.add_argument("--augment_views", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("quality.json"))
    args = p.parse_args(argv)
    steps = [s for s in args.steps.split(",") if s]
    if steps[0] != "defaults" or not set(steps) <= set(STEPS):
        p.error(f"--steps must start with defaults and use only {', '.join(STEPS)}")
    print(f"# edgetl quality benchmark on {platform.node()} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M')}")
    work = Path(tempfile.mkdtemp(prefix="edgetl-quality-"))
    report = {}
    try:
        for name in args.datasets.split(","):
            dataset = scan_dataset(DATA / "datasets" / name)
            test_paths = [str(r.path) for r in dataset.split("testing")]
            for point in args.points.split(","):
                version, alpha, resolution = point.split("-")
                spec = BackboneSpec(version, float(alpha), int(resolution))
                base = TrainConfig(
                    image_dir=DATA / "datasets" / name,
                    output_dir=work / name / point,
                    backbone=spec,
                    features=FeatureConfig(weights_dir=DATA / "weights", bottleneck_dir=work / "cache" / name),
                )
                rows = []
                for step in steps:
                    rows.append(
                        measure_step(
                            replace(base, output_dir=work / name / point / step),
                            step,
                            args.augment_views,
                            test_paths,
                            dataset,
                        )
                    )
                    print(
                        f"  {name} {spec.id} {step}: {rows[-1]['test_accuracy']:.1%} "
                        f"in {rows[-1]['train_seconds']:.0f} s",
                        flush=True,
                    )
                print_rows(f"{name}, {spec.id} ({len(test_paths)} test images)", rows)
                report[f"{name}/{spec.id}"] = rows
                args.out.write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
