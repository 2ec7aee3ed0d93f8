"""The same sweep in-process and through Ray, in one run: wall time of each, whether the results are equal, and the
parallel efficiency of the stages that are not benchmarks (train and export).

    .venv/bin/python tools/bench_ray.py                       # the README sweep; a local Ray with 2 CPUs
    .venv/bin/python tools/bench_ray.py --image_dir ../shared/datasets/cats_dogs --backbones v1 --alphas 0.25 \\
        --resolutions 96,128                                  # a small grid
    .venv/bin/python tools/bench_ray.py --ray HEAD:6379       # on a cluster (this machine is the driver)

Both sweeps start from empty output and bottleneck directories, with the same settings (anything after `--` is
passed to both `edgetl sweep` commands). Definitions:
- T1: the in-process train and export time (the sum of `train_point` and the export loop of each point, timed
  here by wrapping them; in-process they run one after the other);
- Tp: the time during which at least one train or export unit ran on the Ray cluster (the union of their
  intervals in OUT/ray_units.json), which leaves out Ray's start-up and the benchmarks;
- speedup T1 / Tp, efficiency T1 / (P x Tp) with P the cluster's CPUs. Benchmarks are left out on purpose:
  they run one at a time, on an otherwise idle node, so that latencies are comparable.
The table is printed and written to WORK_DIR/bench_ray.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
SAME = ("accuracy", "size_bytes", "sha256", "status", "predictions")
LATENCY = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "load_ms", "first_inference_ms", "peak_rss_mib")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--image_dir", type=Path, default=SHARED / "datasets" / "flowers")
    p.add_argument("--weights_dir", type=Path, default=SHARED / "weights")
    p.add_argument("--backbones", default="v1,v2")
    p.add_argument("--alphas", default="0.25,1.0")
    p.add_argument("--resolutions", default="128,224")
    p.add_argument("--max_latency_ms", default="15")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="a running cluster (default: a local Ray)")
    p.add_argument("--num_cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    p.add_argument("--work_dir", type=Path, default=None, help="where both sweeps write (default: a new temp dir)")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return args, extra


def sweep_args(args: argparse.Namespace, out: Path, extra: list[str]) -> list[str]:
    return [
        "sweep",
        "--image_dir",
        str(args.image_dir),
        "--weights_dir",
        str(args.weights_dir),
        "--backbones",
        args.backbones,
        "--alphas",
        args.alphas,
        "--resolutions",
        args.resolutions,
        "--max_latency_ms",
        args.max_latency_ms,
        "--bottleneck_dir",
        str(out.parent / f"{out.name}-bottlenecks"),
        "--output_dir",
        str(out),
        *extra,
    ]


def timed(calls: list[tuple[str, float]], kind: str, func):
    @functools.wraps(func)
    def wrapper(*a, **k):
        started = time.perf_counter()
        try:
            return func(*a, **k)
        finally:
            calls.append((kind, time.perf_counter() - started))

    return wrapper


def run_in_process(args, out: Path, extra: list[str]) -> dict:
    """The sweep without --ray, its train, export and benchmark calls timed (the sweep's own functions, wrapped)."""
    import edgetl.sweep.local as sweep  # the in-process executor calls the units by these names
    from edgetl.cli.main import main

    calls: list[tuple[str, float]] = []
    for name, kind in (("train_point", "train"), ("bench_artifact", "bench")):
        if not hasattr(sweep, name):
            sys.exit(f"edgetl.sweep.local.{name} is gone: update tools/bench_ray.py to time the in-process units")
        setattr(sweep, name, timed(calls, kind, getattr(sweep, name)))
    started = time.perf_counter()
    code = main(sweep_args(args, out, extra))
    wall = time.perf_counter() - started
    # Exports run in the sweep's export worker (edgetl.sweep.local), out of this process' reach: their own records.
    calls += [
        ("export", float(e.get("seconds") or 0))
        for f in out.glob("points/*/artifacts/export.json")
        for e in json.loads(f.read_text()).get("formats", {}).values()
    ]
    total = {kind: sum(s for k, s in calls if k == kind) for kind in ("train", "export", "bench")}
    return {
        "exit": code,
        "wall_s": wall,
        "train_export_s": total["train"] + total["export"],
        **{f"{k}_s": v for k, v in total.items()},
    }


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def run_on_ray(args, out: Path, extra: list[str]) -> dict:
    import ray

    from edgetl.cli.main import main

    # A local Ray's workers import edgetl as this script does (a cluster's nodes have their own install).
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    if args.ray:
        ray.init(address=args.ray, log_to_driver=False)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    cpus = ray.cluster_resources().get("CPU", 0)
    nodes = sum(n["Alive"] for n in ray.nodes())
    start_up = time.perf_counter() - started
    try:
        code = main(sweep_args(args, out, [*extra, "--ray"]))  # the Ray just started: the sweep uses it
    finally:
        ray.shutdown()
    wall = time.perf_counter() - started
    units = json.loads((out / "ray_units.json").read_text())["units"]
    work = [(u["started"], u["ended"]) for u in units if u["unit"] != "bench"]
    return {
        "exit": code,
        "wall_s": wall,
        "ray_start_s": start_up,
        "cpus": cpus,
        "nodes": nodes,
        "train_export_span_s": union_seconds(work),
        "train_export_unit_s": sum(b - a for a, b in work),
        "bench_s": sum(u["ended"] - u["started"] for u in units if u["unit"] == "bench"),
    }


def picks(out: Path, latencies_from: Path | None = None) -> str:
    """The sweep's pick under its own budget; with `latencies_from`, given that sweep's latencies instead."""
    from edgetl.measure.results import read_results
    from edgetl.pick.pareto import Budget, PickConfig, pick

    settings = json.loads((out / "sweep.json").read_text())["settings"]
    rows = read_results(out)
    if latencies_from is not None:
        other = {(r.point, r.format): r for r in read_results(latencies_from)}
        rows = [
            r.__class__(**{**r.to_dict(), **{k: getattr(other[(r.point, r.format)], k) for k in LATENCY}})
            if (r.point, r.format) in other
            else r
            for r in rows
        ]
    chosen = pick(rows, Budget(**settings["budget"]), PickConfig(**settings["pick"])).chosen
    return "nothing" if chosen is None else f"{chosen.point} {chosen.format}"


def compare(a: Path, b: Path) -> list[str]:
    """What differs between the two sweeps' results, latency and memory aside (nothing, when all is well)."""

    def rows(out):
        return {(r["point"], r["format"]): r for r in json.loads((out / "results.json").read_text())["results"]}

    ra, rb = rows(a), rows(b)
    problems = [f"{k}: only in one sweep" for k in sorted(set(ra) ^ set(rb))]
    problems += [f"{k}: {f} differs" for k in sorted(set(ra) & set(rb)) for f in SAME if ra[k][f] != rb[k][f]]
    if picks(a) != picks(b, latencies_from=a):
        problems.append(f"given the same latencies, the picks differ: {picks(a)} vs {picks(b, latencies_from=a)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-ray-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGETL_NO_DOWNLOAD", "1")
    from edgetl.data.dataset import scan_dataset

    scan_dataset(args.image_dir)  # reads every photo once, so neither sweep starts with a colder page cache
    load_before = os.getloadavg()[0]
    local = run_in_process(args, work / "in_process", extra)
    cluster = run_on_ray(args, work / "ray", extra)
    t1, tp, p = local["train_export_s"], cluster["train_export_span_s"], cluster["cpus"]
    summary = {
        "in_process": local,
        "ray": cluster,
        "speedup": t1 / tp if tp else None,
        "efficiency": t1 / (p * tp) if tp and p else None,
        "differences": compare(work / "in_process", work / "ray"),
        "grid": {k: getattr(args, k) for k in ("image_dir", "backbones", "alphas", "resolutions")},
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
    }
    (work / "bench_ray.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\n{'':28}{'in-process':>12}{'ray':>12}")
    print(
        f"{'wall':28}{local['wall_s']:11.1f}s{cluster['wall_s']:11.1f}s   (ray start-up {cluster['ray_start_s']:.1f} s)"
    )
    print(
        f"{'train + export':28}{t1:11.1f}s{tp:11.1f}s   (span on {cluster['nodes']} node(s), {p:g} CPUs; "
        f"unit time {cluster['train_export_unit_s']:.1f} s)"
    )
    print(f"{'benchmarks':28}{local['bench_s']:11.1f}s{cluster['bench_s']:11.1f}s")
    print(f"speedup of train + export {summary['speedup']:.2f}x, parallel efficiency {summary['efficiency']:.0%}")
    print(f"pick: in-process {picks(work / 'in_process')}, ray {picks(work / 'ray')} (each on its own latencies)")
    print(
        "results: "
        + (
            "equal (latency and memory aside)"
            if not summary["differences"]
            else "DIFFERENT:\n  " + "\n  ".join(summary["differences"])
        )
    )
    print(
        f"1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on "
        f"{os.cpu_count()} cores (other work on the machine makes these figures meaningless)"
    )
    print(f"written: {work / 'bench_ray.json'}")
    return 0 if not summary["differences"] else 1


if __name__ == "__main__":
    sys.exit(main())
