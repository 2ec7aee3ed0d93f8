"""Measure every artifact of an edgetl bundle on this device. TensorFlow-free.

    unzip bundle.zip -d bundle && cd bundle && python device_bench.py [--num_threads 1,4] [--out FILE]
    (or, the same: python -m edgetl.measure.device_bench)

A module of the package, so an installed edgetl carries it: `edgetl bundle` copies the package's source
(this module included) into the zip and adds a two-line `device_bench.py` that calls :func:`main`.

Needs numpy and ai-edge-litert (or tflite-runtime); onnxruntime for .onnx artifacts (skipped with a
note when it is missing). For each artifact and thread count, a fresh Python process (`python -m
edgetl.measure.bench`, the same child the sweep uses) measures load and allocate time, the first inference,
warm batch-1 latency p50/p90/p99, peak RSS and the top-1 on the bundled test images; their top-1
answers are compared with the host's (device numerics). Writes one JSON naming the device (machine,
CPU, cores, OS, runtime versions), for `edgetl report SWEEP --device_results FILE`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgetl.io.files import sha256_file
from edgetl.measure.timing import BenchConfig, latency_percentiles
from edgetl.runtime import load_model
from edgetl.runtime.cpu import int8_dot_features
from edgetl.runtime.self_check import self_check

#: The folder holding the `edgetl` package this module was loaded from: the bundle's root when run from one.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ("ai-edge-litert", "tflite-runtime", "onnxruntime", "numpy")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(name: str | None) -> dict:
    versions = {}
    for package in RUNTIMES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "name": name or platform.node() or "device",
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_int8_dot": int8_dot_features(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtimes": versions,
    }


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def self_check_one(path: Path) -> dict:
    """The artifact's self-check on this device (edgetl.runtime.self_check, edgetl's own pipeline): its answers
    on the golden images against the host's, which the file carries."""
    try:
        result = self_check(load_model(path))
    except Exception as e:  # no golden inputs in an older file, or a runtime that cannot load it
        return {"status": f"not run: {' '.join(str(e).split())[:200]}"}
    c = result.comparison
    return {
        "status": "ok" if result.ok else "diverged",
        "max_abs_probability_diff": round(c.max_diff, 6),
        "tolerance": c.tolerance,
        "top1_agree": c.top1_agree,
        "num_images": c.num_images,
        "verdict": result.verdict(),
    }


def measure_one(bundle: Path, entry: dict, threads: int, args) -> dict:
    """One artifact at one thread count, in a fresh process; a row of the device JSON."""
    config = {
        "num_threads": threads,
        "min_timed_runs": args.min_timed_runs,
        "min_timed_seconds": args.min_timed_seconds,
    }
    images = bundle / "test_images" / f"r{entry['resolution']}.npz"
    cmd = [sys.executable, "-m", "edgetl.measure.bench", str(bundle / entry["path"]), str(images), json.dumps(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=bundle)
    row = {"point": entry["point"], "format": entry["format"], "num_threads": threads}
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return {**row, "status": f"benchmark failed: {lines[-1] if lines else 'no output'}"}
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(images) as data:
        labels = data["labels"]
    top1 = np.asarray(m["predictions"]).argmax(axis=1)
    lat = latency_percentiles(m["latencies_ms"])
    host = entry.get("host_predictions") or []
    return {
        **row,
        "status": "ok",
        "backend": m["backend"],
        "accuracy": float((top1 == labels).mean()),
        "agreement_with_host": float((top1 == np.asarray(host)).mean()) if len(host) == len(top1) else None,
        "latency_ms_p50": lat["p50"],
        "latency_ms_p90": lat["p90"],
        "latency_ms_p99": lat["p99"],
        "latency_ms_mean": lat["mean"],
        "load_ms": m["load_ms"],
        "first_inference_ms": m["first_inference_ms"],
        "peak_rss_mib": m["peak_rss_mib"],
        "other_cpu_cores": m["other_cpu_cores"],
        "cpu_int8_dot": m.get("cpu_int8_dot"),
        "num_test_images": int(len(labels)),
    }


def default_bundle() -> Path:
    """The bundle this module was unpacked with (it holds bundle.json), else the current folder."""
    return _PACKAGE_ROOT if (_PACKAGE_ROOT / "bundle.json").is_file() else Path.cwd()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--bundle",
        type=Path,
        default=default_bundle(),
        help="the unpacked bundle (default: the one this edgetl was loaded from, else the current folder)",
    )
    p.add_argument(
        "--num_threads",
        default=f"1,{os.cpu_count() or 1}",
        help="comma list of thread counts (default: 1 and the core count)",
    )
    p.add_argument("--min_timed_runs", type=int, default=None, help="default: edgetl's BenchConfig")
    p.add_argument("--min_timed_seconds", type=float, default=None, help="default: edgetl's BenchConfig")
    p.add_argument("--name", default=None, help="the device's name in reports (default: the host name)")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default: device-<name>.json here)")
    args = p.parse_args(argv)

    defaults = BenchConfig()
    args.min_timed_runs = defaults.min_timed_runs if args.min_timed_runs is None else args.min_timed_runs
    args.min_timed_seconds = defaults.min_timed_seconds if args.min_timed_seconds is None else args.min_timed_seconds
    threads = sorted({int(t) for t in args.num_threads.split(",") if t.strip()})
    manifest = json.loads((args.bundle / "bundle.json").read_text())
    device = describe_device(args.name)
    onnx_ok = _has_onnxruntime()
    rows = []
    for i, entry in enumerate(manifest["artifacts"], 1):
        if entry["path"].endswith(".onnx") and not onnx_ok:
            print(f"[{i}/{len(manifest['artifacts'])}] {entry['point']} {entry['format']}: skipped (no onnxruntime)")
            rows.append({"point": entry["point"], "format": entry["format"], "status": "skipped: no onnxruntime"})
            continue
        if sha256_file(args.bundle / entry["path"]) != entry["sha256"]:
            rows.append({"point": entry["point"], "format": entry["format"], "status": "damaged: SHA-256 differs"})
            continue
        check = self_check_one(args.bundle / entry["path"])  # first: does this device answer as the host did?
        if check["status"] == "diverged":
            print(f"[{i}/{len(manifest['artifacts'])}] {entry['point']} {entry['format']}: {check['verdict']}")
        for t in threads:
            row = {**measure_one(args.bundle, entry, t, args), "self_check": check}
            rows.append(row)
            figure = (
                f"p50 {row['latency_ms_p50']:.2f} ms, top-1 {row['accuracy']:.1%}"
                if row["status"] == "ok"
                else row["status"]
            )
            print(f"[{i}/{len(manifest['artifacts'])}] {entry['point']} {entry['format']} x{t}: {figure}", flush=True)
    out = args.out or args.bundle / f"device-{device['name']}.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps({"kind": "edgetl-device-results", "device": device, "results": rows}, indent=1))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
