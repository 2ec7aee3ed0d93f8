"""`edgetl sweep` on a tiny grid (random weights, a small real photo subset): the front, the pick, resuming."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FLOWERS, copy_subset

from edgetl.cli.main import main
from edgetl.measure.results import ArtifactResult, read_results
from edgetl.pick.pareto import Budget

pytestmark = pytest.mark.slow  # real training, conversion or sweeps: minutes

FORMATS = "tflite-float32,tflite-int8,onnx-float32"


def sweep_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sweep",
        "--image_dir",
        str(data),
        "--weights",
        "none",
        "--backbones",
        "v1",
        "--alphas",
        "0.25",
        "--resolutions",
        "96,128",
        "--formats",
        FORMATS,
        "--how_many_training_steps",
        "200",
        "--calibration_images",
        "20",
        "--min_timed_runs",
        "20",
        "--min_timed_seconds",
        "0.2",
        "--bottleneck_dir",
        str(out.parent / "bottlenecks"),
        "--output_dir",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return copy_subset(FLOWERS, tmp_path_factory.mktemp("tiny") / "flowers", ["daisy", "roses", "tulips"], 20)


@pytest.fixture(scope="module")
def finished_sweep(tiny_data, tmp_path_factory) -> Path:
    """The tiny sweep, with the stages it passed, in order, in OUT/../trace.txt (`edgetl.io.files.checkpoint`)."""
    out = tmp_path_factory.mktemp("sweep") / "run"
    os.environ["EDGETL_TRACE"] = str(out.parent / "trace.txt")  # the export worker inherits it
    try:
        assert main(sweep_args(tiny_data, out)) in (0, 3)  # 3: nothing fits the budget
    finally:
        del os.environ["EDGETL_TRACE"]
    return out


def brute_force_front(rows: list[ArtifactResult]) -> set[tuple[str, str]]:
    ok = [r for r in rows if r.status == "ok"]

    def dominated(b):
        return any(
            a.accuracy >= b.accuracy
            and a.latency_ms_p50 <= b.latency_ms_p50
            and a.size_bytes <= b.size_bytes
            and (a.accuracy, a.latency_ms_p50, a.size_bytes) != (b.accuracy, b.latency_ms_p50, b.size_bytes)
            for a in ok
        )

    return {(r.point, r.format) for r in ok if not dominated(r)}


def test_the_sweep_log_has_one_plain_line_per_finished_unit(finished_sweep):
    """OUT/sweep.log: what the sweep said, with the time; off a terminal it is also the console's log."""
    lines = (finished_sweep / "sweep.log").read_text(encoding="utf-8").splitlines()
    assert not [line for line in lines if "\x1b" in line or "\r" in line]
    points, formats = ("v1-a0.25-r96", "v1-a0.25-r128"), FORMATS.split(",")
    for point in points:
        assert sum(f" {point}: trained, test accuracy " in line for line in lines) == 1, point
        for fmt in formats:
            assert sum(f" {point} {fmt}: exported, " in line for line in lines) == 1, (point, fmt)
            assert sum(f" {point} {fmt}: measured, p50 " in line for line in lines) == 1, (point, fmt)
    assert lines[-1].split(" ", 1)[1].startswith("report: ")


def test_every_artifact_is_measured(finished_sweep):
    rows = read_results(finished_sweep)
    assert {(r.point, r.format) for r in rows} == {
        (p, f) for p in ("v1-a0.25-r96", "v1-a0.25-r128") for f in FORMATS.split(",")
    }
    for r in rows:
        assert r.size_bytes > 0 and (finished_sweep / r.path).is_file()
        assert 0 < r.latency_ms_p50 <= r.latency_ms_p90 <= r.latency_ms_p99
        assert r.peak_rss_mib > 0 and r.macs > 0 and r.params > 0
        assert r.num_test_images > 0 and 0.0 <= r.accuracy <= 1.0
        assert sum(map(sum, r.confusion_matrix)) == r.num_test_images
    for name in ("results.csv", "results.json", "report.md", "pareto.png", "sweep.json"):
        assert (finished_sweep / name).is_file(), name
    assert (finished_sweep / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_front_and_pick_against_brute_force(finished_sweep):
    from edgetl.pick.pareto import PickConfig, pareto_front, pick

    rows = read_results(finished_sweep)
    assert {(r.point, r.format) for r in pareto_front(rows)} == brute_force_front(rows)
    ok = [r for r in rows if r.status == "ok"]
    median_latency = sorted(r.latency_ms_p50 for r in ok)[len(ok) // 2]
    budget = Budget(max_latency_ms=median_latency)
    anything = PickConfig(runtime="any")
    chosen = pick(rows, budget, anything).chosen
    fitting = [r for r in ok if r.latency_ms_p50 <= median_latency]
    assert chosen is not None and chosen.latency_ms_p50 <= median_latency
    assert chosen.accuracy == max(r.accuracy for r in fitting)
    assert pick(rows, Budget(max_size_mb=1e-6), anything).chosen is None


def test_best_dir_and_report(finished_sweep):
    report = (finished_sweep / "report.md").read_text()
    assert "v1-a0.25-r96" in report and "v1-a0.25-r128" in report
    best = finished_sweep / "best"
    if "**Nothing picked.**" in report:  # possible when every artifact of the tiny random grid failed
        assert not best.exists()
        return
    names = {p.name for p in best.iterdir()}
    assert {"labels.txt", "model_card.md"} <= names and any(n.endswith((".tflite", ".onnx")) for n in names)
    card = (best / "model_card.md").read_text()
    assert card.count("daisy, roses, tulips") == 1, "the card lists the classes once"
    # The default --runtime tflite: the headline pick is a .tflite; best/<runtime>/ holds each runtime's pick.
    assert any(n.endswith(".tflite") for n in names) and {"tflite", "onnx"} <= names
    assert any(p.suffix == ".onnx" for p in (best / "onnx").iterdir())
    assert "- LiteRT/TFLite: **" in report and "- onnxruntime: **" in report


def test_the_test_split_is_predicted_once_per_artifact_against_the_float_models_own_predictions(
    finished_sweep, tmp_path
):
    """train records the float model's test predictions (export checks compare with them, not with a second
    Keras pass), and each benchmark takes its accuracy from its artifact's export check, not a second pass."""
    import numpy as np

    from edgetl.export import check_predictions, load_run_inputs
    from edgetl.export.inputs import _keras_predict
    from edgetl.export.predictions import recorded_reference

    rows = {(r.point, r.format): r for r in read_results(finished_sweep)}
    for point in ("v1-a0.25-r96", "v1-a0.25-r128"):
        run_dir = finished_sweep / "points" / point
        run = json.loads((run_dir / "run.json").read_text())
        inputs = load_run_inputs(run_dir)
        recorded = np.load(run_dir / "test_predictions.npy")
        assert run["reference"]["shape"] == list(recorded.shape) and "test_predictions.npy" in run["files"]
        assert np.array_equal(inputs.keras_probs, recorded)  # the recorded predictions are the reference...
        keras = _keras_predict(inputs.source.keras_model, inputs.test_images)
        assert np.abs(keras - recorded).max() < 1e-4  # ...and they are the Keras model's, to float round-off
        assert run["metrics"]["test_accuracy"] == inputs.keras_accuracy
        entries = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
        for fmt in FORMATS.split(","):
            bench = json.loads((run_dir / "bench" / f"{fmt}.json").read_text())
            assert bench["predictions_from"] == "export check", fmt
            checked = check_predictions(run_dir, entries[fmt], inputs.test_paths)
            assert checked is not None and rows[point, fmt].predictions == checked.argmax(1).tolist()
            assert rows[point, fmt].accuracy == entries[fmt]["test_accuracy"]
    # Other bytes, or other test images, and the saved predictions are not used.
    copy = shutil.copytree(finished_sweep / "points" / "v1-a0.25-r96", tmp_path / "point")
    entry = json.loads((copy / "artifacts" / "export.json").read_text())["formats"]["tflite-int8"]
    paths = load_run_inputs(copy).test_paths
    assert check_predictions(copy, entry, paths) is not None
    assert check_predictions(copy, entry, paths[::-1]) is None
    with open(copy / entry["path"], "ab") as f:
        f.write(b"\0")
    assert check_predictions(copy, entry, paths) is None
    # A damaged reference (its SHA-256 in run.json no longer matches) is not used: the Keras model predicts.
    run = json.loads((copy / "run.json").read_text())
    assert recorded_reference(copy, run, paths) is not None
    recorded = np.load(copy / "test_predictions.npy")
    (copy / "test_predictions.npy").write_bytes(b"not a numpy file")
    assert recorded_reference(copy, run, paths) is None
    assert np.abs(load_run_inputs(copy).keras_probs - recorded).max() < 1e-4


def test_report_command_rebuilds(finished_sweep):
    (finished_sweep / "report.md").unlink()
    assert main(["report", str(finished_sweep)]) == 0
    assert "v1-a0.25-r128" in (finished_sweep / "report.md").read_text()


def _bench_mtimes(out: Path) -> dict[str, float]:
    done = {}
    for state_path in out.glob("points/*/sweep_state.json"):
        state = json.loads(state_path.read_text())
        for fmt in state.get("bench", {}):
            done[f"{state_path.parent.name}/{fmt}"] = (state_path.parent / "bench" / f"{fmt}.json").stat().st_mtime_ns
    return done


def test_killed_sweep_resumes_without_redoing_finished_artifacts(tiny_data, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgetl.cli.main", *sweep_args(tiny_data, out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    try:
        while time.time() < deadline and len(_bench_mtimes(out)) < 2:
            assert proc.poll() is None, "the sweep finished before it could be killed"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _bench_mtimes(out)
    assert len(before) >= 2
    run_json = out / "points" / "v1-a0.25-r96" / "run.json"
    trained_at = run_json.stat().st_mtime_ns

    assert main(sweep_args(tiny_data, out)) in (0, 3)  # 3: nothing fits the budget
    after = _bench_mtimes(out)
    assert len(after) == 2 * len(FORMATS.split(","))
    assert {k: after[k] for k in before} == before, "finished artifacts were measured again"
    assert run_json.stat().st_mtime_ns == trained_at, "a finished grid point was retrained"

    # A changed measurement setting redoes the measurements only, not training or export.
    exported_at = (out / "points" / "v1-a0.25-r96" / "artifacts" / "export.json").stat().st_mtime_ns
    assert main(sweep_args(tiny_data, out, "--num_threads", "2")) in (0, 3)  # 3: nothing fits the budget
    assert run_json.stat().st_mtime_ns == trained_at
    assert (out / "points" / "v1-a0.25-r96" / "artifacts" / "export.json").stat().st_mtime_ns == exported_at
    assert all(v != before.get(k) for k, v in _bench_mtimes(out).items())
    assert {r.num_threads for r in read_results(out)} == {2}


def test_a_point_exports_in_the_worker_while_the_next_trains_and_a_kill_there_stops_the_sweep(
    finished_sweep, tiny_data, tmp_path
):
    # (Random weights differ from run to run, so equal results after a kill are tests/test_faults.py's, with
    # ImageNet weights; here, the worker's part: the kill, the resume, the order of the stages.)
    out = tmp_path / "run"

    def sweep(trace: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, EDGETL_TRACE=str(trace), **({"EDGETL_KILL_AT": kill_at} if kill_at else {}))
        return subprocess.run(
            [sys.executable, "-m", "edgetl.cli.main", *sweep_args(tiny_data, out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            start_new_session=True,
        )

    # The first point's int8 conversion runs in the export worker: a power cut there stops the whole sweep.
    killed = sweep(tmp_path / "killed.txt", kill_at="convert:tflite-int8")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert "convert:tflite-int8" in (tmp_path / "killed.txt").read_text().split()
    assert not (out / "results.json").exists()
    first = out / "points" / "v1-a0.25-r128" / "run.json"  # the largest point goes first (overlap.largest_first)
    trained_at = first.stat().st_mtime_ns
    resumed = sweep(tmp_path / "resumed.txt")
    assert resumed.returncode in (0, 1), resumed.stderr[-2000:]
    assert first.stat().st_mtime_ns == trained_at  # the kill lost no finished unit
    rows = read_results(out)
    assert len(rows) == 2 * len(FORMATS.split(",")) and all(r.status == "ok" for r in rows)
    # Uninterrupted: the second point trained (its head fitted) before the first point's first benchmark, which
    # waited for that training and for the export beside it, so nothing else ran while a latency was timed.
    stages = (finished_sweep.parent / "trace.txt").read_text().split()
    heads = [i for i, s in enumerate(stages) if s == "head"]
    assert len(heads) == 2 and heads[1] < min(i for i, s in enumerate(stages) if s.startswith("bench:"))


def test_bench_command_measures_one_artifact_like_the_sweep(finished_sweep, tiny_data, capsys):
    row = next(r for r in read_results(finished_sweep) if r.format == "tflite-float32")
    capsys.readouterr()
    assert main(["bench", str(finished_sweep / row.path), "--image_dir", str(tiny_data)]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["accuracy"] == row.accuracy and measured["num_test_images"] == row.num_test_images
    assert measured["size_bytes"] == row.size_bytes and measured["latency_ms_p50"] > 0


def test_grid_skips_missing_combinations_and_weights(tmp_path, tiny_data, capsys):
    from edgetl.sweep.grid import grid

    points, notes = grid(["v1", "v2"], [0.25, 0.35], [96])
    assert [p.id for p in points] == ["v1-a0.25-r96", "v2-a0.35-r96"]
    assert any("v1 has no alpha 0.35" in n for n in notes) and any("v2 has no alpha 0.25" in n for n in notes)
    # No weights offline for V2 0.35 (and none in this empty weights dir for V1): every point is skipped.
    code = main(
        [
            "sweep",
            "--image_dir",
            str(tiny_data),
            "--weights_dir",
            str(tmp_path),
            "--backbones",
            "v2",
            "--alphas",
            "0.35",
            "--resolutions",
            "96",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "v2-a0.35-r96 skipped" in err and "Traceback" not in err


def test_grid_files_yaml_and_toml(tmp_path):
    from edgetl.sweep.grid import read_grid_file

    (tmp_path / "g.yaml").write_text(
        "points:\n  - {backbone: v2, alpha: 1.0, resolution: 224}\n  - {backbone: v1, alpha: 0.3, resolution: 128}\n"
    )
    points, notes = read_grid_file(tmp_path / "g.yaml")
    assert [p.id for p in points] == ["v2-a1-r224"] and "0.3" in notes[0]
    (tmp_path / "g.toml").write_text('backbones = ["v1"]\nalphas = [0.25, 0.5]\nresolutions = [96]\n')
    points, _ = read_grid_file(tmp_path / "g.toml")
    assert [p.id for p in points] == ["v1-a0.25-r96", "v1-a0.5-r96"]
    (tmp_path / "bad.yaml").write_text("backbones: [v1]\n")
    with pytest.raises(ValueError, match="missing alphas, resolutions"):
        read_grid_file(tmp_path / "bad.yaml")


@pytest.mark.parametrize("venv", [".venv-litert", ".venv-tflite-runtime"])
def test_device_bench_from_a_bundle_runs_without_tensorflow_and_re_picks(finished_sweep, tmp_path, venv):
    import zipfile

    from conftest import REPO_ROOT

    python = REPO_ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{venv} is missing: run tools/make_device_venvs.sh (tools/install.sh does)")
    assert main(["bundle", str(finished_sweep), "-o", str(tmp_path / "bundle.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "bundle.zip") as zf:
        zf.extractall(tmp_path / "bundle")
    bundle = tmp_path / "bundle"
    proc = subprocess.run(
        [
            str(python),
            "device_bench.py",
            "--num_threads",
            "1,2",
            "--min_timed_runs",
            "5",
            "--min_timed_seconds",
            "0.05",
            "--name",
            venv.strip("."),
        ],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    device_json = bundle / f"device-{venv.strip('.')}.json"
    data = json.loads(device_json.read_text())
    measured = [r for r in data["results"] if r["status"] == "ok"]
    assert {r["num_threads"] for r in measured} == {1, 2} and data["device"]["cores"] >= 1
    tflite_runtime = venv == ".venv-tflite-runtime"
    assert data["device"]["runtimes"].get("tflite-runtime" if tflite_runtime else "ai-edge-litert")
    host = {(r.point, r.format): r for r in read_results(finished_sweep)}
    for r in measured:  # device numerics: the same top-1 answers as the host's
        assert r["agreement_with_host"] >= 0.95 and r["load_ms"] > 0
        assert abs(r["accuracy"] - host[(r["point"], r["format"])].accuracy) <= 0.05
    out = tmp_path / "rebuilt"
    shutil.copytree(finished_sweep, out, ignore=shutil.ignore_patterns("points"))
    assert main(["report", str(out), "--device_results", str(device_json)]) == 0
    assert "## On devices" in (out / "report.md").read_text()
    assert (out / "devices" / venv.strip(".") / "report.md").is_file()


def test_fine_tune_front_adds_fine_tuned_rows_for_the_most_accurate_front_point(tiny_data, tmp_path):
    from edgetl.pick.pareto import pareto_front

    out = tmp_path / "run"
    argv = sweep_args(
        tiny_data,
        out,
        "--formats",
        "tflite-float32,tflite-int8",
        "--fine_tune_front",
        "1",
        "--fine_tune_layers",
        "4",
        "--fine_tune_epochs",
        "1",
    )
    assert main(argv) in (0, 3)  # 3: nothing fits the budget
    rows = read_results(out)
    head_rows = [r for r in rows if not r.point.endswith("-ft")]
    fine_rows = [r for r in rows if r.point.endswith("-ft")]
    best = max(pareto_front(head_rows), key=lambda r: (r.accuracy, -r.latency_ms_p50))
    assert {(r.point, r.format) for r in fine_rows} == {
        (best.point + "-ft", f) for f in ("tflite-float32", "tflite-int8")
    }
    run = json.loads((out / "points" / (best.point + "-ft") / "run.json").read_text())
    assert run["fine_tune"]["layers"] == 4 and run["fine_tune"]["epochs_run"] == 1
    assert "-ft" in (out / "report.md").read_text()


def test_a_point_trained_beside_an_export_leaves_the_worker_a_core(finished_sweep):
    """The first point trains alone on every core; the second beside the first's export, on all but one."""
    engine = {
        p: json.loads((finished_sweep / "points" / p / "run.json").read_text())["backbone"]["feature_engine"]
        for p in ("v1-a0.25-r128", "v1-a0.25-r96")
    }
    cores = os.cpu_count() or 1
    assert engine["v1-a0.25-r128"]["engine"] == engine["v1-a0.25-r96"]["engine"] == "litert"
    assert engine["v1-a0.25-r128"]["num_threads"] == cores  # the largest point, trained first
    assert engine["v1-a0.25-r96"]["num_threads"] == max(1, cores - 1)


def test_exports_run_on_a_worker_per_core_each_checking_on_its_share(tiny_data, tmp_path):
    from edgetl.features.backbones import BackboneSpec
    from edgetl.sweep.config import SweepConfig, export_key
    from edgetl.sweep.local import MAX_EXPORT_WORKERS, export_workers, in_worker

    cores = os.cpu_count() or 1
    assert export_workers() == max(1, min(MAX_EXPORT_WORKERS, cores))
    config = SweepConfig(image_dir=tiny_data, output_dir=tmp_path / "out", points=(BackboneSpec("v1", 0.25, 96),))
    shared = in_worker(config, 2)
    assert shared.export.num_threads == max(1, min(config.export.num_threads, cores // 2))
    for fmt in config.export.formats:  # the artifacts are the same: a resumed sweep re-exports nothing
        assert export_key(shared, "trained", fmt) == export_key(config, "trained", fmt)
    pinned = replace(config, export=replace(config.export, num_threads=1))
    assert in_worker(pinned, 2) is pinned


def test_feature_threads_are_validated_and_never_change_a_key(tiny_data, tmp_path):
    from edgetl.features.backbones import BackboneSpec, ResolvedWeights
    from edgetl.features.bottlenecks import FeatureConfig
    from edgetl.sweep.config import SweepConfig, train_key
    from edgetl.sweep.local import beside_export

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="num_threads must be a whole number >= 1 or None"):
            FeatureConfig(num_threads=bad)
    spec = BackboneSpec("v1", 0.25, 96)
    config = SweepConfig(image_dir=tiny_data, output_dir=tmp_path / "out", points=(spec,))
    beside, weights = beside_export(config), ResolvedWeights(None, "random", "", "")
    assert beside.features.num_threads == max(1, (os.cpu_count() or 1) - 1)
    assert train_key(beside, spec, weights) == train_key(config, spec, weights)  # a resumed sweep retrains nothing
    pinned = replace(config, features=replace(config.features, num_threads=1))
    assert beside_export(pinned) is pinned  # what the user set is kept


def test_the_largest_point_goes_first_and_the_cheapest_export_last():
    from edgetl.features.backbones import BackboneSpec
    from edgetl.sweep.local import largest_first

    grid = [BackboneSpec(v, a, r) for v, a in (("v1", 0.25), ("v1", 1.0), ("v2", 1.0)) for r in (128, 224)]
    assert [p.id for p in largest_first(tuple(grid))] == [  # the README grid
        "v1-a1-r224",
        "v2-a1-r224",
        "v1-a1-r128",
        "v2-a1-r128",
        "v1-a0.25-r224",
        "v1-a0.25-r128",
    ]
