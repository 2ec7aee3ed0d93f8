"""Calibration sensitivity (`--calibration_repeats K`, edgetl.export.repeats): each calibrated format converted
and checked again on disjoint calibration sets, the spread recorded in export.json, results.json and report.md.

The export runs on the constructed model of tests/test_fidelity.py whose int8 file loses class "blue" whatever
its calibration images (its weights round the blue evidence away): every set fails alike, and says so.
"""

from __future__ import annotations

import json

import pytest
from test_fidelity import _constructed_run

from edgetl.export import ExportConfig, ExportError
from edgetl.export.repeats import disjoint_sets, repeated, spread, summary


def test_spread_and_summary():
    assert spread([0.5, 0.75, 1.0]) == {"min": 0.5, "max": 1.0, "mean": 0.75, "sd": 0.25, "values": [0.5, 0.75, 1.0]}
    assert spread([0.8])["sd"] == 0.0 and spread([None]) == {}
    checks = [
        {"status": "ok", "test_accuracy": 0.9, "class_fidelity": {"classes": [{"class": "a", "accuracy": 0.8}],
                                                                    "worst": {"class": "a", "drop_points": 1.0}}},
        {"status": "check failed: ...", "test_accuracy": 0.8,
         "class_fidelity": {"classes": [{"class": "a", "accuracy": 0.6}], "worst": {"class": "a", "drop_points": 21}}},
    ]  # fmt: skip

    class Set:
        images = [0] * 4
        manifest = {"images": []}

    entry = summary(checks, [Set(), Set()])
    assert entry["repeats"] == 2 and entry["passed"] == 1 and entry["images_per_set"] == [4, 4]
    assert entry["test_accuracy"]["min"] == 0.8 and entry["class_accuracy"]["a"]["values"] == [0.8, 0.6]
    assert entry["worst_class_drop"]["max"] == 21
    assert repeated("tflite-int8") and repeated("onnx-int8") and repeated("tflite-int16x8")
    assert not repeated("tflite-int8-mixed") and not repeated("tflite-dynamic")


def test_calibration_sets_are_disjoint_and_drawn_in_order_until_the_split_runs_out(tmp_path):
    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.export import calibration as calib

    run_dir = _constructed_run(tmp_path)  # 3 classes of 40 small photos
    dataset = scan_dataset(tmp_path / "photos", SplitConfig(10, 30))
    n = 24

    def draw(used):
        return calib.build_calibration_set(dataset, 8, n, None, used)

    notes = []
    sets = disjoint_sets(draw(frozenset()), 5, draw, notes.append)
    hashes = [{e["sha256"] for e in s.manifest["images"]} for s in sets]
    training = len({r.content_hash for r in dataset.split("training")})
    assert len(sets) == -(-training // n) < 5 and notes and "disjoint set(s), not 5" in notes[0]
    assert sum(len(h) for h in hashes) == len(set().union(*hashes)) == training  # disjoint, every image once
    again = disjoint_sets(sets[0], 5, draw, [].append)
    assert [s.manifest["images"] for s in sets] == [s.manifest["images"] for s in again]  # deterministic
    labels = [e["label"] for e in sets[1].manifest["images"]]
    assert max(labels.count(c) for c in set(labels)) - min(labels.count(c) for c in set(labels)) <= 1  # balanced
    assert run_dir.is_dir()


def test_export_config_and_sweep_key():
    from edgetl.features.backbones import BackboneSpec
    from edgetl.sweep.config import SweepConfig, export_key

    assert ExportConfig().calibration_repeats == 1
    for bad in (0, 21, 2.5, True):
        with pytest.raises(ExportError, match="calibration_repeats must be a whole number"):
            ExportConfig(calibration_repeats=bad)
    common = {"image_dir": ".", "output_dir": "out", "points": (BackboneSpec("v1", 0.25, 128),)}
    config = SweepConfig(**common)
    again = SweepConfig(**common, export=ExportConfig(calibration_repeats=1))
    more = SweepConfig(**common, export=ExportConfig(calibration_repeats=3))
    assert export_key(config, "t", "tflite-int8") == export_key(again, "t", "tflite-int8")  # earlier keys kept
    assert export_key(config, "t", "tflite-int8") != export_key(more, "t", "tflite-int8")


def test_edgetl_export_calibration_repeats_records_and_prints_the_spread(tmp_path, capsys):
    from edgetl.cli.main import main
    from edgetl.runtime import read_metadata

    run_dir = _constructed_run(tmp_path, "weights")
    flags = "--format tflite-int8,tflite-dynamic --calibration_images 6 --calibration_repeats 3"
    args = [
        "export",
        "--run",
        str(run_dir),
        *flags.split(),
        "--fidelity_images_per_class",
        "30",
        "--quantization_ladder",
        "off",
    ]
    assert main(args) == 1  # int8 fails its check, on every set
    out = capsys.readouterr().out
    assert "tflite-int8: 3 calibration sets, 0 pass; test accuracy 67.5% .. 67.5% (sd 0.0 points)" in out
    assert "widest class" in out and "tflite-dynamic: 3 calibration sets" not in out  # dynamic: no calibration
    summary = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
    entry = summary["tflite-int8"]["calibration_repeats"]
    assert "calibration_repeats" not in summary["tflite-dynamic"]
    assert entry["repeats"] == 3 and entry["images_per_set"] == [6, 6, 6] and entry["passed"] == 0
    assert len(set(entry["manifest_sha256"])) == 3  # three different sets ...
    meta = read_metadata(run_dir / summary["tflite-int8"]["path"])
    assert entry["manifest_sha256"][0] == meta["calibration_manifest_sha256"]  # ... the first is the artifact's
    assert entry["test_accuracy"]["values"] == [summary["tflite-int8"]["test_accuracy"]] * 3
    assert entry["class_accuracy"]["blue"]["values"] == [0.0] * 3 and entry["class_accuracy"]["red"]["min"] == 1.0
    assert all(s.startswith("check failed") for s in entry["statuses"])
    # the per-class images leave out every set's calibration images, of both formats (one fidelity set)
    assert summary["tflite-int8"]["class_fidelity"]["calibration_excluded"] == 18
    assert summary["tflite-dynamic"]["class_fidelity"]["calibration_excluded"] == 18
    assert not [p.name for p in (run_dir / "artifacts").iterdir() if p.name.startswith(".")]  # repeats deleted


def test_results_and_report_carry_the_spread(tmp_path):
    from conftest import make_result

    from edgetl.measure.results import read_results, write_results
    from edgetl.pick.pareto import Budget, pick
    from edgetl.pick.report import write_report

    rep = {"repeats": 3, "passed": 2, "test_accuracy": spread([0.9, 0.85, 0.88]),
           "class_accuracy": {"daisy": spread([0.9, 0.7, 0.8]), "rose": spread([0.8, 0.8, 0.81])}}  # fmt: skip
    row = make_result(0.9, 5.0, format="tflite-int8", calibration_repeats=rep)
    write_results([row, make_result()], tmp_path)
    assert [r.calibration_repeats for r in read_results(tmp_path)] == [rep, {}]
    data = json.loads((tmp_path / "results.json").read_text())
    for entry in data["results"]:
        del entry["calibration_repeats"]  # as written before the field existed
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert [r.calibration_repeats for r in read_results(tmp_path)] == [{}, {}]
    rows = [row, make_result()]
    text = write_report(rows, pick(rows, Budget()), Budget(), tmp_path).read_text()
    assert "## Calibration sensitivity" in text
    assert f"| `{row.point}` tflite-int8 | 3 | 2 | 85.0% .. 90.0%, 2.5 points | daisy 70.0% .. 90.0% |" in text
