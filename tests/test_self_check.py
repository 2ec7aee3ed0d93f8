"""Golden inputs inside every artifact and the self-check (edgetl.runtime.golden, .self_check, edgetl.export.golden).

One real model (trained by edgetl.train on flowers photos with ImageNet weights), exported to a float and an
int8 file per runtime; then: the golden files are where docs/interfaces.md says, within the size
budget, the model bytes still verify, the readers still read labels; the self-check passes with edgetl's
pipeline and with a correct pipeline that resizes without antialiasing; each of the usual wrong pipelines is
caught and named; the self-check runs in the LiteRT and tflite-runtime device environments; a file without
golden inputs is refused with one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "label_image.py"
FORMATS = ("tflite-float32", "tflite-int8", "onnx-float32", "onnx-int8")
DEVICE_VENVS = {".venv-litert": "ai_edge_litert", ".venv-tflite-runtime": "tflite_runtime"}
# The command-line flags that make each usual mistake (edgetl.runtime.self_check.MISTAKES).
MISTAKE_FLAGS = {
    "bgr": ["--color_order", "BGR"],
    "unit_range": ["--input_mean", "0", "--input_std", "255"],
    "pm1_range": ["--input_mean", "127.5", "--input_std", "127.5"],
    "double_normalization": ["--input_mean", str(127.5 * 128.5), "--input_std", str(127.5**2)],
    "nearest_resize": ["--resize", "nearest"],
    "center_crop": ["--crop", "center"],
    "rotation": ["--exif_orientation", "ignore"],
}


def _label_image(*args, python=sys.executable) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(python), str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def golden_artifacts(tmp_path_factory) -> dict[str, Path]:
    """A real model (`edgetl.train`: MobileNet V1 0.25 @96 with its ImageNet weights, a head on 40 flowers photos
    per class, 3 classes) exported to a float and an int8 file per runtime. A random-weight backbone will not
    do here: its answers swing under any resize, so a correct client's would fail a tolerance meant for
    trained models."""
    from conftest import FLOWERS, WEIGHTS_DIR, copy_subset

    from edgetl.export import ExportConfig, export_run
    from edgetl.features.backbones import BackboneSpec
    from edgetl.features.bottlenecks import FeatureConfig
    from edgetl.train.run import TrainConfig, train
    from edgetl.train.tuning import TuneConfig

    if not (WEIGHTS_DIR / "mobilenet_2_5_224_tf_no_top.h5").is_file():
        pytest.fail(f"the ImageNet weights are missing from {WEIGHTS_DIR}")
    root = tmp_path_factory.mktemp("golden")
    photos = copy_subset(FLOWERS, root / "photos", ["daisy", "roses", "tulips"], 40)
    config = TrainConfig(
        image_dir=photos,
        output_dir=root / "run",
        backbone=BackboneSpec("v1", 0.25, 96),
        features=FeatureConfig(weights_dir=WEIGHTS_DIR, bottleneck_dir=root / "cache"),
        tune=TuneConfig(search=False),
    )
    train(config)
    results = export_run(root / "run", ExportConfig(formats=FORMATS, num_calibration_images=16), progress=False)
    assert [r.status for r in results] == ["ok"] * len(FORMATS), [r.status for r in results]
    return {r.format: r.path for r in results}


@pytest.mark.slow
def test_golden_files_are_embedded_within_budget_and_the_model_still_verifies(golden_artifacts):
    from edgetl.export.run import read_export_summary
    from edgetl.runtime import load_model, verify_model
    from edgetl.runtime.golden import BUDGET_BYTES, MIN_IMAGES, RECORD_FILE, read_golden
    from edgetl.runtime.metadata import _onnx_metadata_props
    from edgetl.runtime.standard_metadata import read_standard_metadata

    summary = read_export_summary(next(iter(golden_artifacts.values())).parents[1])
    sources = {tuple(summary[f]["golden"]["sources"]) for f in FORMATS}
    assert len(sources) == 1  # one golden set per run, shared by its artifacts
    for fmt, path in golden_artifacts.items():
        verify_model(path)  # the record was written after the answers: the model bytes are the ones recorded
        model = load_model(path)
        assert model.labels == ["daisy", "roses", "tulips"]
        record, photos = read_golden(path)
        assert MIN_IMAGES <= len(photos) == len(record["images"]) and summary[fmt]["golden"]["images"] == len(photos)
        assert {e["label"] for e in record["images"]} == {"daisy", "roses", "tulips"}  # spread over the classes
        assert 0 < summary[fmt]["golden"]["bytes"] <= BUDGET_BYTES, (fmt, summary[fmt]["golden"])
        assert record["preprocessing"]["color_order"] == "RGB" and record["preprocessing"]["size"] == [96, 96]
        assert record["computed_by"]["runtime"] in ("ai_edge_litert", "onnxruntime")
        names = [RECORD_FILE] + [e["file"] for e in record["images"]]
        if fmt.startswith("tflite"):
            md = read_standard_metadata(path)
            assert [f["name"] for f in md["associated_files"]] == ["edgetl.json", *names]
            assert set(names) <= set(md["packed_files"]) and md["labels"] == model.labels
        else:
            props = _onnx_metadata_props(path)
            assert set(names) <= set(props) and json.loads(props[RECORD_FILE]) == record
        # The record's answers are this file's own, recomputed now with edgetl's pipeline.
        from edgetl.runtime.golden import reference_inputs

        probs = model.predict(reference_inputs(photos, model.input_size), batch_size=1)
        for entry, p in zip(record["images"], probs):
            np.testing.assert_allclose(p[entry["top_k"]["indices"]], entry["top_k"]["probabilities"], atol=1e-6)


@pytest.mark.slow
def test_each_wrong_pipeline_is_caught_and_named_and_correct_ones_pass(golden_artifacts):
    from edgetl.runtime import load_model
    from edgetl.runtime.self_check import MISTAKES, Pipeline, self_check

    missed = []
    for fmt, path in golden_artifacts.items():
        model = load_model(path)
        for pipeline in (Pipeline(), Pipeline(resize="bilinear_no_antialias")):
            result = self_check(model, pipeline)
            print(f"{fmt} correct {pipeline.resize}: {result.comparison.max_diff:.3f}")
            assert result.ok, (fmt, pipeline, result.verdict())
        for name, (_, pipeline) in MISTAKES.items():
            result = self_check(model, pipeline)
            print(f"{fmt} {name}: {result.comparison.max_diff:.3f} {result.diagnosis and result.diagnosis.closest}")
            if result.ok or name not in result.diagnosis.closest:  # int8 inputs can tie the range mistakes
                missed.append((fmt, name, result.verdict()))
    assert not missed, missed


@pytest.mark.slow
@pytest.mark.parametrize("mistake", list(MISTAKE_FLAGS))
def test_command_line_exit_codes_and_one_line_verdict(golden_artifacts, mistake):
    from edgetl.runtime.self_check import MISTAKES

    path = golden_artifacts["tflite-int8"]
    proc = _label_image("--self_check", path, *MISTAKE_FLAGS[mistake], "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line, doc = proc.stdout.splitlines()
    assert line.startswith("self-check FAILED") and "your pipeline matches these outputs if it" in line, line
    # On a uint8 input the three range mistakes feed the same all-but-black tensor: tied, all named.
    closest = json.loads(doc)["diagnosis"]["closest"]
    assert mistake in closest and MISTAKES[closest[0]][0] in line, line


@pytest.mark.slow
@pytest.mark.parametrize("venv", list(DEVICE_VENVS))
def test_self_check_in_the_device_environments(golden_artifacts, venv):
    python = REPO / venv / "bin" / "python"
    if not python.exists():
        message = f"{REPO / venv} does not exist: run tools/make_device_venvs.sh"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    for fmt in ("tflite-float32", "tflite-int8"):
        ok = _label_image("--self_check", golden_artifacts[fmt], python=python)
        assert ok.returncode == 0 and ok.stdout.startswith("self-check passed"), ok.stdout + ok.stderr
        bad = _label_image("--self_check", golden_artifacts[fmt], "--color_order", "BGR", python=python)
        assert bad.returncode == 1 and "swaps R and B" in bad.stdout, bad.stdout + bad.stderr
    onnx = _label_image("--self_check", golden_artifacts["onnx-int8"], python=python)
    assert onnx.returncode == 2 and "onnxruntime" in onnx.stderr  # no onnxruntime on these devices


@pytest.mark.slow
def test_edgetl_label_self_check(golden_artifacts, capsys):
    from edgetl.cli.main import main

    assert main(["label", "--self_check", str(golden_artifacts["onnx-float32"])]) == 0
    assert capsys.readouterr().out.startswith("self-check passed")
    assert main(["label", "--self_check", str(golden_artifacts["onnx-float32"]), "--crop", "center"]) == 1
    assert "center-crops to a square" in capsys.readouterr().out


@pytest.mark.slow
def test_an_apps_observed_answers_are_checked_and_diagnosed(golden_artifacts, tmp_path):
    """An app reports its answers on the golden images (--observed): here, those of a BGR pipeline."""
    from edgetl.runtime import load_model
    from edgetl.runtime.golden import read_golden
    from edgetl.runtime.self_check import Pipeline, run_pipeline

    path = golden_artifacts["tflite-float32"]
    observed = run_pipeline(load_model(path), read_golden(path)[1], Pipeline(color_order="BGR"))
    (tmp_path / "app.json").write_text(json.dumps({"probabilities": observed.tolist()}))
    proc = _label_image("--self_check", path, "--observed", tmp_path / "app.json", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout.splitlines()[1])
    assert verdict["diagnosis"]["best"] == "bgr" and not verdict["ok"]


def test_a_file_without_golden_inputs_is_refused_in_one_line(tiny_models):
    proc = _label_image("--self_check", tiny_models.float_tflite)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = [x for x in proc.stderr.splitlines() if not x.startswith("INFO: ")]  # LiteRT's XNNPACK note
    assert line.startswith("label_image --self_check: error:") and "carries no golden inputs" in line


def test_pipeline_values_are_checked_and_resizes_agree_when_upscaling():
    from PIL import Image

    from edgetl.runtime.self_check import Pipeline, _bilinear_no_antialias

    with pytest.raises(ValueError, match="color_order must be one of RGB, BGR"):
        Pipeline(color_order="GRB")
    with pytest.raises(ValueError, match="std must not be 0"):
        Pipeline(std=0.0)
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    ours = _bilinear_no_antialias(small, 64).astype(int)
    pillow = np.asarray(small.resize((64, 64), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pillow).max() <= 1  # upscaling: no antialiasing filter to differ by


def _mediapipe_answers(model_path: Path, images: list[Path], num_classes: int) -> np.ndarray:
    """MediaPipe Tasks' ImageClassifier on `images` (tools/client_check.py: Pillow decodes with EXIF applied,
    MediaPipe resizes and normalizes by the file's metadata): its scores as (N, classes)."""
    python = REPO / ".venv-mediapipe" / "bin" / "python"
    if not python.exists():
        message = f"{python} does not exist: run tools/make_client_venvs.sh"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    cmd = [str(python), str(REPO / "tools" / "client_check.py"), "--json", "--top_k", str(num_classes)]
    proc = subprocess.run(
        [*cmd, "--model_file", str(model_path), "--", *map(str, images)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (entry,) = json.loads(proc.stdout)["models"]
    out = np.zeros((len(images), num_classes))
    for i, prediction in enumerate(entry["predictions"]):
        for category in prediction["top"]:
            out[i, category["index"]] = category["score"]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite-float32", "tflite-int8"])
def test_mediapipe_as_an_app_passes_and_its_bgr_input_is_caught(golden_artifacts, fmt, tmp_path):
    """A real app: MediaPipe Tasks resizes the golden photos its own way (no antialiasing) and passes the
    self-check; the same photos handed to it with R and B swapped are caught and diagnosed as BGR."""
    from PIL import Image

    from edgetl.runtime import load_model
    from edgetl.runtime.golden import decode, read_golden
    from edgetl.runtime.self_check import self_check

    path = golden_artifacts[fmt]
    model = load_model(path)
    _, photos = read_golden(path)
    as_stored, swapped = [], []
    for i, data in enumerate(photos):
        as_stored.append(tmp_path / f"golden_{i}.jpg")
        as_stored[-1].write_bytes(data)  # the app decodes the JPEG itself (client_check: EXIF applied)
        swapped.append(tmp_path / f"bgr_{i}.png")
        Image.fromarray(np.asarray(decode(data))[..., ::-1]).save(swapped[-1])  # lossless, upright
    ok = self_check(model, observed=_mediapipe_answers(path, as_stored, model.num_classes))
    assert ok.ok, ok.verdict()
    bad = self_check(model, observed=_mediapipe_answers(path, swapped, model.num_classes))
    assert not bad.ok and bad.diagnosis.best == "bgr", bad.verdict()
    print(f"\n{fmt}: MediaPipe: {ok.verdict()}\n{fmt}: MediaPipe fed BGR: {bad.verdict()}")


def _device_bench():
    from edgetl.measure import device_bench  # the device benchmark (tools/device_bench.py is its shim)

    return device_bench


@pytest.mark.slow
def test_device_bench_self_check_first(golden_artifacts, tiny_models):
    check = _device_bench().self_check_one(golden_artifacts["tflite-int8"])
    assert check["status"] == "ok" and check["max_abs_probability_diff"] <= check["tolerance"], check
    older = _device_bench().self_check_one(tiny_models.float_tflite)  # exported before golden inputs
    assert older["status"].startswith("not run:") and "no golden inputs" in older["status"]


def test_device_report_flags_answers_that_diverge_from_the_hosts(tmp_path):
    from conftest import make_result

    from edgetl.pick.device import write_device_reports
    from edgetl.pick.pareto import Budget, PickConfig

    host = [make_result(0.9, 5.0, 2.0, point="p", format=f, num_threads=1) for f in ("tflite-float32", "tflite-int8")]
    timing = {"num_threads": 1, "status": "ok", "latency_ms_p50": 5.0, "latency_ms_p90": 5.5, "latency_ms_p99": 6.0}
    timing["latency_ms_mean"] = 5.2
    diverged = {
        "status": "diverged",
        "max_abs_probability_diff": 0.41,
        "tolerance": 0.2,
        "top1_agree": 3,
        "num_images": 5,
    }
    rows = [
        {**timing, "point": "p", "format": "tflite-float32", "self_check": {"status": "ok"}},
        {**timing, "point": "p", "format": "tflite-int8", "self_check": diverged, "agreement_with_host": 0.8},
    ]
    path = tmp_path / "device-phone.json"
    path.write_text(json.dumps({"kind": "edgetl-device-results", "device": {"name": "phone"}, "results": rows}))
    section = "\n".join(write_device_reports(tmp_path, host, [path], Budget(), PickConfig(), 1))
    assert section.count("Diverges from the host") == 1
    assert "`p` tflite-int8: its answers on the golden images differ from the host's by up to 0.410" in section
    assert "top-1 agreement with the host on the test images 80.0%" in section
    assert "Diverges from the host" in (tmp_path / "devices" / "phone" / "report.md").read_text()
