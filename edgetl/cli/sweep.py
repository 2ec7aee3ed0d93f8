"""`edgetl sweep`: its options and the command (the in-process runner, or Ray with `--ray`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edgetl.cli import retrain as retrain_cli
from edgetl.cli.outcome import EXIT_CODES_EPILOG, LOGGER, add_strict_argument, failed_units, pick_exit_code
from edgetl.cli.pick import (
    add_bench_arguments,
    add_budget_arguments,
    add_device_arguments,
    bench_from_args,
    budget_from_args,
    pick_from_args,
)
from edgetl.cli.train_args import (
    add_backbone_arguments,
    add_data_arguments,
    add_fine_tune_arguments,
    add_head_arguments,
    features_from_args,
    fine_tune_config_from_args,
    head_config_from_args,
    split_from_args,
    tune_config_from_args,
)


def _csv(cast):
    def parse(text: str):
        try:
            return [cast(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


def cmd_sweep(args: argparse.Namespace) -> int:
    from edgetl.cli.export import export_config_from_args
    from edgetl.sweep.config import SweepConfig
    from edgetl.sweep.grid import grid, read_grid_file
    from edgetl.sweep.run import sweep

    if args.grid:
        points, notes = read_grid_file(args.grid)
    else:
        points, notes = grid(args.backbones, args.alphas, args.resolutions)
    log = logging.getLogger(LOGGER).info
    for note in notes:
        log(f"note: {note}")
    config = SweepConfig(
        image_dir=args.image_dir,
        output_dir=args.output_dir,
        points=tuple(points),
        split=split_from_args(args),
        features=features_from_args(args),
        head=head_config_from_args(args),
        tune=tune_config_from_args(args),
        export=export_config_from_args(args, args.formats),
        bench=bench_from_args(args),
        budget=budget_from_args(args),
        pick=pick_from_args(args),
        force=args.force,
        fine_tune_front=args.fine_tune_front,
        fine_tune_settings=fine_tune_config_from_args(args),
        summaries_dir=args.summaries_dir,
    )
    if args.ray is not None:
        from edgetl.sweep.ray_driver import ClusterConfig, sweep_on_ray

        result = sweep_on_ray(config, ClusterConfig(args.ray, args.bench_resource), notes, log=log)
    elif args.bench_resource is not None:
        raise ValueError("--bench_resource names the Ray nodes that measure latency; it needs --ray")
    else:
        result = sweep(config, notes, log=log)
    if args.device_results:
        from edgetl.pick.rebuild import rebuild_report

        rebuild_report(args.output_dir, config.budget, config.pick, args.device_results, args.device_threads)
    print(f"report: {result.report}")
    if result.pick is None:
        print("no artifact fits the budget; see the report for the closest ones")
    else:
        c = result.pick
        print(
            f"pick: {c.point} {c.format}: accuracy {c.accuracy:.1%}, p50 {c.latency_ms_p50:.2f} ms, "
            f"{c.size_bytes / 1e6:.2f} MB -> {Path(args.output_dir) / 'best'}"
        )
    return pick_exit_code(result.pick is not None, failed_units(result.results, result.notes), args.strict)


def add_sweep_parser(sub) -> None:
    from edgetl.cli.export import add_shared_export_arguments
    from edgetl.sweep.config import SWEEP_FORMATS

    help_text = "train, export and benchmark a width x resolution grid; pick on the Pareto front"
    p = sub.add_parser("sweep", help=help_text, **EXIT_CODES_EPILOG)
    add_data_arguments(p)
    p.add_argument("--backbones", type=_csv(str), default=["v1", "v2"])
    p.add_argument("--alphas", type=_csv(float), default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--resolutions", type=_csv(int), default=[128, 160, 192, 224])
    p.add_argument("--grid", type=Path, default=None, help="YAML/TOML grid file (overrides the three lists)")
    p.add_argument(
        "--formats",
        type=_csv(str),
        default=list(SWEEP_FORMATS),
        help=f"comma list of format names (default {','.join(SWEEP_FORMATS)})",
    )
    add_shared_export_arguments(p)
    add_bench_arguments(p)
    add_budget_arguments(p)
    add_backbone_arguments(p)
    add_head_arguments(p)
    p.add_argument(
        "--fine_tune_front",
        type=int,
        default=0,
        metavar="K",
        help="after the head-only grid, fine-tune the K most accurate points of its Pareto front and add "
        "them as points <id>-ft (exported and benchmarked like the others)",
    )
    add_fine_tune_arguments(p, switch=False)
    retrain_cli.add_curve_arguments(p)
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="redo every stage even if finished")
    add_strict_argument(p)
    add_device_arguments(p)
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the units as Ray tasks (pip install 'edgetl[ray]'): without ADDRESS on a Ray started "
        "here, 'auto' on the cluster this machine has joined, or the head's host:port",
    )
    p.add_argument(
        "--bench_resource",
        default=None,
        metavar="NAME",
        help="with --ray: measure latency on the nodes offering this custom resource (ray start "
        "--resources='{\"NAME\": 1}'), one at a time per node (default: on this machine's node)",
    )
    p.set_defaults(func=cmd_sweep)
