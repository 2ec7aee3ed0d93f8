"""The `edgetl` flags and commands about measuring and picking: budgets, the pick rule, latency timing, device
results; `edgetl report` and `edgetl bundle`. The sweep and `edgetl bench` share them (`edgetl.cli.main`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgetl.cli.outcome import failed_units, pick_exit_code
from edgetl.measure.bench import BenchConfig
from edgetl.measure.results import read_notes, read_results
from edgetl.pick.bundle import make_bundle
from edgetl.pick.pareto import PICK_RULES, PICK_RUNTIMES, Budget, PickConfig, pick
from edgetl.pick.rebuild import rebuild_report


def budget_from_args(args: argparse.Namespace):

    min_accuracy = args.min_accuracy
    if min_accuracy is not None and min_accuracy > 1:
        min_accuracy /= 100.0  # accept "90" as well as "0.9"
    return Budget(args.max_latency_ms, args.max_size_mb, min_accuracy, args.max_init_ms)


def pick_from_args(args: argparse.Namespace):

    return PickConfig(rule=args.pick, accuracy_tolerance=args.accuracy_tolerance, runtime=args.runtime)


def add_budget_arguments(p: argparse.ArgumentParser) -> None:

    d = PickConfig()
    p.add_argument("--max_latency_ms", type=float, default=None, help="p50 latency budget at batch 1")
    p.add_argument("--max_size_mb", type=float, default=None, help="file size budget (1 MB = 10^6 bytes)")
    p.add_argument(
        "--max_init_ms", type=float, default=None, help="start-up budget: load and allocate plus the first inference"
    )
    p.add_argument(
        "--pick",
        choices=PICK_RULES,
        default=d.rule,
        help="cheapest_tied (default): the cheapest artifact tied with the most accurate one within "
        "budget (within --accuracy_tolerance points and not significantly worse, paired); "
        "most_accurate: the most accurate within budget (the knee of the front without one)",
    )
    p.add_argument(
        "--accuracy_tolerance",
        type=float,
        default=d.accuracy_tolerance,
        help=f"points of accuracy a tied artifact may give up (default {d.accuracy_tolerance:g})",
    )
    p.add_argument("--min_accuracy", type=float, default=None, help="minimum test top-1 (0..1 or percent)")
    p.add_argument(
        "--runtime",
        choices=PICK_RUNTIMES,
        default=d.runtime,
        help=f"the runtime the app embeds: the headline pick (and best/) is among its artifacts only (default "
        f"{d.runtime}: LiteRT/tflite-runtime; onnx: onnxruntime; any: every artifact); report.md and best/<runtime>/ "
        "give each runtime's pick as well",
    )


def add_bench_arguments(p: argparse.ArgumentParser) -> None:

    d = BenchConfig()
    p.add_argument(
        "--num_threads",
        type=int,
        default=d.num_threads,
        help=f"threads for the runtime when measuring latency (default {d.num_threads})",
    )
    p.add_argument(
        "--min_timed_runs",
        type=int,
        default=d.min_timed_runs,
        help=f"latency: at least this many timed invokes (default {d.min_timed_runs})",
    )
    p.add_argument(
        "--min_timed_seconds",
        type=float,
        default=d.min_timed_seconds,
        help=f"latency: and at least this long (default {d.min_timed_seconds:g} s)",
    )
    p.add_argument(
        "--max_timed_seconds",
        type=float,
        default=d.max_timed_seconds,
        help=f"latency: then until the percentiles are stable, at most this long (default {d.max_timed_seconds:g} s)",
    )


def bench_from_args(args: argparse.Namespace):

    return BenchConfig(
        num_threads=args.num_threads,
        min_timed_runs=args.min_timed_runs,
        min_timed_seconds=args.min_timed_seconds,
        max_timed_seconds=args.max_timed_seconds,
    )


def cmd_report(args: argparse.Namespace) -> int:

    budget = budget_from_args(args)
    if not budget.is_set:
        saved = (
            json.loads((args.run_dir / "sweep.json").read_text()).get("settings", {}).get("budget", {})
            if (args.run_dir / "sweep.json").is_file()
            else {}
        )
        budget = Budget(**saved) if saved else budget
    config = pick_from_args(args)
    report = rebuild_report(args.run_dir, budget, config, args.device_results, args.device_threads)
    print(f"report: {report}")
    results = read_results(args.run_dir)
    chosen = pick(results, budget, config).chosen
    if chosen is None:
        print("no artifact fits the budget; see the report for the closest ones")
    return pick_exit_code(chosen is not None, failed_units(results, read_notes(args.run_dir)), args.strict)


def cmd_bundle(args: argparse.Namespace) -> int:

    out = make_bundle(args.run_dir, args.output, front_only=args.front)
    print(
        f"bundle: {out} ({out.stat().st_size / 1e6:.1f} MB); on the device: unzip it, then "
        "python device_bench.py; bring back the device-*.json for `edgetl report --device_results`"
    )
    return 0


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device_results",
        nargs="+",
        type=Path,
        default=[],
        help="device JSON(s) from device_bench.py: re-pick on each device's latencies",
    )
    p.add_argument("--device_threads", type=int, default=1, help="which of the device's thread counts to pick on")
