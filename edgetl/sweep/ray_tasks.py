"""Ray for `edgetl sweep --ray`: the cluster settings, connecting, and the sweep's units as a Ray task runs
them on a node (`edgetl.sweep.ray_driver` is the driver that submits them; see its docstring for the design).

Each unit works in a temporary directory of its node and returns the bytes of the files it made, with a
report (node, start and end, log lines); the node never writes the sweep's output directory. Ray itself
is imported only here and in `edgetl.sweep.ray_driver`, and only when `--ray` is given.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from edgetl import __version__
from edgetl.export import ARTIFACTS_DIR, export_format, load_run_inputs, read_export_summary
from edgetl.features.backbones import BackboneSpec, resolve_weights
from edgetl.io.faults import fault_point
from edgetl.io.files import one_line
from edgetl.measure.bench import prepare_test_images
from edgetl.params import Interval, validate
from edgetl.sweep.config import TEST_IMAGES, SweepConfig, point_dir
from edgetl.sweep.units import bench_artifact, release_models, train_point

LOCAL = "local"  # `--ray` without an address: start a Ray on this machine (Ray's own name for it)


class ClusterError(RuntimeError):
    """Ray is missing, or the cluster cannot be reached or cannot run the sweep; the message says the fix."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the units run: `address` is "local" (start a Ray here), "auto" (join the cluster this machine
    is part of), or the head's host:port (or ray://host:port); `bench_resource` names the custom resource
    of the nodes that measure latency (None: the driver's node); `max_retries`: Ray's retries of a task
    whose worker or node died."""

    address: str = LOCAL
    bench_resource: str | None = None
    max_retries: int = 1

    CONSTRAINTS: ClassVar[dict] = {"max_retries": Interval(int, 0)}

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address.strip():
            raise ValueError("--ray takes no address (a local Ray), 'auto' (the running cluster) or host:port")
        if self.bench_resource is not None and (
            not self.bench_resource.strip() or self.bench_resource in ("CPU", "GPU", "memory", "object_store_memory")
        ):
            raise ValueError(f"--bench_resource must name a custom resource, got {self.bench_resource!r}")
        validate(self)


# ---------------------------------------------------------------------------------------------------------
# connecting


def _check_reachable(address: str) -> None:
    """Fail in seconds, with the fix, where Ray itself would retry an unreachable head for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or address, int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise ClusterError(
            f"cannot reach a Ray head at {address} ({one_line(e)}); start one there with "
            "`ray start --head`, or check the address and that its port is open"
        ) from None


def _no_cluster(cluster: ClusterConfig, why: str) -> ClusterError:
    return ClusterError(
        f"no running Ray cluster found for --ray {cluster.address} ({why}): start one with "
        "`ray start --head` (other machines join with `ray start --address=HEAD:6379`), or use "
        "--ray without an address for a Ray on this machine only"
    )


def _auto_address(cluster: ClusterConfig) -> str:
    """The head `auto` means (RAY_ADDRESS, the last `ray start` here, a running GCS). Ray's own lookup would
    retry the address a killed head left behind for minutes; resolving it first lets it be checked."""
    from ray._private.services import canonicalize_bootstrap_address  # not public, but what ray.init calls

    try:
        address = canonicalize_bootstrap_address("auto")
    except ConnectionError as e:
        raise _no_cluster(cluster, one_line(e)) from None
    if not address:
        raise _no_cluster(cluster, "none recorded on this machine")
    return address


def connect(cluster: ClusterConfig):
    """Ray, connected as `cluster` says; a Ray the caller already started (ray.init) is used as it is.
    Returns (the ray module, whether this call started the connection and must shut it down)."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'edgetl[ray]' (tools/install.sh installs it)") from None
    if ray.is_initialized():
        return ray, False
    if cluster.address == "auto":
        _check_reachable(_auto_address(cluster))
    elif cluster.address != LOCAL:
        _check_reachable(cluster.address)
    options = {"include_dashboard": False} if cluster.address == LOCAL else {}
    try:
        # Task output comes back with each result instead (their logs), not interleaved with the bars.
        ray.init(address=cluster.address, log_to_driver=False, **options)
    except ConnectionError as e:
        if "auth" in type(e.__cause__).__name__.lower() or "token" in str(e.__cause__).lower():
            raise ClusterError(
                f"the Ray cluster at {cluster.address} requires its token: set RAY_AUTH_MODE=token and "
                "copy the head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN)"
            ) from None
        raise _no_cluster(cluster, one_line(e)) from None
    return ray, True


def bench_options(ray, cluster: ClusterConfig, nodes: list[dict], driver: str) -> tuple[dict, int | None, list]:
    """Ray options of a benchmark task, how many may run at once (None: as many as Ray places), notes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if cluster.bench_resource is None:
        cpus = next(n["Resources"].get("CPU", 0) for n in nodes if n["NodeID"] == driver)
        # All the node's CPUs: no other unit runs beside a measurement; and one at a time even on a 0-CPU head.
        return {"num_cpus": cpus, "scheduling_strategy": NodeAffinitySchedulingStrategy(driver, soft=False)}, 1, []
    name = cluster.bench_resource
    offering = [n for n in nodes if n["Resources"].get(name, 0) > 0]
    if not offering:
        raise ClusterError(
            f"no node of the cluster offers the resource {name!r} that --bench_resource names; start "
            f"the benchmark nodes with ray start --address=HEAD:6379 --resources='{{\"{name}\": 1}}'"
        )
    cpus = sorted({n["Resources"].get("CPU", 0) for n in offering})
    notes = (
        []
        if len(cpus) == 1
        else [
            f"the nodes offering {name} have {' or '.join(f'{c:g}' for c in cpus)} CPUs: "
            "not one kind of node, so their latencies may not be comparable"
        ]
    )
    return {"num_cpus": cpus[0], "resources": {name: 1}}, None, notes


# ---------------------------------------------------------------------------------------------------------
# the units, as they run on a node


class Board:
    """What each node is doing now: tasks say when a unit begins and ends, the driver draws it."""

    def __init__(self):
        self.doing: dict[str, tuple[str, str, str]] = {}  # unit -> (node id, node label, what)

    def begin(self, unit: str, node: str, label: str, what: str) -> None:
        self.doing[unit] = (node, label, what)

    def end(self, unit: str) -> None:
        self.doing.pop(unit, None)

    def snapshot(self) -> dict:
        return dict(self.doing)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def _temp_dir(kind: str) -> Path:
    """A temp dir named after this worker process. Ray ends workers without running their exit handlers, and a
    killed one cleans nothing, so the dirs of processes that are gone are removed first."""
    for old in Path(tempfile.gettempdir()).glob("edgetl-ray-*-*-*"):  # edgetl-ray-<kind>-<pid>-<random>
        pid = old.name.split("-")[3]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"edgetl-ray-{kind}-{os.getpid()}-"))


@contextlib.contextmanager
def _unit(board, unit: str, what: str, version: str, workdir: bool = True):
    """A task's frame: its own temp dir (unless `workdir` is False), the board told, and the report it returns
    (node, times, logs)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    report = {"node": f"{socket.gethostname()} (node {node[:8]})", "started": time.time(), "logs": []}
    if version != __version__:
        raise ClusterError(
            f"{report['node']} has edgetl {__version__}, the driver {version}; install the same edgetl on every node"
        )
    board.begin.remote(unit, node, report["node"], what)
    tmp = _temp_dir("unit") if workdir else None
    try:
        yield tmp, report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        report["ended"] = time.time()
        board.end.remote(unit)


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Into a task's temp dir (private to the task: no atomic writes needed)."""
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


# What an export needs of a trained point: the model, and the float model's test predictions it checks against.
MODEL_FILES = ("run.json", "model.keras", "model.tflite", "test_predictions.npy")  # model.tflite: golden choice


def _is_model_file(name: str) -> bool:
    """What an export needs of a trained point (the rest, e.g. the test images, stays with the driver)."""
    return name in MODEL_FILES


def read_model(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in MODEL_FILES if (run_dir / name).is_file()}


def train_unit(config: SweepConfig, spec: BackboneSpec, dataset, weights_sha256: str, version: str, board):
    """Unit 1 on a node: returns (the files an export needs, the report with the point's other files)."""
    with _unit(board, f"train {spec.id}", f"training {spec.id}", version) as (tmp, report):
        weights = resolve_weights(spec, config.features.weights, config.features.weights_dir)
        if weights.sha256 != weights_sha256:
            raise ValueError(
                f"the weights {weights.path} on {report['node']} are not the driver's (their SHA-256 "
                "differs); give every node the same weight files"
            )
        local = replace(config, output_dir=tmp)
        train_point(local, spec, dataset, weights, report["logs"].append)
        # The benchmarks' test images are decoded here, not by the driver, whose node may be measuring.
        prepare_test_images(dataset, spec.resolution, point_dir(local, spec) / TEST_IMAGES)
        files = _read_tree(point_dir(local, spec))
        report["files"] = {k: v for k, v in files.items() if not _is_model_file(k)}
        return {k: v for k, v in files.items() if _is_model_file(k)}, report


# This worker's last point, loaded: what every format of a point shares (the model, the test images and the
# float predictions, the calibration set and the bias-corrected copy), kept as the in-process export loop keeps
# it, so the formats of one point that land on one worker load it once: (train key, RunInputs) or None.
_loaded = None


def _run_inputs(train_key: str, model: dict, dataset):
    global _loaded

    if _loaded is not None and _loaded[0] == train_key:
        return _loaded[1]
    if _loaded is not None:  # the last point's models are garbage now: handed back, as the local runner does
        _forget_inputs()
        release_models()
    run_dir = _temp_dir("run")
    try:
        _write_tree(run_dir, model)
        _loaded = (train_key, load_run_inputs(run_dir, dataset))
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return _loaded[1]


@atexit.register
def _forget_inputs() -> None:
    global _loaded
    if _loaded is not None:
        shutil.rmtree(_loaded[1].run_dir, ignore_errors=True)
        _loaded = None


def export_unit(
    config: SweepConfig, spec: BackboneSpec, fmt: str, train_key: str, model: dict, dataset, version: str, board
):
    """Unit 2 on a node: returns the report with this format's export.json entry and artifact files."""

    with _unit(board, f"export {spec.id} {fmt}", f"exporting {spec.id} {fmt}", version, workdir=False) as (_, report):
        inputs = _run_inputs(train_key, model, dataset)
        export_format(inputs, fmt, config.export, report["logs"].append)
        report["entry"] = read_export_summary(inputs.run_dir)[fmt]
        # This format's files only: the directory also holds the formats exported before on this worker.
        report["files"] = {
            k: v for k, v in _read_tree(inputs.run_dir / ARTIFACTS_DIR).items() if k.startswith(f"{fmt}.")
        }
        return report


def bench_unit(
    config: SweepConfig,
    spec: BackboneSpec,
    fmt: str,
    path: str,
    artifact: bytes,
    test_images: bytes,
    run: dict,
    status: str,
    version: str,
    board,
):
    """Unit 3 on a node: `path` relative to the output dir; returns the report with the row."""
    import numpy as np

    with _unit(board, f"bench {spec.id} {fmt}", f"benchmarking {spec.id} {fmt}", version) as (tmp, report):
        _write_tree(tmp, {path: artifact, f"points/{spec.id}/{TEST_IMAGES}": test_images})
        images = tmp / "points" / spec.id / TEST_IMAGES
        with np.load(images) as data:
            labels = data["labels"]
        fault_point(f"bench:{fmt}")
        row, ran_on = bench_artifact(
            replace(config, output_dir=tmp), spec, fmt, tmp / path, (images, labels), run, status
        )
        report["row"], report["ran_on"] = replace(row, measured_on=report["node"]), {**ran_on, "node": report["node"]}
        return report
