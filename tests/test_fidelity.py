"""Per-class fidelity and the per-class gate (edgetl.export.fidelity): statistics cross-checked against
scipy and statsmodels, the image selection, and a constructed model whose int8 file provably loses one class.

The constructed model is three numbers per image (the channel means), a Dense layer that scales red and
green by 40 and blue by 0.01, and a softmax head: class "blue" is decided by the tiny blue feature alone.
Full int8 quantizes that Dense layer's output with one scale per tensor, set by the red/green range (about
40 per step), so the blue feature rounds to 0 and every "blue" image flips, while red and green stay right;
int16 activations (about 0.3 per step) keep it. Real TensorFlow, LiteRT and the export path, a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgetl.export import ExportConfig, ExportError, check_status
from edgetl.export.fidelity import class_table, gate_problems, select
from edgetl.stats import holm_adjust

# ---------------------------------------------------------------------------------------------
# statistics against scipy / statsmodels (test-only dependencies: the `test` extra)


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 10, 37):
        for _ in range(20):
            p = rng.uniform(0, 1, m) ** rng.uniform(1, 6)
            p[rng.uniform(size=m) < 0.2] = 1.0
            expected = multipletests(p, alpha=0.05, method="holm")[1]
            np.testing.assert_allclose(holm_adjust(p.tolist()), expected, rtol=1e-12, atol=0)
    assert holm_adjust([]) == []
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@pytest.mark.parametrize("bad", [[-0.1], [1.5], [float("nan")], ["0.1"], [True]])
def test_holm_refuses_non_probabilities(bad):
    with pytest.raises(ValueError, match=r"p_values\[0\] must be a probability in \[0, 1\]"):
        holm_adjust(bad)


def test_class_table_matches_scipy_and_statsmodels():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    mcnemar = pytest.importorskip("statsmodels.stats.contingency_tables").mcnemar
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c", "d"]
    labels = rng.integers(0, 4, 900)
    float_pred = np.where(rng.uniform(size=900) < 0.85, labels, rng.integers(0, 4, 900))
    artifact = float_pred.copy()
    flip = (labels == 2) & (float_pred == 2) & (rng.uniform(size=900) < 0.15)  # class c loses ~13 points
    artifact[flip] = 0
    noise = rng.uniform(size=900) < 0.02
    artifact[noise] = rng.integers(0, 4, int(noise.sum()))
    rows = class_table(labels, float_pred, artifact, classes, max_class_drop=3.0)
    assert [r["class"] for r in rows] == classes
    for i, row in enumerate(rows):
        mask = labels == i
        a, f = artifact[mask] == i, float_pred[mask] == i
        b01, b10 = int((a & ~f).sum()), int((~a & f).sum())
        assert (row["flipped_right"], row["flipped_wrong"], row["n"]) == (b01, b10, int(mask.sum()))
        table = [[int((a & f).sum()), b01], [b10, int((~a & ~f).sum())]]
        assert row["p_value"] == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
        if b01 + b10:
            assert row["p_value"] == pytest.approx(binomtest(min(b01, b10), b01 + b10, 0.5).pvalue, rel=1e-12)
        assert row["drop_points"] == pytest.approx(100 * (f.mean() - a.mean()))
    holm = multipletests([r["p_value"] for r in rows], method="holm")[1]
    assert [r["p_holm"] for r in rows] == pytest.approx(holm.tolist(), rel=1e-12)
    assert [r["failed"] for r in rows] == [False, False, True, False]


def test_gate_needs_both_a_drop_beyond_the_tolerance_and_significance_after_holm():
    labels = np.repeat([0, 1], 100)
    truth = labels.copy()
    # class 0: 6 of 100 lost, none gained: exact p = 2 * 0.5**6 = 0.03125, Holm over 2 classes -> 0.0625
    artifact = truth.copy()
    artifact[:6] = 1
    rows = class_table(labels, truth, artifact, ["x", "y"], max_class_drop=3.0)
    assert rows[0]["p_value"] == pytest.approx(0.03125) and rows[0]["p_holm"] == pytest.approx(0.0625)
    assert not rows[0]["failed"]  # 6 points, but not significant once corrected for two classes
    artifact[:8] = 1  # 8 lost: p = 0.0078, Holm 0.0156 < 0.05
    rows = class_table(labels, truth, artifact, ["x", "y"], max_class_drop=3.0)
    assert rows[0]["failed"] and not rows[1]["failed"]
    assert not class_table(labels, truth, artifact, ["x", "y"], max_class_drop=8.0)[0]["failed"]  # 8 is not > 8
    entry = {"max_class_drop": 3.0, "classes": rows}
    (problem,) = gate_problems(entry)
    assert problem.startswith("class 'x' 8.0 points lower than the float model (92.0% vs 100.0% on 100 images")
    assert "8 flipped wrong / 0 right" in problem
    keep = np.ones(10, bool)
    status = check_status("tflite-int8", keep, keep, None, 1.0, class_fidelity=entry)
    assert status.startswith("check failed: class 'x' 8.0 points lower")
    assert check_status("tflite-int8", keep, keep, None, 1.0, class_fidelity={}) == "ok"


# ---------------------------------------------------------------------------------------------
# which images


def _record(path, label, split, digest):
    return SimpleNamespace(path=Path(path), label_index=label, split=split, content_hash=digest)


def test_select_takes_test_images_first_then_others_by_hash_never_calibration_images():
    records = [
        _record("t0", 0, "testing", "h-t0"),
        _record("t1", 1, "testing", "h-t1"),
        _record("t2", 0, "testing", "h-calib"),  # same content as a calibration image
        _record("a", 0, "training", "h-c"),
        _record("b", 0, "training", "h-a"),
        _record("c", 0, "validation", "h-b"),
        _record("d", 0, "training", "h-calib"),
        _record("e", 1, "training", "h-t1"),  # a duplicate of a test image: counted once
        _record("f", 1, "training", "h-z"),
    ]
    rows, extra, excluded = select(records, ["t0", "t1", "t2"], ["x", "y"], 3, {"h-calib"})
    assert rows.tolist() == [0, 1]
    assert [str(r.path) for r in extra] == ["b", "c", "f"]  # class x: 1 test + 2 by hash; class y: 1 + 1
    assert excluded == 2
    rows, extra, _ = select(records, ["t0", "t1", "t2"], ["x", "y"], 1, set())
    assert rows.tolist() == [0, 1] and extra == []


def test_export_config_checks_the_new_fields():
    assert ExportConfig().max_class_drop == 3.0 and ExportConfig().fidelity_images_per_class > 0
    assert ExportConfig(fidelity_images_per_class=0).fidelity_images_per_class == 0
    for bad in (-1, 101, "3", True):
        with pytest.raises(ExportError, match=r"max_class_drop must be a number in \[0, 100\]"):
            ExportConfig(max_class_drop=bad)
    for bad in (-1, 2.5, True, None):
        with pytest.raises(ExportError, match="fidelity_images_per_class must be a whole number >= 0"):
            ExportConfig(fidelity_images_per_class=bad)
    with pytest.raises(ExportError, match="quantization_ladder must be one of"):
        ExportConfig(quantization_ladder="off")


# ---------------------------------------------------------------------------------------------
# a model whose int8 file provably loses one class

CLASSES = ["blue", "green", "red"]
RGB = {"red": (200, 50, 20), "green": (50, 200, 20), "blue": (128, 128, 200)}
SIZE = 8


def _constructed_run(root: Path, kind: str = "activations") -> Path:
    """A run directory of a constructed model whose int8 file loses class "blue".

    "activations" (the module's docstring): the blue feature is lost to the int8 *activation* step of the
    Dense layer's output, so keeping layers in float (the ladder's first rung) cannot save it and int16
    activations do. "weights": the blue evidence is 64 weights of 0.0035 (one per blue pixel) in a kernel
    column whose largest weight, 1.0 on a pixel that is 255 in every image, sets its int8 step to 1/127:
    every 0.0035 rounds to 0, so int8 loses it in the *weights*, and that layer kept in float keeps it.
    """
    import keras
    from PIL import Image

    from edgetl import __version__

    rng = np.random.default_rng(0)
    image_dir = root / "photos"
    for name, rgb in RGB.items():
        (image_dir / name).mkdir(parents=True)
        for i in range(40):
            pixels = np.clip(np.array(rgb) + rng.integers(-15, 16, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            if kind == "weights":
                pixels[0, 0, 0] = 255  # the constant pixel that carries the large weight
            Image.fromarray(pixels).save(image_dir / name / f"{name}{i:02d}.png")
    image = keras.Input((SIZE, SIZE, 3), name="image")
    if kind == "weights":
        flat = keras.layers.Flatten(name="flatten")(image)
        features = keras.layers.Dense(2, name="features")(flat)
        kernel = np.zeros((SIZE, SIZE, 3, 2), np.float32)
        kernel[:, :, 2, 0] = 0.0035  # blue evidence: 0.0035 * sum(blue) = 45 on blue images, 4.5 on the others
        kernel[0, 0, 0, 0] = 1.0  # 255 on every image, taken back by the bias
        kernel[:, :, 0, 1], kernel[:, :, 1, 1] = 0.01, -0.01  # red minus green: about +-96 on red and green
        kernel[0, 0, 0, 1] = 0.0
        model_head = np.array([[1, 0, 0], [0, -1 / 20, 1 / 20]], np.float32)  # blue = f0 - 25; green, red = -+f1/20
        logits = keras.layers.Dense(3, name="head")(features)
        model = keras.Model(image, keras.layers.Softmax(name="probabilities")(logits), name="edgetl_classifier")
        model.get_layer("features").set_weights([kernel.reshape(-1, 2), np.array([-255, 0], np.float32)])
        model.get_layer("head").set_weights([model_head, np.array([-25, 0, 0], np.float32)])
    else:
        means = keras.layers.GlobalAveragePooling2D(name="pool")(image)
        features = keras.layers.Dense(3, name="features")(means)
        logits = keras.layers.Dense(3, name="head")(features)
        model = keras.Model(image, keras.layers.Softmax(name="probabilities")(logits), name="edgetl_classifier")
        diagonal = np.diag([40.0, 40.0, 0.01]).astype(np.float32)
        model.get_layer("features").set_weights([diagonal, np.zeros(3, np.float32)])
        # logits (blue, green, red): blue = 10 * (blue feature - 1); green and red = +-(g - r) / 4000
        head = np.array([[0, -1 / 4000, 1 / 4000], [0, 1 / 4000, -1 / 4000], [10, 0, 0]], np.float32)
        model.get_layer("head").set_weights([head, np.array([-10, 0, 0], np.float32)])
    run_dir = root / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    run = {
        "edgetl_version": __version__,
        "image_dir": str(image_dir.resolve()),
        "validation_percentage": 10.0,
        "testing_percentage": 30.0,
        "classes": CLASSES,
        "backbone": {"version": "v1", "alpha": 0.25, "resolution": SIZE, "weights": "none (constructed)"},
    }
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir


def test_int8_that_breaks_one_class_fails_the_gate_and_the_ladder_recovers_with_int16x8(tmp_path):
    from edgetl.export import export_run

    run_dir = _constructed_run(tmp_path)
    config = ExportConfig(
        formats=("tflite-int8", "tflite-float32"),
        num_calibration_images=15,
        bias_correction=False,
        fidelity_images_per_class=30,
    )
    results = {r.format: r for r in export_run(run_dir, config, progress=False)}
    # the ladder's rungs last: int8 with layers kept in float cannot save an activation step (below), 16x8 does
    assert list(results) == ["tflite-int8", "tflite-float32", "tflite-int8-mixed", "tflite-int16x8"]
    summary = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
    assert results["tflite-float32"].ok and "class_fidelity" not in summary["tflite-float32"]
    assert summary["tflite-float32"]["max_abs_diff"] < 1e-3  # the float model classifies every image right
    assert results["tflite-float32"].test_accuracy == 1.0

    fidelity = summary["tflite-int8"]["class_fidelity"]
    rows = {r["class"]: r for r in fidelity["classes"]}
    assert fidelity["num_images"] == 90 and fidelity["calibration_excluded"] == 15
    assert fidelity["reference"] == "the Keras model"  # this run has no float_predictions.npz
    assert rows["blue"]["n"] == 30 and rows["blue"]["float_accuracy"] == 1.0 and rows["blue"]["accuracy"] == 0.0
    assert rows["blue"]["flipped_wrong"] == 30 and rows["blue"]["failed"] and rows["blue"]["p_holm"] < 1e-8
    assert not rows["red"]["failed"] and not rows["green"]["failed"]
    assert fidelity["failed"] == ["blue"] and fidelity["worst"] == {"class": "blue", "drop_points": 100.0}
    assert "class 'blue' 100.0 points lower than the float model" in results["tflite-int8"].status

    # The first rung keeps the layers the debugger ranks worst in float (2 of 4: the cap): the blue feature is
    # still rounded away by the activation step between them, so it fails, a real artifact with its own check.
    mixed = summary["tflite-int8-mixed"]
    assert not results["tflite-int8-mixed"].ok and "class 'blue' 100.0 points lower" in mixed["status"]
    assert [s["float_layers"] for s in mixed["float_layer_steps"]] == [1, 2] and len(mixed["float_layers"]) == 2
    # The next rung, int16 activations, recovers the class.
    assert results["tflite-int16x8"].ok, results["tflite-int16x8"].status
    assert summary["tflite-int16x8"]["class_fidelity"]["failed"] == []
    assert summary["tflite-int16x8"]["rung_for"] == ["tflite-int8"]
    tried = ["tflite-int8-mixed", "tflite-int16x8"]
    assert summary["tflite-int8"]["ladder"] == {"tried": tried, "recovered_by": "tflite-int16x8"}
    assert (run_dir / "artifacts" / "tflite-int16x8.tflite").is_file()


def test_ladder_off_keeps_the_formats_asked_for(tmp_path):
    from edgetl.export import export_run

    run_dir = _constructed_run(tmp_path)
    config = ExportConfig(
        formats=("tflite-int8",),
        num_calibration_images=15,
        bias_correction=False,
        fidelity_images_per_class=30,
        quantization_ladder=False,
    )
    (result,) = export_run(run_dir, config, progress=False)
    assert result.status.startswith("check failed: accuracy") and "class 'blue' 100.0 points lower" in result.status
    summary = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
    assert list(summary) == ["tflite-int8"] and "ladder" not in summary["tflite-int8"]


# ---------------------------------------------------------------------------------------------
# results.json and report.md


def _fidelity_entry(drop: float, failed: bool) -> dict:
    rows = [
        {"class": "daisy", "n": 200, "float_accuracy": 0.9, "accuracy": 0.9 - drop / 100, "drop_points": drop,
         "flipped_wrong": 12, "flipped_right": 0, "p_value": 0.0005, "p_holm": 0.001, "failed": failed},
        {"class": "rose", "n": 200, "float_accuracy": 0.8, "accuracy": 0.8, "drop_points": 0.0,
         "flipped_wrong": 1, "flipped_right": 1, "p_value": 1.0, "p_holm": 1.0, "failed": False},
    ]  # fmt: skip
    return {"images_per_class": 200, "max_class_drop": 3.0, "alpha": 0.05, "classes": rows,
            "failed": ["daisy"] if failed else [], "worst": {"class": "daisy", "drop_points": drop}}  # fmt: skip


def test_results_json_keeps_class_fidelity_and_reads_older_files(tmp_path):
    from conftest import make_result

    from edgetl.measure.results import read_results, write_results

    row = make_result(format="tflite-int8", class_fidelity=_fidelity_entry(6.0, True))
    write_results([row, make_result()], tmp_path)
    back = read_results(tmp_path)
    assert back[0].class_fidelity == row.class_fidelity and back[1].class_fidelity == {}
    data = json.loads((tmp_path / "results.json").read_text())
    for entry in data["results"]:
        del entry["class_fidelity"]  # as written before the field existed
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert [r.class_fidelity for r in read_results(tmp_path)] == [{}, {}]


def test_report_names_the_failed_class_and_its_drop(tmp_path):
    from conftest import make_result

    from edgetl.pick.pareto import Budget, pick
    from edgetl.pick.report import write_report

    good = make_result(0.85, 5.0, format="tflite-int8", class_fidelity=_fidelity_entry(1.0, False))
    bad = make_result(
        0.86, 4.0, format="tflite-dynamic", status="check failed: class 'daisy' ...",
        class_fidelity=_fidelity_entry(6.0, True),
    )  # fmt: skip
    chosen = pick([good, bad], Budget())
    assert chosen.chosen is good  # a failed artifact is never picked, however fast
    text = write_report([good, bad], chosen, Budget(), tmp_path).read_text()
    assert "## Per-class fidelity" in text and "| daisy | -1.0 (12/0, p 0.001) |" in text
    assert (
        tmp_path / "class_fidelity.png"
    ).stat().st_size > 1000 and "![per-class fidelity](class_fidelity.png)" in text
    assert f"- `{bad.point}` tflite-dynamic: daisy -6.0 points (90.0% -> 84.0% on 200 images" in text


def test_a_sweep_benchmarks_the_ladders_rungs_recorded_with_their_key(tmp_path):
    from edgetl.features.backbones import BackboneSpec
    from edgetl.sweep.config import SweepConfig, export_keys
    from edgetl.sweep.plan import PointPlan

    spec = BackboneSpec("v1", 0.25, 128)
    config = SweepConfig(image_dir=tmp_path, output_dir=tmp_path / "out", points=(spec,))
    keys = export_keys(config, "trained")
    assert set(keys) == set(config.export.formats) | {"tflite-int8-mixed", "tflite-int16x8", "tflite-float16"}
    artifacts = tmp_path / "out" / "points" / spec.id / "artifacts"
    artifacts.mkdir(parents=True)
    formats = {f: {"status": "ok"} for f in config.export.formats}
    formats["tflite-int8"] = {"status": "check failed: class 'x' ..."}
    formats["tflite-int16x8"] = {"status": "ok", "rung_for": ["tflite-int8"]}
    (artifacts / "export.json").write_text(json.dumps({"formats": formats}))
    state = {"train": "trained", "export": dict(keys), "bench": {}}
    plan = PointPlan(config, spec, None, "trained", keys, state, None)
    assert plan.bench_formats() == [*config.export.formats, "tflite-int16x8"]
    state["export"]["tflite-int16x8"] = "an older key"  # a rung left by an earlier export: not this sweep's
    assert plan.bench_formats() == list(config.export.formats)
