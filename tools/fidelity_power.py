"""How many images per class the per-class fidelity check needs: its power against its cost.

Power: Monte Carlo of the gate (`edgetl.export.fidelity.class_table`: exact McNemar per class, Holm over
the classes, a class fails when it loses more than --max_class_drop points and its adjusted p < 0.05).
Each image of a class flips wrong (right for the float model, wrong for the artifact) with probability
`background` and flips right with probability `background`; in the harmed class, `drop` more of its
images flip wrong. The background comes from real artifacts (the per-class flips of the int8 files on
flowers, README); a drop of 0 gives the false-alarm rate.

Cost: seconds per image of running an artifact with every core (what the export check does), read from
`--run RUN` (its quantized artifacts timed on its own test images), times the images the check adds.

    nice -n 10 python tools/fidelity_power.py --classes 5 --background 0.015 --run RUN
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgetl.export.fidelity import class_table


def power(n: int, classes: int, background: float, drop: float, max_class_drop: float, reps: int, seed: int):
    """(share of runs in which the harmed class fails, share in which any other class fails)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n)
    names = [str(i) for i in range(classes)]
    hit = false = 0
    for _ in range(reps):
        u = rng.uniform(size=labels.size)
        wrong_p = np.where(labels == 0, background + drop, background)
        flipped_wrong = u < wrong_p
        flipped_right = (u >= wrong_p) & (u < wrong_p + background)
        # the float model right on every image except those that flip right (only flips matter to the test)
        float_pred = np.where(flipped_right, (labels + 1) % classes, labels)
        artifact = np.where(flipped_wrong, (labels + 1) % classes, labels)
        rows = class_table(labels, float_pred, artifact, names, max_class_drop)
        hit += rows[0]["failed"]
        false += any(r["failed"] for r in rows[1:])
    return hit / reps, false / reps


def seconds_per_image(run: Path, threads: int) -> dict[str, float]:
    """Each quantized artifact of `run`: seconds per image predicted in batches of 64 with `threads` threads."""
    from edgetl.export import FORMATS, load_run_inputs
    from edgetl.runtime import load_model

    inputs = load_run_inputs(run)
    out = {}
    for fmt, spec in FORMATS.items():
        path = run / "artifacts" / f"{fmt}{spec.suffix}"
        if spec.quantization == "float32" or not path.is_file():
            continue
        model = load_model(path, threads)
        model.predict(inputs.test_images[:8], batch_size=64)
        started = time.perf_counter()
        model.predict(inputs.test_images, batch_size=64)
        out[fmt] = (time.perf_counter() - started) / len(inputs.test_images)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--background", type=float, default=0.015)
    parser.add_argument("--drops", default="0,0.02,0.03,0.05,0.08", help="true drops of the harmed class")
    parser.add_argument("--max_class_drop", type=float, default=3.0)
    parser.add_argument("--sizes", default="50,100,150,200,300,400,600")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--run", type=Path, action="append", default=[])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for run in args.run:
        costs = seconds_per_image(run, args.threads)
        print(
            f"{run}: ms per image, {args.threads} threads: " + ", ".join(f"{f} {s * 1e3:.2f}" for f, s in costs.items())
        )
    drops = [float(d) for d in args.drops.split(",")]
    print(
        f"\n{args.classes} classes, background flips {args.background:.1%} each way, gate > "
        f"{args.max_class_drop:g} points and Holm p < 0.05, {args.reps} runs: how often the harmed class fails "
        "(and, last column, how often any unharmed class does)"
    )
    print("| images per class | " + " | ".join(f"true drop {d * 100:g}" for d in drops) + " | unharmed class |")
    print("|--:|" + "--:|" * (len(drops) + 1))
    for n in map(int, args.sizes.split(",")):
        cells, false = [], 0.0
        for d in drops:
            hit, f = power(n, args.classes, args.background, d, args.max_class_drop, args.reps, seed=n)
            cells.append(f"{hit:.1%}")
            false = max(false, f)
        print(f"| {n} | " + " | ".join(cells) + f" | {false:.2%} |")


if __name__ == "__main__":
    main()
