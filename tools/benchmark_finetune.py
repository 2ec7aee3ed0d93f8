#!/usr/bin/env python
"""Fine-tuning's ways, timed and scored on the same split: wall seconds, test top-1 with its 95 % interval,
and a paired comparison with the first way (discordant images, exact McNemar p, Newcombe's interval).

    nice -n 5 .venv/bin/python tools/benchmark_finetune.py [--dataset flowers] [--version v2] [--alpha 1.0]
        [--resolution 224] [--max_images_per_class N] [--ways v0,v2] [--epochs 10] [--out finetune.json]

A way is `v<K>`: `FineTuneConfig(views=K)`, K augmented views of each training image whose frozen layers'
output is computed once and reused across epochs; `v0` is the pixel path (a fresh augmentation of every
image every epoch through the whole backbone, the only way before views existed). `v<K>l<L>` also trains
only the last L backbone layers (default: FineTuneConfig's). Every way runs `edgetl train --fine_tune`
(head settings chosen on validation, no refit, as tools/benchmark_quality.py's fine_tune step) from one
shared bottleneck cache, and its seconds are fine-tuning's own (run.json's `fine_tune.seconds`: decoding
the photos, caching, the epochs). `--max_images_per_class` links the first N photos of each class
(sorted by name) into a scratch folder, for quick checks. The load average is printed with each way:
other work on the machine slows whichever way runs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgetl.data.dataset import scan_dataset
from edgetl.features.backbones import BackboneSpec
from edgetl.features.bottlenecks import FeatureConfig
from edgetl.stats import accuracy_interval, mcnemar_exact
from edgetl.train.finetune import FineTuneConfig
from edgetl.train.run import TrainConfig, train
from edgetl.train.tuning import TuneConfig

DATA = Path(os.environ.get("EDGETL_TEST_DATA", Path(__file__).resolve().parents[2] / "shared"))
WAY = re.compile(r"v(\d+)(?:l(\d+))?")


def fine_tune_config(way: str, epochs: int) -> FineTuneConfig:
    match = WAY.fullmatch(way)
    if match is None:
        raise ValueError(f"way {way!r} is not v<views> or v<views>l<layers>, e.g. v0, v2, v2l82")
    views, layers = match.groups()
    config = FineTuneConfig(views=int(views), max_epochs=epochs)
    return replace(config, layers=int(layers)) if layers else config


def subset(source: Path, per_class: int, into: Path) -> Path:
    """The first `per_class` photos of each class of `source`, linked into `into`."""
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (into / folder.name).mkdir(parents=True)
        for photo in sorted(p for p in folder.iterdir() if p.is_file())[:per_class]:
            (into / folder.name / photo.name).symlink_to(photo)
    return into


def measure(base: TrainConfig, way: str, epochs: int, test_paths: list[str], dataset) -> dict:
    config = replace(base, output_dir=base.output_dir / way, fine_tune=fine_tune_config(way, epochs))
    load = os.getloadavg()[0]
    result = train(config, log=lambda msg: None, dataset=dataset)
    info = json.loads((config.output_dir / "run.json").read_text())["fine_tune"]
    wrong = {path for path, _, _ in result.misclassified}
    correct = [path not in wrong for path in test_paths]
    acc, low, high = accuracy_interval(correct)
    return {
        "way": way,
        "views": config.fine_tune.views,
        "layers": config.fine_tune.layers,
        "seconds": info["seconds"],
        "cache_seconds": info.get("cache_seconds"),
        "cache_megabytes": info.get("cache_megabytes"),
        "cut": info.get("cut"),
        "cache_engine": info.get("cache_engine"),
        "history": info["history"],
        "epochs_run": info["epochs_run"],
        "best_epoch": info["best_epoch"],
        "validation_accuracy": result.metrics["validation_accuracy"],
        "test_accuracy": acc,
        "low": low,
        "high": high,
        "correct": correct,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print(
        "| way | fine-tune s | speed-up | cache (s, MB) | epochs (best) | validation | test top-1 [95% CI] | "
        "vs first: diff [95% CI] | discordant (+ right here only, - first only) | McNemar p | load |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    ref = rows[0]
    for r in rows:
        cmp = mcnemar_exact(r["correct"], ref["correct"])
        first = r is ref
        cache = "-" if r["cache_seconds"] is None else f"{r['cache_seconds']:.0f}, {r['cache_megabytes']:,.0f}"
        print(
            f"| {r['way']} (views {r['views']}, layers {r['layers']}) | {r['seconds']:.0f} | "
            f"{ref['seconds'] / r['seconds']:.2f}x | {cache} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{r['validation_accuracy']:.1%} | {r['test_accuracy']:.1%} [{r['low']:.1%}, {r['high']:.1%}] | "
            + (
                "- | - | - |"
                if first
                else f"{cmp.diff_points:+.1f} [{cmp.diff_low_points:+.1f}, {cmp.diff_high_points:+.1f}] | "
                f"+{cmp.b01} / -{cmp.b10} | {cmp.p_value:.2f} |"
            )
            + f" {r['load_before']:.1f}-{r['load_after']:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="flowers")
    p.add_argument("--version", default="v2", choices=("v1", "v2"))
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--max_images_per_class", type=int, default=0, help="0: every photo")
    p.add_argument("--ways", default="v0,v2", help="comma-separated; the first is the reference")
    p.add_argument("--epochs", type=int, default=FineTuneConfig().max_epochs)
    p.add_argument("--out", type=Path, default=Path("finetune.json"))
    args = p.parse_args(argv)
    ways = [w for w in args.ways.split(",") if w]
    for way in ways:
        try:
            fine_tune_config(way, args.epochs)
        except ValueError as e:
            p.error(str(e))
    spec = BackboneSpec(args.version, args.alpha, args.resolution)
    print(
        f"# edgetl fine-tuning benchmark on {platform.node()} ({os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d %H:%M')}: {args.dataset}, {spec.id}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="edgetl-finetune-"))
    try:
        images = DATA / "datasets" / args.dataset
        if args.max_images_per_class:
            images = subset(images, args.max_images_per_class, work / "photos")
        dataset = scan_dataset(images)
        test_paths = [str(r.path) for r in dataset.split("testing")]
        base = TrainConfig(
            image_dir=images,
            output_dir=work / "runs",
            backbone=spec,
            features=FeatureConfig(weights_dir=DATA / "weights", bottleneck_dir=work / "cache"),
            tune=TuneConfig(refit=False),
        )
        rows = []
        for way in ways:
            rows.append(measure(base, way, args.epochs, test_paths, dataset))
            r = rows[-1]
            print(f"  {way}: {r['test_accuracy']:.1%} in {r['seconds']:.0f} s", flush=True)
            args.out.write_text(json.dumps({"spec": spec.id, "dataset": args.dataset, "rows": rows}, indent=1))
        print_table(f"{args.dataset}, {spec.id}, {dataset.summary()} ({len(test_paths)} test images)", rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
