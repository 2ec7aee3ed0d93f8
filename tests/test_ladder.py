"""The quantization ladder's first rung, tflite-int8-mixed (edgetl.export.tflite_mixed): int8 with the layers of
largest quantization error kept in float, searched until the export check passes.

On the constructed model of tests/test_fidelity.py whose int8 file loses class "blue" in its *weights* (64 small
weights rounded to 0), plain int8 fails, 16x8 would too (its weights are int8), and the mixed file passes with
the two layers the debugger ranks worst kept in float. Real TensorFlow, its QuantizationDebugger and LiteRT.
And a sweep on Ray (started locally by the sweep) whose dynamic-range file fails the per-class gate: the rungs
are exported and benchmarked as Ray units, with the rows of the in-process sweep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS, REPO_ROOT, WEIGHTS_DIR
from test_fidelity import CLASSES, RGB, _constructed_run

from edgetl.export import ExportConfig, export_run
from edgetl.export.ladder import LADDER, walk
from edgetl.export.tflite_mixed import MAX_FLOAT_SHARE, schedule


def test_schedule_doubles_up_to_the_cap():
    assert MAX_FLOAT_SHARE == 0.5
    assert schedule(0) == [] and schedule(1) == [1] and schedule(3) == [1]
    assert schedule(4) == [1, 2] and schedule(31) == [1, 2, 4, 8, 15] and schedule(32) == [1, 2, 4, 8, 16]


def test_walk_reads_the_next_rung_from_export_json():
    failed = {"tflite-int8": {"status": "check failed: class 'x' ..."}}
    assert walk({"tflite-int8": {"status": "ok"}}, ["tflite-int8"], []) == ([], None, None)
    assert walk(failed, ["tflite-int8"], []) == ([], None, "tflite-int8-mixed")
    summary = {**failed, "tflite-int8-mixed": {"status": "check failed: ..."}}
    assert walk(summary, ["tflite-int8"], ["tflite-int8-mixed"]) == (["tflite-int8-mixed"], None, "tflite-int16x8")
    # a requested rung is read, not converted; a rung left by an earlier export is not this export's
    summary["tflite-int16x8"] = {"status": "ok"}
    assert walk(summary, ["tflite-int8", "tflite-int16x8"], ["tflite-int8-mixed"])[1:] == ("tflite-int16x8", None)
    assert walk(summary, ["tflite-int8"], ["tflite-int8-mixed"])[2] == "tflite-int16x8"
    summary["tflite-float16"] = {"status": "check failed: ..."}
    summary["tflite-int16x8"]["status"] = "export failed: ..."
    assert walk(summary, ["tflite-int8"], list(LADDER)) == (list(LADDER), None, None)


def test_int8_that_loses_weights_is_recovered_by_keeping_the_worst_layers_in_float(tmp_path):
    from edgetl.runtime import load_model, read_metadata, verify_model
    from edgetl.runtime.self_check import self_check

    run_dir = _constructed_run(tmp_path, "weights")
    config = ExportConfig(
        formats=("tflite-int8",), num_calibration_images=15, bias_correction=False, fidelity_images_per_class=30
    )
    results = {r.format: r for r in export_run(run_dir, config, progress=False)}
    assert list(results) == ["tflite-int8", "tflite-int8-mixed"]  # recovered at the first rung: 16x8 not tried
    summary = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
    assert "class 'blue' 100.0 points lower" in results["tflite-int8"].status
    assert summary["tflite-int8"]["ladder"] == {"tried": ["tflite-int8-mixed"], "recovered_by": "tflite-int8-mixed"}

    mixed = summary["tflite-int8-mixed"]
    assert results["tflite-int8-mixed"].ok and mixed["status"] == "ok" and mixed["rung_for"] == ["tflite-int8"]
    assert mixed["class_fidelity"]["failed"] == [] and mixed["test_accuracy"] == 1.0
    ranking = mixed["layer_ranking"]
    assert [r["op"] for r in ranking[:2]] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert [r["rmse_per_scale"] for r in ranking] == sorted((r["rmse_per_scale"] for r in ranking), reverse=True)
    assert "rmse/scale" in mixed["ranking_metric"]
    # One layer in float is not enough (the search says so), two are: the features layer is one of them.
    steps = mixed["float_layer_steps"]
    assert [s["float_layers"] for s in steps] == [1, 2] and steps[0]["status"].startswith("check failed")
    assert mixed["float_layers"] == [r["tensor"] for r in ranking[:2]]
    assert any("features" in name and "head" not in name for name in mixed["float_layers"])
    assert mixed["bias_correction"] is False and mixed["num_calibration_images"] == 15

    # A real artifact: uint8 input like tflite-int8, its metadata, its golden inputs, and it answers right.
    path = run_dir / mixed["path"]
    verify_model(path)
    meta = read_metadata(path)
    assert meta["format"] == "tflite-int8-mixed" and meta["input"]["dtype"] == "uint8"
    assert meta["float_layers"] == mixed["float_layers"]
    model = load_model(path, 1)
    assert model.input_dtype == np.uint8
    assert self_check(model).ok
    images = np.stack([np.full((8, 8, 3), RGB[c], np.uint8) for c in CLASSES])
    images[:, 0, 0, 0] = 255
    assert model.predict(images).argmax(1).tolist() == [0, 1, 2]
    assert mixed["size_bytes"] > summary["tflite-int8"]["size_bytes"]  # float weights cost bytes


@pytest.mark.parametrize("io_type,dtype", [("float32", np.float32), ("int8", np.int8)])
def test_mixed_file_keeps_the_io_type_asked_for(tmp_path, io_type, dtype):
    from edgetl.runtime import load_model

    run_dir = _constructed_run(tmp_path, "weights")
    config = ExportConfig(
        formats=("tflite-int8-mixed",),
        io_type=io_type,
        num_calibration_images=15,
        bias_correction=False,
        fidelity_images_per_class=30,
    )
    (result,) = export_run(run_dir, config, progress=False)  # asked for by name: the search runs on its own
    assert result.ok and result.io_type == io_type
    assert load_model(result.path, 1).input_dtype == dtype


# ---------------------------------------------------------------------------------------------
# the ladder in a sweep on Ray: the same plan (edgetl.sweep.plan.PointPlan.next_rung) as in-process


def _fine_distinction_photos(root: Path, pairs: int = 30, delta: int = 4) -> Path:
    """Two classes that differ by a brightness step of `delta` (the same daisy photos, 96 px): the float head
    learns the difference on the images it was fitted to, dynamic-range weights lose it for one class."""
    from PIL import Image

    photos = sorted((FLOWERS / "daisy").iterdir())[:pairs]
    for name in ("brighter", "plain"):
        (root / name).mkdir(parents=True)
    for i, path in enumerate(photos):
        pixels = np.asarray(Image.open(path).convert("RGB").resize((96, 96), Image.BILINEAR), np.int16)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "plain" / f"{i:03d}.png")
        Image.fromarray(np.clip(pixels + delta, 0, 255).astype(np.uint8)).save(root / "brighter" / f"{i:03d}.png")
    return root


def _ladder_sweep_args(photos: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sweep", "--image_dir", str(photos), "--weights_dir", str(WEIGHTS_DIR), "--backbones", "v1",
        "--alphas", "0.25", "--resolutions", "96", "--formats", "tflite-dynamic", "--how_many_training_steps",
        "300", "--calibration_images", "4", "--min_timed_runs", "5", "--min_timed_seconds", "0",
        "--bottleneck_dir", str(out.parent / "bottlenecks"), "--output_dir", str(out), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_the_ladder_climbs_on_ray_its_rungs_benchmarked_as_in_process(tmp_path, monkeypatch):
    from test_faults import results, stages

    from edgetl.cli.main import main
    from edgetl.measure.results import read_results

    photos = _fine_distinction_photos(tmp_path / "photos")
    out, in_process = tmp_path / "ray" / "run", tmp_path / "in_process" / "run"
    reference = subprocess.Popen(  # the same sweep in-process, in a fresh process, beside the Ray one
        [sys.executable, "-m", "edgetl.cli.main", *_ladder_sweep_args(photos, in_process)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert main(_ladder_sweep_args(photos, out, "--ray")) in (0, 1)
    _, stderr = reference.communicate(timeout=900)
    assert reference.returncode in (0, 1), stderr[-3000:]

    point = out / "points" / "v1-a0.25-r96"
    summary = json.loads((point / "artifacts" / "export.json").read_text())["formats"]
    assert "class 'brighter'" in summary["tflite-dynamic"]["status"]  # the per-class gate fired
    ladder = summary["tflite-dynamic"]["ladder"]
    assert ladder["tried"] and ladder["recovered_by"] == ladder["tried"][-1]
    for rung in ladder["tried"]:  # each rung an export unit on Ray, then a benchmark
        assert summary[rung]["rung_for"] == ["tflite-dynamic"] and (point / summary[rung]["path"]).is_file()
    rows = read_results(out)
    assert [r.format for r in rows] == ["tflite-dynamic", *ladder["tried"]]
    assert all(r.latency_ms_p50 > 0 and r.status == summary[r.format]["status"] for r in rows)
    assert rows[-1].ok and rows[-1].class_fidelity["failed"] == []
    units = json.loads((out / "ray_units.json").read_text())["units"]
    for rung in ladder["tried"]:
        assert [u["unit"] for u in units if u["format"] == rung] == ["export", "bench"]
    # Ray's and the in-process executor's rows are the same (latency and memory aside), rungs included.
    assert results(out) == results(in_process)

    # In-process, the same command finds the ladder finished: nothing converted or measured again.
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("EDGETL_TRACE", str(trace))
    assert main(_ladder_sweep_args(photos, out)) in (0, 1)
    assert stages(trace) == ["report"]
