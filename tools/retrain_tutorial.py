#!/usr/bin/env python3
"""The retrain.py tutorial with `edgetl retrain`, on a real dataset: the figures of the README's "Coming from
retrain.py" section.

Runs `edgetl retrain` twice on the same split and bottleneck cache (the MobileNet TF Hub URL, offline), once with
retrain.py's distortions and once without, then TensorFlow's label_image command line on the first result, and
compares the two runs' test predictions paired (McNemar's exact test, edgetl.stats):

    nice -n 10 python tools/retrain_tutorial.py --image_dir ../shared/datasets/flowers \
        --weights_dir ../shared/weights --out /tmp/retrain_tutorial
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HUB = "https://tfhub.dev/google/imagenet/mobilenet_v1_025_128/feature_vector/5"
DISTORTIONS = ["--flip_left_right", "--random_crop", "10", "--random_scale", "10", "--random_brightness", "10"]


def retrain(args: argparse.Namespace, name: str, extra: list[str]) -> dict:
    out = args.out / name
    command = [sys.executable, "-m", "edgetl.cli", "retrain", "--image_dir", str(args.image_dir)]
    command += ["--tfhub_module", HUB, "--weights_dir", str(args.weights_dir), *extra]
    command += ["--summaries_dir", str(out / "retrain_logs"), "--output_graph", str(out / "output_graph.pb")]
    command += ["--output_labels", str(out / "output_labels.txt")]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - started
    run = json.loads((out / "output_graph_run" / "run.json").read_text())
    return {"out": out, "seconds": seconds, "run": run}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_dir", type=Path, required=True)
    p.add_argument("--weights_dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    from edgetl.data.dataset import scan_dataset
    from edgetl.stats import mcnemar_exact, wilson_interval

    runs = {"distortions": retrain(args, "distortions", DISTORTIONS), "plain": retrain(args, "plain", [])}
    test = [r.label_index for r in scan_dataset(args.image_dir).split("testing")]
    correct = {}
    for name, r in runs.items():
        probs = np.load(r["out"] / "output_graph_run" / "test_predictions.npy")
        correct[name] = probs.argmax(axis=1) == np.array(test)
        m, n = r["run"]["metrics"], len(test)
        low, high = wilson_interval(int(correct[name].sum()), n)
        print(
            f"{name}: {r['seconds']:.0f} s, best step {m['best_step']}, refit {m['refit_steps']} steps, "
            f"validation {m['validation_accuracy']:.1%}, test {m['test_accuracy']:.1%} [{low:.1%}, {high:.1%}] "
            f"(n={n}), curves {r['out'] / 'output_graph_run' / 'curves.png'}"
        )
    paired = mcnemar_exact(correct["distortions"], correct["plain"])
    print(f"distortions - plain (paired): {json.dumps(paired.to_dict())}")

    photo = sorted((args.image_dir / "daisy").iterdir())[0]
    out = runs["distortions"]["out"]
    label = [sys.executable, str(REPO / "tools" / "label_image.py"), f"--graph={out / 'output_graph.pb'}"]
    label += [f"--labels={out / 'output_labels.txt'}", "--input_layer=Placeholder", "--output_layer=final_result"]
    subprocess.run([*label, f"--image={photo}"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
