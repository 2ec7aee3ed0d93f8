"""`edgetl sweep --ray [ADDRESS]`: the sweep's own units as Ray tasks, on one machine or a cluster.

- **Units.** Train (bottlenecks and head) per point, export per point and format
  (`edgetl.export.export_format`), benchmark per artifact: the functions the in-process runner calls,
  each wrapped in a Ray task. The driver decides what is finished with the same keys and checks
  (`edgetl.sweep.state`), so a cluster sweep resumes, and mixes with in-process runs, like a local one.
  Once a point's exports are back, its quantization ladder's next rung (`PointPlan.next_rung`) is one
  more export unit, then benchmarked, until none is left, as in-process.
- **Files.** A task works in a temporary directory on its own node and returns the bytes of the files it
  made; the driver, the only process that writes the output directory, writes them there, each file
  atomically, as each unit finishes. So no shared file system is needed for the output, and no two
  processes ever write the same file (export.json, sweep_state.json). The cost is that a point's model
  files (a few MB) travel through Ray's object store, little next to the training that made them.
- **What each node reads itself**, at the same path as the driver: the photos (a shared mount or a copy;
  the driver's scan is passed along, so each node reads only the files it needs) and the weights,
  resolved on the node exactly as locally (`--weights_dir`, `$EDGETL_WEIGHTS_DIR`, Keras' cache) and
  checked against the driver's SHA-256. The bottleneck cache is `--bottleneck_dir`: on a shared mount,
  one cache for the cluster (entries are written atomically, so concurrent writers are safe); by default
  (or on a local path), one cache per node, each computing the points it trains.
- **Comparable latencies.** By default every benchmark runs on the driver's node holding all of its CPUs,
  so no other unit runs there during a measurement, and the driver submits one at a time. With
  `--bench_resource NAME`, benchmarks run on the nodes that offer the custom resource NAME
  (`ray start --resources='{"NAME": 1}'`), holding a node's CPUs too: one measurement at a time per node.
  Each row says which host and node measured it (`measured_on`).
- **Lost nodes.** A task whose worker or node dies is retried by Ray (`ClusterConfig.max_retries`); a unit
  lost after that is noted, and re-running the same command does only the units not on disk.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgetl import __version__
from edgetl.export import ARTIFACTS_DIR, LADDER, merge_export_entry
from edgetl.features.backbones import BackboneSpec, WeightsNotFoundError
from edgetl.io.files import atomic_write_bytes, atomic_write_json
from edgetl.io.log import HEARTBEAT_S, on_terminal
from edgetl.io.quiet import bars_off
from edgetl.measure.bench import prepare_test_images
from edgetl.measure.results import ArtifactResult, write_results
from edgetl.sweep.config import TEST_IMAGES, SweepConfig, SweepResult, point_dir, point_name
from edgetl.sweep.plan import PointPlan, attempt, fine_tune_pass, note_failure, plan_point, unit_record
from edgetl.sweep.ray_tasks import (
    Board,
    ClusterConfig,
    ClusterError,
    bench_options,
    bench_unit,
    connect,
    export_unit,
    read_model,
    train_unit,
)
from edgetl.sweep.run import finish_sweep, start_sweep
from edgetl.sweep.state import read_json, record_bench, record_export
from edgetl.sweep.units import exported_line, from_check, measured_line, trained_line

__all__ = ["ClusterConfig", "ClusterError", "sweep_on_ray"]

UNITS_JSON = "ray_units.json"  # in the output dir: which node did which unit, when


# ---------------------------------------------------------------------------------------------------------
# the driver


@dataclass
class _Point:
    plan: PointPlan
    model: object = None  # ObjectRef of the files an export needs
    test_images: object = None  # ObjectRef of test_images.npz
    open_units: int = 0  # submitted or queued, not yet back
    rows: dict[str, ArtifactResult] = field(default_factory=dict)
    exporting: set[str] = field(default_factory=set)  # formats whose export unit is in flight
    ladder_stopped: bool = False  # a rung's export unit itself failed: no further rung for this point


@dataclass
class _Unit:
    kind: str  # "train" | "export" | "bench"
    point: _Point
    fmt: str = ""
    key: str = ""
    entry: dict = field(default_factory=dict)  # bench: the format's export.json entry

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.point.plan.name, self.kind, self.fmt) if p)


class _RaySweep:
    """One sweep's driver: plans each point from what is on disk, submits its units, writes what comes back."""

    def __init__(self, ray, config: SweepConfig, cluster: ClusterConfig, dataset, notes: list[str], say):
        self.ray, self.config, self.notes, self.say = ray, config, notes, say
        self.remote_config = _absolute(config)  # nodes may start in another working directory
        self.out = Path(config.output_dir)
        nodes = [n for n in ray.nodes() if n["Alive"]]
        driver = ray.get_runtime_context().get_node_id()
        self.bench_options, self.bench_slots, bench_notes = bench_options(ray, cluster, nodes, driver)
        for note in bench_notes:
            notes.append(note)
            say(f"warning: {note}")
        self.labels = {n["NodeID"]: f"{n['NodeManagerHostname']} (node {n['NodeID'][:8]})" for n in nodes}
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.board = (
            ray.remote(num_cpus=0)(Board)
            .options(scheduling_strategy=NodeAffinitySchedulingStrategy(driver, soft=True))
            .remote()
        )
        self.local_dataset, self.dataset = dataset, ray.put(dataset)
        retries = {"max_retries": cluster.max_retries}
        self.tasks = {
            "train": ray.remote(train_unit).options(num_returns=2, **retries),
            "export": ray.remote(export_unit).options(**retries),
            "bench": ray.remote(bench_unit).options(**self.bench_options, **retries),
        }
        self.in_flight: dict = {}  # ObjectRef -> _Unit
        self.benches: deque[_Unit] = deque()
        self.benching = 0
        # The fine-tuning pass adds to the head-only pass's record instead of replacing it.
        self.done_units: list[dict] = read_json(self.out / UNITS_JSON).get("units", []) if config.fine_tune else []
        self.points: list[_Point] = []
        say(
            f"ray: {len(nodes)} node(s), {sum(n['Resources'].get('CPU', 0) for n in nodes):g} CPUs; latency measured "
            + (
                f"on the nodes offering {cluster.bench_resource}"
                if cluster.bench_resource
                else f"on the driver's node {self.labels.get(driver, driver[:8])}"
            )
        )

    # -- planning and submitting

    def plan(self, spec: BackboneSpec) -> None:
        try:
            plan = plan_point(self.config, spec)
        except WeightsNotFoundError as e:
            note_failure(point_name(self.config, spec), e, self.notes, self.say)
            return
        point = _Point(plan)
        self.points.append(point)
        if plan.run is not None:
            self._plan_exports(point)
            return
        point.model, report = self.tasks["train"].remote(
            self.remote_config, spec, self.dataset, plan.weights.sha256, __version__, self.board
        )
        self._submit(report, _Unit("train", point, key=plan.train_key))

    def _submit(self, ref, unit: _Unit) -> None:
        self.in_flight[ref] = unit
        unit.point.open_units += 1

    def _plan_exports(self, point: _Point) -> None:
        plan = point.plan
        todo = plan.exports()
        for fmt in plan.bench_formats():
            if fmt in todo:
                self._submit_export(point, fmt)
            else:
                self._plan_bench(point, fmt)
        if not point.exporting:  # everything asked for was exported before: the ladder may still have a step
            self._climb(point)

    def _submit_export(self, point: _Point, fmt: str) -> None:
        plan = point.plan
        if point.model is None:  # trained by an earlier run: its files come from the output dir
            point.model = self.ray.put(read_model(point_dir(self.config, plan.spec)))
        ref = self.tasks["export"].remote(
            self.remote_config, plan.spec, fmt, plan.train_key, point.model, self.dataset, __version__, self.board
        )
        point.exporting.add(fmt)
        self._submit(ref, _Unit("export", point, fmt, plan.keys[fmt]))

    def _climb(self, point: _Point) -> None:
        """Once the point's exports are back: its next ladder rung as an export unit, or the ladder's outcome
        recorded (`edgetl.sweep.plan.PointPlan.next_rung`, as in-process)."""
        rung = None if point.ladder_stopped else point.plan.next_rung()
        if rung is None:
            point.plan.ladder_finished(self.say)
            return
        self.say(f"{point.plan.name}: quantization ladder: trying {rung}")
        self._submit_export(point, rung)

    def _plan_bench(self, point: _Point, fmt: str) -> None:
        row, entry, key = point.plan.bench(fmt)
        if row is not None:
            point.rows[fmt] = row
        else:
            self.benches.append(_Unit("bench", point, fmt, key, entry))
            point.open_units += 1

    def submit_benches(self) -> None:
        while self.benches and (self.bench_slots is None or self.benching < self.bench_slots):
            unit = self.benches.popleft()
            point, out = unit.point, point_dir(self.config, unit.point.plan.spec)
            if point.test_images is None:
                path, _ = prepare_test_images(self.local_dataset, point.plan.spec.resolution, out / TEST_IMAGES)
                point.test_images = self.ray.put(path.read_bytes())
            artifact = out / unit.entry["path"]
            ref = self.tasks["bench"].remote(
                self.remote_config,
                point.plan.spec,
                unit.fmt,
                artifact.relative_to(self.out).as_posix(),
                artifact.read_bytes(),
                point.test_images,
                point.plan.run,
                unit.entry.get("status", "ok"),
                __version__,
                self.board,
            )
            self.in_flight[ref] = unit  # counted among the point's open units when it was queued
            self.benching += 1

    # -- what comes back

    def finished(self, ref) -> None:
        """Write a unit's output (or note why there is none); the point's bar ticks when its last unit is back."""
        unit = self.in_flight.pop(ref)
        unit.point.open_units -= 1
        if unit.kind == "bench":
            self.benching -= 1
        ok = False
        try:
            report = self.ray.get(ref)
            for message in report["logs"]:
                self.say(f"[{report['node']}] {message}")
            getattr(self, f"_on_{unit.kind}")(unit, report)
            where = {k: report[k] for k in ("node", "started", "ended")}
            self.done_units.append(unit_record(self.config, unit.kind, unit.point.plan.spec, unit.fmt, **where))
            ok = True
        except self.ray.exceptions.RayTaskError as e:  # the unit's own error, a node's disk too: its point only
            cause = e.cause if isinstance(e.cause, Exception) else e
            note_failure(unit.name, cause, self.notes, self.say, fatal=())
        except self.ray.exceptions.RayError as e:  # the worker or node died (after Ray's retries)
            note = (
                f"{unit.name} lost ({type(e).__name__}: its worker or node died); re-run the same command to finish it"
            )
            self.notes.append(note)
            self.say(note)
        except Exception as e:  # writing or planning what follows: the driver's disk ends the sweep
            note_failure(unit.name, e, self.notes, self.say)
        if unit.kind == "export":
            self._exported(unit, ok)

    def _exported(self, unit: _Unit, ok: bool) -> None:
        """An export unit is back: when it was the point's last, the ladder's next step."""
        point = unit.point
        point.exporting.discard(unit.fmt)
        if not ok and unit.fmt in LADDER and unit.fmt not in self.config.export.formats:
            point.ladder_stopped = True  # the same rung would be tried again and again
        if not point.exporting:
            attempt(f"{point.plan.name} quantization ladder", lambda: self._climb(point), self.notes, self.say)

    def _on_train(self, unit: _Unit, report: dict) -> None:
        point, out = unit.point, point_dir(self.config, unit.point.plan.spec)
        files = {**self.ray.get(point.model), **report["files"]}
        (out / "run.json").unlink(missing_ok=True)  # until rewritten, the directory is not a finished run
        for name, data in files.items():
            if name != "run.json":
                atomic_write_bytes(out / name, data, name)
        atomic_write_bytes(out / "run.json", files["run.json"], "run.json")  # last: it marks the run complete
        point.plan.trained()
        point.plan.run = read_json(out / "run.json")
        self.say(trained_line(point.plan.name, point.plan.run))
        self._plan_exports(point)

    def _on_export(self, unit: _Unit, report: dict) -> None:
        plan = unit.point.plan
        out = point_dir(self.config, plan.spec)
        for name, data in report["files"].items():
            atomic_write_bytes(out / ARTIFACTS_DIR / name, data, f"the {unit.fmt} artifact")
        merge_export_entry(out, unit.fmt, report["entry"])
        entry = report["entry"]
        self.say(exported_line(plan.name, unit.fmt, entry.get("status", "?"), entry.get("size_bytes", 0)))
        if unit.fmt in self.config.export.formats:
            record_export(self.config, plan.spec, unit.fmt, unit.key, plan.state)
        else:
            plan.rung_exported(unit.fmt)
        self._plan_bench(unit.point, unit.fmt)

    def _on_bench(self, unit: _Unit, report: dict) -> None:
        plan = unit.point.plan
        report["row"] = replace(report["row"], **from_check(unit.entry))
        record_bench(self.config, plan.spec, unit.fmt, unit.key, report["row"], report["ran_on"], plan.state)
        unit.point.rows[unit.fmt] = report["row"]
        self.say(measured_line(report["row"]))

    def rows(self) -> list[ArtifactResult]:
        order = (*self.config.export.formats, *LADDER)  # the requested formats' rows, then the rungs', as in-process
        return [p.rows[f] for p in self.points for f in dict.fromkeys(order) if f in p.rows]

    def save_units(self) -> None:
        atomic_write_json(self.out / UNITS_JSON, {"units": self.done_units})


def _absolute(config: SweepConfig) -> SweepConfig:
    """The settings as the nodes get them: every path absolute (a worker's working directory is not ours)."""
    f = config.features

    def absolute(path):
        return None if path is None else Path(path).expanduser().resolve()

    weights = f.weights if f.weights in ("imagenet", "none") else str(absolute(f.weights))
    features = replace(
        f, weights=weights, weights_dir=absolute(f.weights_dir), bottleneck_dir=absolute(f.bottleneck_dir)
    )
    return replace(config, image_dir=absolute(config.image_dir), features=features)


class _Progress:
    """The grid bar (a point is done when its last unit is back) and one line per node of what it is doing."""

    def __init__(self, sweep: _RaySweep, total: int):
        from tqdm import tqdm

        self.sweep, self.tqdm, self.off = sweep, tqdm, bars_off()
        self.grid = tqdm(total=total, desc="grid", unit="point", position=0, disable=self.off)
        self.lines = {
            node: tqdm(bar_format="{desc}", position=1 + i, leave=False, desc=f"{label}: idle", disable=self.off)
            for i, (node, label) in enumerate(sweep.labels.items())
        }
        self.counted: set[str] = set()
        self.last_beat = time.monotonic()  # off a terminal: a line of what each node does, every HEARTBEAT_S

    def update(self) -> None:
        for point in self.sweep.points:
            if point.open_units == 0 and point.plan.name not in self.counted:
                self.counted.add(point.plan.name)
                self.grid.set_postfix_str(point.plan.name)
                self.grid.update(1)
        try:
            doing = self.sweep.ray.get(self.sweep.board.snapshot.remote(), timeout=5)
        except self.sweep.ray.exceptions.RayError:
            return  # the lines are a view; the sweep goes on without them
        by_node: dict[str, list[str]] = {}
        for node, label, what in doing.values():
            by_node.setdefault(node, []).append(what)
            self.sweep.labels.setdefault(node, label)
        if not on_terminal() and doing and time.monotonic() - self.last_beat >= HEARTBEAT_S:
            self.last_beat = time.monotonic()
            self.sweep.say("still " + "; ".join(f"{self.sweep.labels[n]}: {', '.join(w)}" for n, w in by_node.items()))
        for node, label in self.sweep.labels.items():
            if node not in self.lines:  # a node that joined during the sweep
                self.lines[node] = self.tqdm(
                    bar_format="{desc}", position=1 + len(self.lines), leave=False, disable=self.off
                )
            self.lines[node].set_description_str(f"{label}: {', '.join(sorted(by_node.get(node, []))) or 'idle'}")

    def close(self, skipped: int) -> None:
        self.grid.update(skipped)  # points planned out (no weights) count as done, as in-process
        for bar in [*self.lines.values(), self.grid]:
            bar.close()


def _run_on_ray(
    ray, config: SweepConfig, cluster: ClusterConfig, dataset, notes: list[str], say, earlier: list[ArtifactResult]
) -> list[ArtifactResult]:
    """Every point of `config` as Ray tasks; returns `earlier` plus its rows (written as they finish)."""
    runner = _RaySweep(ray, config, cluster, dataset, notes, say)
    progress = _Progress(runner, len(config.points))
    try:
        for spec in config.points:
            attempt(point_name(config, spec), lambda: runner.plan(spec), notes, say)
        while runner.in_flight or runner.benches:
            runner.submit_benches()
            ready, _ = ray.wait(list(runner.in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                runner.finished(ref)
            if ready and runner.rows():  # as they finish: a driver killed now keeps what is written
                write_results(earlier + runner.rows(), config.output_dir, notes)
            progress.update()
    finally:
        runner.save_units()
        progress.close(len(config.points) - len(progress.counted))
    return earlier + runner.rows()


def sweep_on_ray(
    config: SweepConfig, cluster: ClusterConfig = ClusterConfig(), notes: list[str] | None = None, log=None
) -> SweepResult:
    """`edgetl sweep --ray`: the same units, keys, files and report as `edgetl.sweep.run.sweep`, run as Ray tasks
    (the fine-tuning pass over the front, when asked for, as a second round of them)."""
    notes = list(notes or [])
    ray, started = connect(cluster)  # first: a cluster that is not there fails before the scan
    try:
        dataset, say = start_sweep(config, log)
        results = _run_on_ray(ray, config, cluster, dataset, notes, say, [])
        fine = fine_tune_pass(config, results)
        if fine is not None:
            say(f"fine-tuning {len(fine.points)} point(s) of the front: " + ", ".join(p.id for p in fine.points))
            results = _run_on_ray(ray, fine, cluster, dataset, notes, say, results)
        return finish_sweep(config, results, notes)
    finally:
        if started:
            ray.shutdown()
