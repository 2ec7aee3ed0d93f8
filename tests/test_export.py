"""edgetl export: every format converts, loads, carries metadata and is checked against the float model.

Real TensorFlow / LiteRT / onnxruntime on a small real run (tests/export_fixtures.py). The expensive
part, one export of all six formats, is done once per module and shared by the tests that only read it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_fixtures import ExportRun, build_export_run, copy_run

from edgetl.export import FORMATS, ExportConfig, ExportError, ExportResult, check_status, export_run, formats_from_flags
from edgetl.export.formats import IO_TYPE_FORMATS, ON_REQUEST
from edgetl.io.files import sha256_file

pytestmark = pytest.mark.slow  # real training, conversion or sweeps: minutes

ALL = list(FORMATS)
CALIBRATION_IMAGES = 24


# ---------------------------------------------------------------------------------------------
# flags and checks: no TensorFlow


def test_format_table_is_consistent():
    for name, spec in FORMATS.items():
        assert spec.name == name and name.startswith(spec.runtime + "-")
        assert spec.suffix == (".tflite" if spec.runtime == "tflite" else ".onnx")
        assert spec.needs_calibration == (spec.quantization in ("int8", "int16x8"))
    assert {n for n, s in FORMATS.items() if s.quantized} == {
        "tflite-dynamic",
        "tflite-int8",
        "tflite-int8-mixed",
        "tflite-int16x8",
        "onnx-int8",
    }
    assert set(ON_REQUEST) <= set(FORMATS) and set(IO_TYPE_FORMATS) <= set(FORMATS)
    assert ExportConfig().formats == tuple(f for f in FORMATS if f not in ON_REQUEST)


def test_formats_from_flags():
    assert formats_from_flags("tflite", "int8") == (["tflite-int8"], [])
    names, notes = formats_from_flags("tflite,onnx", "all")
    assert names == [f for f in ALL if f not in ON_REQUEST] and notes == []  # tflite-int8-mixed: by name only
    assert formats_from_flags("tflite-int8-mixed", "all")[0] == ["tflite-int8-mixed"]
    names, notes = formats_from_flags("onnx, tflite", "float16,int8")
    assert names == ["onnx-int8", "tflite-float16", "tflite-int8"]
    assert len(notes) == 1 and "onnx + float16" in notes[0]
    names, notes = formats_from_flags("onnx", "float32,dynamic")
    assert names == ["onnx-float32"] and "onnx + dynamic" in notes[0]
    assert formats_from_flags("tflite-int8,onnx-float32", "all")[0] == ["tflite-int8", "onnx-float32"]


@pytest.mark.parametrize(
    "fmt,quant,needle",
    [
        ("tflite", "int9", "unknown --quantize 'int9'; valid: float32, float16, dynamic, int8, int16x8 or all"),
        ("coreml", "int8", "unknown --format 'coreml'; valid: tflite, onnx"),
        ("onnx", "float16", "nothing to export"),
        ("", "int8", "--format is empty"),
    ],
)
def test_formats_from_flags_errors(fmt, quant, needle):
    with pytest.raises(ExportError, match=None) as e:
        formats_from_flags(fmt, quant)
    assert needle in str(e.value)


def _masks(n: int, keras_right: int, lost: int, gained: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(artifact, keras) correctness on n images: the artifact loses `lost` of Keras' right answers and
    gets `gained` of its wrong ones right."""
    keras = np.arange(n) < keras_right
    artifact = keras.copy()
    artifact[:lost] = False
    artifact[keras_right : keras_right + gained] = True
    return artifact, keras


def test_check_fails_only_a_significant_drop_beyond_the_tolerance():
    # 3 of 360 images lost (0.83 points): noise, whatever the agreement.
    assert check_status("tflite-int8", *_masks(360, 300, 3), None, 1.0) == "ok"
    # 36 lost, 4 gained (-8.9 points, McNemar p ~ 1e-7): a broken conversion.
    status = check_status("onnx-int8", *_masks(360, 300, 36, 4), None, 1.0)
    assert status.startswith("check failed: accuracy") and "8.9 points lower (> 1)" in status
    # the same loss on 18 images (4 of 18) is not significant: still a pass, the drop is within noise
    assert check_status("tflite-dynamic", *_masks(18, 15, 2), None, 1.0) == "ok"
    # a large allowed drop passes the broken one
    assert check_status("onnx-int8", *_masks(360, 300, 36, 4), None, 10.0) == "ok"


def test_full_agreement_float16_never_fails_and_float32_must_be_the_same_model():
    same = _masks(360, 276, 0)
    assert check_status("tflite-float16", *same, 0.057, 1.0) == "ok"  # issue 9's 10-class float16 file
    assert check_status("tflite-float32", *same, 5e-4, 1.0) == "ok"
    assert "max |probability diff| 0.002 > 0.001" in check_status("onnx-float32", *same, 2e-3, 1.0)


# ---------------------------------------------------------------------------------------------
# calibration: no TensorFlow


def test_calibration_selection_is_balanced_deterministic_and_training_only(tmp_path):
    from export_fixtures import copy_photos

    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.export import calibration as calib

    image_dir = copy_photos(tmp_path / "photos", per_class=12)
    dataset = scan_dataset(image_dir, SplitConfig(10, 30))
    a = calib.build_calibration_set(dataset, 32, 9)
    b = calib.build_calibration_set(dataset, 32, 9)
    assert a.manifest == b.manifest and np.array_equal(a.images, b.images)
    assert a.images.shape == (9, 32, 32, 3) and a.images.dtype == np.float32
    labels = [e["label"] for e in a.manifest["images"]]
    assert sorted(labels.count(c) for c in dataset.classes) == [3, 3, 3]
    training = {str(r.path.relative_to(image_dir)) for r in dataset.split("training")}
    assert {e["path"] for e in a.manifest["images"]} <= training
    first = a.manifest["images"][0]
    assert first["sha256"] == sha256_file(image_dir / first["path"])
    assert a.manifest["resolution"] == 32 and a.manifest["preprocessing"]["version"] >= 1
    # asking for more than there is: every training image once, with a note
    many = calib.build_calibration_set(dataset, 32, 1000)
    assert many.manifest["num_images"] == len(training) and any("only" in n for n in many.notes)


def test_manifest_round_trip_and_relocated_dataset(tmp_path):
    from export_fixtures import copy_photos

    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.export import calibration as calib

    image_dir = copy_photos(tmp_path / "photos", per_class=10)
    built = calib.build_calibration_set(scan_dataset(image_dir, SplitConfig(10, 30)), 32, 6)
    path = calib.write_manifest(tmp_path / "m.json", built.manifest)
    again = calib.calibration_set_from_manifest(calib.load_manifest(path), 32)
    assert np.array_equal(again.images, built.images) and again.manifest == built.manifest
    # the dataset moved: relative paths + hashes still find it under the run's image_dir
    moved = tmp_path / "moved"
    image_dir.rename(moved)
    relocated = calib.calibration_set_from_manifest(calib.load_manifest(path), 32, fallback_root=moved)
    assert np.array_equal(relocated.images, built.images) and any("not found" in n for n in relocated.notes)


def test_bad_manifest_files(tmp_path):
    from edgetl.export import calibration as calib

    with pytest.raises(ExportError, match="not found"):
        calib.load_manifest(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ExportError, match="not readable JSON"):
        calib.load_manifest(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ExportError, match="not an edgetl calibration manifest"):
        calib.load_manifest(tmp_path / "y.json")


# ---------------------------------------------------------------------------------------------
# the real thing


@pytest.fixture(scope="module")
def export_run_dir(tmp_path_factory) -> ExportRun:
    return build_export_run(tmp_path_factory.mktemp("export_run"))


@pytest.fixture(scope="module")
def exported(export_run_dir, tmp_path_factory) -> tuple[Path, list[ExportResult]]:
    """One export of every format into a private copy of the run."""
    run_dir = copy_run(export_run_dir, tmp_path_factory.mktemp("exported") / "run")
    results = export_run(run_dir, ExportConfig(formats=ALL, num_calibration_images=CALIBRATION_IMAGES), progress=False)
    print("\nformat          size_bytes  test_acc  agreement  max_abs_diff  seconds  status")
    for r in results:
        print(
            f"{r.format:<15} {r.size_bytes:>10}  {r.test_accuracy:>8.3f}  {r.agreement:>9.3f}  "
            f"{r.max_abs_diff if r.max_abs_diff is not None else '-':>12}  {r.seconds:>7.1f}  {r.status}"
        )
    return run_dir, results


def test_every_format_exports_loads_and_passes_its_check(exported, export_run_dir):
    from edgetl.runtime import load_model, read_metadata

    run_dir, results = exported
    assert [r.format for r in results] == ALL
    for r in results:
        spec = FORMATS[r.format]
        assert r.status == "ok", (r.format, r.status)
        assert r.path == run_dir / "artifacts" / f"{r.format}{spec.suffix}" and r.path.is_file()
        assert r.size_bytes == r.path.stat().st_size > 0
        assert r.num_test_images > 5 and r.agreement >= (0.9 if spec.quantized else 0.995)
        assert r.keras_test_accuracy > 0.9  # the fixture's head is fitted to these photos
        if spec.quantized:
            assert r.max_abs_diff is None
        else:
            assert r.max_abs_diff is not None and r.max_abs_diff < 0.05
        if spec.needs_calibration:
            assert r.calibration_manifest == run_dir / "artifacts" / f"{r.format}.calibration.json"
            manifest = json.loads(r.calibration_manifest.read_text())
            assert manifest["num_images"] == CALIBRATION_IMAGES
            assert manifest["dataset_root"] == str(export_run_dir.image_dir.resolve())
        else:
            assert r.calibration_manifest is None

        meta = read_metadata(r.path)
        assert meta["format"] == r.format
        assert meta["labels"] == export_run_dir.classes
        assert meta["backbone"] == {"version": "v1", "alpha": 0.25, "resolution": 96, "weights": "none (random)"}
        assert meta["input"]["size"] == 96 and (meta["input"]["mean"], meta["input"]["std"]) == (0.0, 1.0)
        assert meta["input"]["batch"] == 1
        assert meta["input"]["preprocessing"]["pixel_range"] == "0..255"
        assert meta["edgetl_version"]
        model = load_model(r.path)
        assert model.labels == export_run_dir.classes
        assert model.input_batch == 1  # fixed batch 1 by default (NNAPI / Core ML need it)
        many = model.predict(np.zeros((3, 96, 96, 3), model.input_dtype))  # many images still run
        assert many.shape == (3, len(export_run_dir.classes))
        if r.format in IO_TYPE_FORMATS:
            assert model.input_dtype == np.uint8 and meta["input"]["dtype"] == "uint8"
        else:
            assert model.input_dtype == np.float32
    sizes = {r.format: r.size_bytes for r in results}
    assert sizes["tflite-float16"] < 0.6 * sizes["tflite-float32"]
    assert sizes["tflite-int8"] < 0.45 * sizes["tflite-float32"]
    assert sizes["onnx-int8"] < 0.5 * sizes["onnx-float32"]


def test_export_json_summarizes_every_format(exported):
    run_dir, results = exported
    summary = json.loads((run_dir / "artifacts" / "export.json").read_text())
    assert set(summary["formats"]) == set(ALL)
    entry = summary["formats"]["tflite-int8"]
    assert entry["status"] == "ok" and entry["path"] == "artifacts/tflite-int8.tflite"
    assert entry["calibration_manifest"] == "artifacts/tflite-int8.calibration.json"
    assert entry["io_type"] == "uint8" and entry["num_calibration_images"] == CALIBRATION_IMAGES
    assert entry["bias_correction"] is True and summary["formats"]["onnx-int8"]["bias_correction"] is True
    assert summary["formats"]["onnx-float32"]["max_abs_diff"] is not None
    assert not [p for p in (run_dir / "artifacts").iterdir() if p.name.startswith(".")]  # no temp files left


def test_int8_exports_from_one_manifest_are_byte_identical_and_merge_export_json(exported, tmp_path):
    run_dir, results = exported
    first = {r.format: r for r in results}
    # another run directory, same model, reusing the first export's tflite-int8 manifest
    other = shutil.copytree(run_dir, tmp_path / "other", ignore=shutil.ignore_patterns("artifacts"))
    manifest = first["tflite-int8"].calibration_manifest
    again = export_run(
        other, ExportConfig(formats=("tflite-int8", "onnx-int8"), calibration_manifest=manifest), progress=False
    )
    for r in again:
        assert r.status == "ok"
        assert r.path.read_bytes() == first[r.format].path.read_bytes(), f"{r.format} is not reproducible"
        assert json.loads(r.calibration_manifest.read_text()) == json.loads(manifest.read_text())
    # exporting one format into a run keeps the others' entries in export.json
    export_run(other, ExportConfig(formats=("tflite-float32",)), progress=False)
    summary = json.loads((other / "artifacts" / "export.json").read_text())
    assert set(summary["formats"]) == {"tflite-int8", "onnx-int8", "tflite-float32"}


def test_no_bias_correction_converts_the_model_as_trained(exported, tmp_path):
    from edgetl.runtime import read_metadata

    run_dir, results = exported
    corrected = {r.format: r for r in results}
    other = shutil.copytree(run_dir, tmp_path / "other", ignore=shutil.ignore_patterns("artifacts"))
    manifest = corrected["tflite-int8"].calibration_manifest
    plain = export_run(
        other,
        ExportConfig(formats=("tflite-int8", "onnx-int8"), calibration_manifest=manifest, bias_correction=False),
        progress=False,
    )
    for r in plain:
        assert r.status == "ok"
        assert read_metadata(r.path)["bias_correction"] is False
        assert read_metadata(corrected[r.format].path)["bias_correction"] is True
        # same images, same converter: only the corrected biases differ
        assert r.path.read_bytes() != corrected[r.format].path.read_bytes()
    summary = json.loads((other / "artifacts" / "export.json").read_text())
    assert summary["formats"]["tflite-int8"]["bias_correction"] is False


def test_bias_correction_flag():
    from edgetl.cli.main import build_parser

    parse = build_parser().parse_args
    assert parse(["export", "--run", "r"]).bias_correction is True
    assert parse(["export", "--run", "r", "--no_bias_correction"]).bias_correction is False


@pytest.mark.parametrize("io_type,dtype", [("int8", np.int8), ("float32", np.float32)])
def test_tflite_int8_io_types(export_run_dir, tmp_path, io_type, dtype):
    from edgetl.runtime import load_model, read_metadata

    run_dir = copy_run(export_run_dir, tmp_path / "run")
    (result,) = export_run(
        run_dir,
        ExportConfig(formats=("tflite-int8",), io_type=io_type, num_calibration_images=CALIBRATION_IMAGES),
        progress=False,
    )
    assert result.status == "ok" and result.io_type == io_type
    model = load_model(result.path)
    assert model.input_dtype == dtype and model.output_dtype == dtype
    assert read_metadata(result.path)["input"]["dtype"] == io_type


def test_a_bad_conversion_fails_its_check_but_keeps_the_artifact(export_run_dir, tmp_path, capsys):
    """The run's model.tflite (which tflite-float32 reuses when run.json vouches for its bytes) answers
    differently from model.keras, as a converter bug would make it: the float check must catch it."""
    import keras

    from edgetl.cli.main import main
    from edgetl.export import ModelSource, artifact_metadata, export_artifact
    from edgetl.io.files import sha256_file

    run_dir = copy_run(export_run_dir, tmp_path / "run")
    model = keras.saving.load_model(run_dir / "model.keras")
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])  # every answer moves to the next class
    run = json.loads((run_dir / "run.json").read_text())
    export_artifact(
        ModelSource(model, None), "tflite-float32", run_dir / "model.tflite", artifact_metadata(run, "tflite-float32")
    )
    run["files"] = {"model.tflite": sha256_file(run_dir / "model.tflite")}
    (run_dir / "run.json").write_text(json.dumps(run))

    code = main(["export", "--run", str(run_dir), "--format", "tflite", "--quantize", "float32"])
    err = capsys.readouterr().err
    assert code == 1
    assert "tflite-float32: check failed:" in err and "max |probability diff|" in err and "Traceback" not in err
    artifact = run_dir / "artifacts" / "tflite-float32.tflite"
    assert artifact.is_file()
    entry = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]["tflite-float32"]
    assert entry["status"].startswith("check failed:") and "max |probability diff|" in entry["status"]
    assert entry["agreement"] < 0.5


def _run_with_own_photos(export_run_dir: ExportRun, tmp_path: Path) -> tuple[Path, Path]:
    """A run whose dataset is a private copy (so a test may damage it)."""
    photos = shutil.copytree(export_run_dir.image_dir, tmp_path / "photos")
    run_dir = copy_run(export_run_dir, tmp_path / "run")
    run = json.loads((run_dir / "run.json").read_text())
    run["image_dir"] = str(photos)
    (run_dir / "run.json").write_text(json.dumps(run))
    return run_dir, photos


def test_reused_manifest_with_changed_or_vanished_images_is_refused(export_run_dir, tmp_path):
    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.export import calibration as calib

    run_dir, photos = _run_with_own_photos(export_run_dir, tmp_path)
    built = calib.build_calibration_set(scan_dataset(photos, SplitConfig(10, 30)), 96, 12)
    manifest = calib.write_manifest(tmp_path / "calibration.json", built.manifest)
    changed = photos / built.manifest["images"][0]["path"]
    vanished = photos / built.manifest["images"][1]["path"]
    with open(changed, "ab") as f:
        f.write(b"\0")
    vanished.unlink()
    with pytest.raises(ExportError) as e:
        export_run(run_dir, ExportConfig(formats=("tflite-int8",), calibration_manifest=manifest), progress=False)
    message = str(e.value)
    assert str(changed) in message and "changed" in message
    assert str(vanished) in message and "missing" in message
    assert not (run_dir / "artifacts").exists()  # refused before anything was written


def test_cli_errors_are_clean(export_run_dir, tmp_path, capsys):
    from edgetl.cli.main import main

    code = main(["export", "--run", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a directory" in err and "Traceback" not in err

    (tmp_path / "empty").mkdir()
    code = main(["export", "--run", str(tmp_path / "empty"), "--format", "tflite", "--quantize", "int8"])
    err = capsys.readouterr().err
    assert code == 2 and "not a finished edgetl run (no run.json)" in err

    code = main(["export", "--run", str(export_run_dir.run_dir), "--quantize", "int9"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown --quantize 'int9'" in err and "float16" in err and "Traceback" not in err

    code = main(["export", "--run", str(export_run_dir.run_dir), "--calibration_manifest", str(tmp_path / "no.json")])
    err = capsys.readouterr().err
    assert code == 2 and "calibration manifest not found" in err

    with pytest.raises(ExportError, match="not a directory"):
        export_run(tmp_path / "nowhere", ExportConfig(formats=("tflite-float32",)))
    with pytest.raises(ExportError, match="unknown format"):
        ExportConfig(formats=("tflite-int4",))
    with pytest.raises(ExportError, match="io_type"):
        ExportConfig(io_type="int4")
    with pytest.raises(ExportError, match="num_calibration_images must be a whole number >= 1"):
        ExportConfig(num_calibration_images=0)
    with pytest.raises(ExportError, match="num_threads"):
        ExportConfig(num_threads=0)
    assert not (export_run_dir.run_dir / "artifacts").exists()


# ---------------------------------------------------------------------------------------------
# standard metadata: the files work in stock clients as they are


def test_onnx_files_carry_documented_metadata_and_pass_the_full_checker(exported):
    import onnx

    from edgetl.runtime import load_model

    run_dir, results = exported
    for r in (x for x in results if x.format.startswith("onnx")):
        proto = onnx.load(str(r.path))
        onnx.checker.check_model(proto, full_check=True)
        props = {p.key: p.value for p in proto.metadata_props}
        assert proto.producer_name == "edgetl" and proto.producer_version
        assert props["labels"].splitlines() == ["daisy", "roses", "tulips"]
        assert props["normalization_mean"] == "0,0,0" and props["normalization_std"] == "1,1,1"
        assert props["color_space"] == "RGB" and props["pixel_range"] == "0..255"
        model = load_model(r.path)  # the file alone: labels and normalization from its own props
        assert model.labels == ["daisy", "roses", "tulips"] and (model.mean, model.std) == (0.0, 1.0)


def test_every_tflite_format_has_standard_metadata(exported):
    from edgetl.runtime.standard_metadata import read_standard_metadata

    run_dir, results = exported
    for r in (x for x in results if x.format.startswith("tflite")):
        md = read_standard_metadata(r.path)
        assert md is not None, f"{r.format}: no standard TFLite Metadata"
        assert md["labels"] == ["daisy", "roses", "tulips"] and md["mean"] == [0.0] * 3 and md["std"] == [1.0] * 3
        assert f"format={r.format}" in md["description"] and md["edgetl"]["format"] == r.format
        assert ("calibration_manifest_sha256=" in md["description"]) == FORMATS[r.format].needs_calibration


@pytest.mark.parametrize("client,venv", [("mediapipe", ".venv-mediapipe"), ("task_library", ".venv-task-library")])
def test_stock_clients_classify_with_every_tflite_format_by_label_name(
    exported, export_run_dir, tmp_path, client, venv
):
    """MediaPipe Tasks / the Task Library load each file alone and name the classes; their top-1 agrees with
    edgetl's on photos pre-shrunk to 1.5x the input size (the clients resize without antialiasing)."""
    import subprocess

    from conftest import REPO_ROOT
    from PIL import Image

    from edgetl.runtime import load_model
    from edgetl.runtime.images import load_image

    python = REPO_ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{venv} is missing: run tools/make_client_venvs.sh (tools/install.sh does)")
    run_dir, results = exported
    photos = sorted(export_run_dir.image_dir.glob("*/*"))[::4][:12] or pytest.fail("no photos")
    small = []
    for i, photo in enumerate(photos):
        with Image.open(photo) as im:
            path = tmp_path / f"{i}.png"
            im.convert("RGB").resize((144, 144), Image.BILINEAR).save(path)
            small.append(path)
    formats = [r for r in results if r.format.startswith("tflite")]
    if client == "task_library":  # tflite-support 0.4.4's runtime lacks FULLY_CONNECTED v12 (dynamic range)
        formats = [r for r in formats if r.format != "tflite-dynamic"]
    cmd = [
        str(python),
        str(REPO_ROOT / "tools" / "client_check.py"),
        "--client",
        client,
        "--json",
        "--model_file",
        *[str(r.path) for r in formats],
        "--",
        *map(str, small),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    for r, m in zip(formats, doc["models"]):
        model = load_model(r.path)
        ours = model.predict(np.stack([load_image(p, model.input_size) for p in small])).argmax(1)
        theirs = [p["label"] for p in m["predictions"]]
        assert set(theirs) <= {"daisy", "roses", "tulips"} and all(theirs), f"{client} {r.format}: {theirs}"
        agree = np.mean([model.labels[i] == t for i, t in zip(ours, theirs)])
        assert agree >= 0.75, f"{client} {r.format}: top-1 agrees with edgetl on {agree:.0%}"


def test_every_artifact_records_its_accelerator_coverage(exported):
    """The runtimes' own static checks, recorded per artifact: a batch-1 MobileNet is one NNAPI partition."""
    from edgetl.export.accelerators import summary

    run_dir, results = exported
    entries = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
    for r in results:
        acc = entries[r.format]["accelerators"]
        assert "error" not in acc, (r.format, acc)
        if FORMATS[r.format].runtime == "tflite":
            assert acc["gpu"]["ops"] > 20 and acc["gpu"]["supported"] <= acc["gpu"]["ops"]
            assert summary(acc).startswith("GPU ")
        else:
            nnapi = acc["nnapi"]
            assert nnapi["blocked_by_dynamic_shape"] == 0
            assert nnapi["supported"] == nnapi["nodes"] > 20 and nnapi["verdict"] == "YES", nnapi
            assert acc["coreml"]["nodes"] == nnapi["nodes"]
            assert summary(acc).startswith("NNAPI ")


def test_dynamic_batch_on_request_costs_the_onnx_file_its_nnapi_partition(export_run_dir, tmp_path):
    """--dynamic_batch: the batch stays open (several images per call) and the checker sees what it blocks."""
    from edgetl.runtime import load_model, read_metadata

    run_dir = copy_run(export_run_dir, tmp_path / "run")
    formats = ["tflite-float32", "onnx-float32"]
    results = export_run(run_dir, ExportConfig(formats=formats, dynamic_batch=True), progress=False)
    assert [r.status for r in results] == ["ok", "ok"]
    entries = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]
    for r in results:
        assert read_metadata(r.path)["input"]["batch"] is None
    assert [load_model(r.path).input_batch for r in results] == [None, None]
    nnapi = entries["onnx-float32"]["accelerators"]["nnapi"]
    assert nnapi["blocked_by_dynamic_shape"] > 0 and nnapi["supported"] < nnapi["nodes"]
    assert nnapi["verdict"] != "YES"


def _small_keras_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_tf2onnx_optimizers_run_in_place_give_the_guarded_bytes_and_fall_back_when_one_raises(monkeypatch):
    import contextlib
    import os

    import tf2onnx.optimizer

    from edgetl.export import onnx as onnx_export

    model = _small_keras_model()
    fast = onnx_export.to_onnx_float(model, 1).SerializeToString()
    assert onnx_export.TF2ONNX_CATCH_ERRORS not in os.environ  # restored after the conversion
    with monkeypatch.context() as m:  # tf2onnx's own default: a deep copy of the graph before each pass
        m.setattr(onnx_export, "_environ", lambda *_: contextlib.nullcontext())
        guarded = onnx_export.to_onnx_float(model, 1).SerializeToString()
    assert fast == guarded

    class Raises:
        def optimize(self, graph, iteration):
            raise RuntimeError("an optimizer bug")

    monkeypatch.setitem(tf2onnx.optimizer._optimizers, "raises", Raises)  # unguarded: the conversion fails
    assert onnx_export.to_onnx_float(model, 1).SerializeToString() == fast  # so it is done again, guarded
