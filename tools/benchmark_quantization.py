"""Quantization per format and class: for each dataset, a sweep over a small grid exporting every format,
then one table row per artifact: overall accuracy vs the float model (test split, paired), the worst class
of the per-class fidelity check (drop, images flipped wrong / right, Holm-adjusted p), whether the gate
failed it, size, and LiteRT/onnxruntime p50 latency at 1 thread (the sweep's benchmark).

    nice -n 10 python tools/benchmark_quantization.py --out runs/quantization
    nice -n 10 python tools/benchmark_quantization.py --out runs/quantization-nobc --flags=--no_bias_correction

Re-running with the same --out reuses finished units (the sweep is resumable); --report_only reads them.
Latencies measured while other processes use the CPU are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ALL_FORMATS = "tflite-float32,tflite-float16,tflite-dynamic,tflite-int8,tflite-int16x8,onnx-float32,onnx-int8"


def run_sweep(dataset: Path, out: Path, args) -> None:
    backbones, alphas, resolutions = args.grid.split(":")
    cmd = [
        sys.executable,
        "-m",
        "edgetl.cli",
        "sweep",
        "--image_dir",
        str(dataset),
        "--weights_dir",
        str(args.weights_dir),
        "--backbones",
        backbones,
        "--alphas",
        alphas,
        "--resolutions",
        resolutions,
        "--formats",
        args.formats,
        "--output_dir",
        str(out),
        *args.flags.split(),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())


def table(out: Path, title: str) -> list[str]:
    from edgetl.measure.results import read_results
    from edgetl.stats import mcnemar_exact

    rows = read_results(out)
    lines = [
        f"**{title}**",
        "",
        "| point | format | size MB | p50 ms (1 thread) | test top-1 | vs float32 (paired) | worst class "
        "(drop, flipped wrong/right, Holm p) | per-class gate |",
        "|---|---|--:|--:|--:|--:|---|---|",
    ]
    for r in rows:
        twin = next((t for t in rows if t.point == r.point and t.format == f"{r.format.split('-')[0]}-float32"), None)
        versus = "-"
        if twin is not None and twin is not r and r.correct() is not None and twin.correct() is not None:
            t = mcnemar_exact(r.correct(), twin.correct())
            versus = f"{t.diff_points:+.1f}, p={t.p_value:.2g}"
        cf = r.class_fidelity or {}
        worst = "-"
        if cf.get("classes"):
            w = max(cf["classes"], key=lambda c: (c["drop_points"], -c["p_holm"]))
            worst = (
                f"{w['class']} {-w['drop_points']:+.1f} ({w['flipped_wrong']}/{w['flipped_right']}, "
                f"p={w['p_holm']:.2g}) on {w['n']}"
            )
        gate = ("FAILED: " + ", ".join(cf["failed"])) if cf.get("failed") else ("ok" if cf else "-")
        lines.append(
            f"| {r.point} | {r.format} | {r.size_bytes / 1e6:.2f} | {r.latency_ms_p50:.2f} | {r.accuracy:.1%} | "
            f"{versus} | {worst} | {gate} |"
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("EDGETL_TEST_DATA", Path(__file__).resolve().parents[1] / ".." / "shared"))
    parser.add_argument("--datasets", default="flowers,cats_dogs")
    parser.add_argument("--data_dir", type=Path, default=data / "datasets")
    parser.add_argument("--weights_dir", type=Path, default=data / "weights")
    parser.add_argument("--grid", default="v1:0.25:128,224", help="backbones:alphas:resolutions")
    parser.add_argument("--formats", default=ALL_FORMATS)
    parser.add_argument("--flags", default="", help="more sweep flags, e.g. --flags=--no_bias_correction")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args()
    lines = []
    for name in args.datasets.split(","):
        out = args.out / name
        if not args.report_only:
            run_sweep((args.data_dir / name).resolve(), out, args)
        lines += table(out, f"{name}, {args.grid} {args.flags}".strip())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
