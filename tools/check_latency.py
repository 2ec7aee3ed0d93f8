#!/usr/bin/env python
"""Cross-check a sweep's latency figures against a plain, independent timing loop.

For every artifact in SWEEP_DIR/results.json this loads the file, in a fresh process, straight into the runtime
(no edgetl code: `ai_edge_litert.interpreter.Interpreter` or an `onnxruntime.InferenceSession`), feeds one zero
image, and times `invoke()` / `run()` calls in a bare loop; right before, edgetl's own benchmark measures
the same file. It prints the sweep's recorded p50, both medians measured now and their ratio: measured
back to back, in one run, so the two figures share the machine's current load.

    python tools/check_latency.py runs/flowers [--runs 200] [--tolerance 0.15]

Exit code 1 when any artifact's ratio is off by more than the tolerance.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def plain_tflite_median(path: Path, num_threads: int, runs: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(10):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def plain_onnx_median(path: Path, num_threads: int, runs: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    # The same kernel choice as edgetl.runtime (exact int8 on non-VNNI x86): it changes what runs, so the
    # comparison must share it; everything else here is independent of edgetl.
    options.add_session_config_entry("session.x64quantprecision", "1")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    feed = {inp.name: np.zeros(shape, np.float32)}
    for _ in range(10):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def plain_median(path: Path, num_threads: int, runs: int) -> float:
    """Time one artifact in a fresh interpreter process, as the sweep does, so no runtime state is shared."""
    timer = "plain_onnx_median" if path.suffix == ".onnx" else "plain_tflite_median"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import check_latency as c; "
        f"print(c.{timer}(c.Path({str(path)!r}), {num_threads}, {runs}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--tolerance", type=float, default=0.15)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edgetl.measure.bench import BenchConfig, measure
    from edgetl.measure.results import read_results

    rows = [r.to_dict() for r in read_results(args.sweep_dir)]

    worst = 0.0
    print(f"{'point':16} {'format':15} {'sweep p50':>9} {'edgetl now':>10} {'plain now':>9} {'ratio':>6}")
    for r in rows:
        if not r["path"] or r["latency_ms_p50"] != r["latency_ms_p50"]:  # failed rows carry NaN
            continue
        path = (args.sweep_dir / r["path"]).resolve()
        images = args.sweep_dir / "points" / r["point"] / "test_images.npz"
        # Back to back, so both methods see the same machine load; the sweep's own figure is shown too.
        edgetl_now = statistics.median(
            measure(
                path,
                images,
                BenchConfig(
                    num_threads=r["num_threads"],
                    min_timed_runs=args.runs,
                    min_timed_seconds=0.0,
                    max_timed_runs=max(args.runs, BenchConfig.max_timed_runs),
                ),
            ).latencies_ms
        )
        plain = plain_median(path, r["num_threads"], args.runs)
        ratio = edgetl_now / plain
        worst = max(worst, abs(ratio - 1))
        print(
            f"{r['point']:16} {r['format']:15} {r['latency_ms_p50']:9.3f} {edgetl_now:10.3f} {plain:9.3f} {ratio:6.3f}"
        )
    print(f"largest deviation of edgetl's p50 from the plain loop's: {worst:.1%} (tolerance {args.tolerance:.0%})")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
