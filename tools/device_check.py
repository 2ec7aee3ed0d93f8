#!/usr/bin/env python
"""Run tools/label_image.py in the TensorFlow-free device environments on real test images.

    python tools/device_check.py MODEL.tflite --image_dir ../shared/datasets/flowers [--per_class 4]

For each environment (.venv-litert, .venv-tflite-runtime, made by tools/make_device_venvs.sh) it labels
the first `per_class` test-split images of every class in one label_image call and prints how many top-1
labels are the true class. Needs only the standard library here; the environments do the work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENVIRONMENTS = (".venv-litert", ".venv-tflite-runtime")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--image_dir", type=Path, required=True)
    p.add_argument("--per_class", type=int, default=4)
    args = p.parse_args(argv)

    from edgetl.data.dataset import scan_dataset

    test = scan_dataset(args.image_dir).split("testing")
    chosen = []
    for label in sorted({r.label for r in test}):
        chosen += [r for r in test if r.label == label][: args.per_class]
    status = 0
    for env in ENVIRONMENTS:
        python = REPO / env / "bin" / "python"
        if not python.exists():
            print(f"{env}: missing (run tools/make_device_venvs.sh)")
            status = 1
            continue
        cmd = [
            str(python),
            str(REPO / "tools" / "label_image.py"),
            "--model_file",
            str(args.model),
            "--top_k",
            "1",
            "--image",
            *[str(r.path) for r in chosen],
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        predicted = [
            line.split(": ", 1)[1]
            for line in out.stdout.splitlines()
            if ": " in line and not line.startswith(("image:", "time:"))
        ]
        times = [float(line.split()[1].rstrip("ms")) for line in out.stdout.splitlines() if line.startswith("time:")]
        right = sum(p == r.label for p, r in zip(predicted, chosen))
        median = sorted(times)[len(times) // 2] if times else float("nan")
        print(
            f"{env}: {right}/{len(chosen)} test images labelled with their true class "
            f"(exit {out.returncode}, median invoke {median:.2f} ms)"
        )
        if out.returncode != 0 or len(predicted) != len(chosen):
            status = 1
            print(out.stderr.strip()[-2000:])
    return status


if __name__ == "__main__":
    sys.exit(main())
