"""`edgetl train` end to end on real photos with real ImageNet weights (V1 0.25 at 96 px: seconds, not minutes).

Accuracy is not the point here (25 photos per class at 96 px); what is checked is the run directory, that the
float TFLite says what the Keras model says, the cache, repeatability, and that bad input is survived.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset
from PIL import Image

from edgetl.cli.main import main
from edgetl.data.dataset import SplitConfig, scan_dataset
from edgetl.runtime.images import load_image

pytestmark = pytest.mark.slow  # real training, conversion or sweeps: minutes

CLASSES = ["daisy", "roses", "tulips"]
PER_CLASS = 25
RES = 96
VAL, TEST = 20, 20


@dataclass
class CliRun:
    rc: int
    out: str
    err: str
    run: dict | None  # run.json as written by this invocation


def run_cli(argv: list[str], output_dir: Path | None = None) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    run_json = output_dir / "run.json" if output_dir else None
    run = json.loads(run_json.read_text()) if run_json and run_json.is_file() else None
    return CliRun(rc, out.getvalue(), err.getvalue(), run)


def train_args(image_dir: Path, output_dir: Path, bottleneck_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--image_dir",
        str(image_dir),
        "--backbone",
        "v1",
        "--alpha",
        "0.25",
        "--resolution",
        str(RES),
        "--weights_dir",
        str(WEIGHTS_DIR),
        "--bottleneck_dir",
        str(bottleneck_dir),
        "--output_dir",
        str(output_dir),
        "--validation_percentage",
        str(VAL),
        "--testing_percentage",
        str(TEST),
        "--how_many_training_steps",
        "300",
        "--eval_step_interval",
        "25",
        "--train_batch_size",
        "32",
        "--seed",
        "3",
        *extra,
    ]


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """Nothing may fall back to the user's cache (conftest does not set EDGETL_CACHE_DIR)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGETL_CACHE_DIR", str(tmp_path_factory.mktemp("edgetl_cache")))
        yield


@pytest.fixture(scope="module")
def flowers(tmp_path_factory) -> Path:
    return copy_subset(FLOWERS, tmp_path_factory.mktemp("flowers") / "ds", CLASSES, PER_CLASS)


@dataclass
class Trained:
    image_dir: Path
    run_dir: Path
    first: CliRun
    second: CliRun


@pytest.fixture(scope="module")
def trained(flowers, tmp_path_factory, private_cache) -> Trained:
    """Two identical `edgetl train` runs into the same output directory."""
    base = tmp_path_factory.mktemp("train")
    run_dir = base / "run"
    argv = train_args(flowers, run_dir, base / "bottlenecks", "--print_misclassified_test_images")
    first = run_cli(argv, run_dir)
    assert first.rc == 0, first.out[-3000:] + first.err[-3000:]
    second = run_cli(argv, run_dir)
    assert second.rc == 0, second.out[-3000:] + second.err[-3000:]
    return Trained(flowers, run_dir, first, second)


def test_run_directory_has_the_documented_files(trained):
    run_dir = trained.run_dir
    for name in ("run.json", "model.keras", "model.tflite", "labels.txt"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert not (run_dir / "saved_model").exists()  # converted from the frozen function: no SavedModel to write
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert (run_dir / "labels.txt").read_text().splitlines() == CLASSES

    run = json.loads((run_dir / "run.json").read_text())
    assert run["classes"] == CLASSES
    assert run["image_dir"] == str(trained.image_dir.resolve())
    assert (run["validation_percentage"], run["testing_percentage"]) == (VAL, TEST)
    bb = run["backbone"]
    assert (bb["version"], bb["alpha"], bb["resolution"]) == ("v1", 0.25, RES)
    assert bb["weights"] == "imagenet:mobilenet_2_5_224_tf_no_top.h5"  # no 96 px file: the 224 one, noted
    assert "224" in bb["weights_note"] and "224" in trained.first.out
    assert bb["weights_sha256"] == "dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"
    assert run["training"]["seed"] == 3 and run["training"]["how_many_training_steps"] == 300
    m = run["metrics"]
    for key in ("train_accuracy", "validation_accuracy", "test_accuracy"):
        assert 0.0 <= m[key] <= 1.0, key
    ds = scan_dataset(trained.image_dir, SplitConfig(VAL, TEST))
    assert (m["num_train"], m["num_validation"], m["num_test"]) == tuple(
        len(ds.split(s)) for s in ("training", "validation", "testing")
    )
    assert run["num_skipped_files"] == 0


def test_float_tflite_agrees_with_the_keras_model_on_the_test_images(trained):
    import keras

    from edgetl.runtime import load_model

    ds = scan_dataset(trained.image_dir, SplitConfig(VAL, TEST))
    test = ds.split("testing")
    assert len(test) >= 5
    pixels = np.stack([load_image(r.path, RES) for r in test])
    labels = np.array([r.label_index for r in test])

    keras_model = keras.saving.load_model(trained.run_dir / "model.keras")
    keras_probs = np.asarray(keras_model.predict(pixels.astype(np.float32), verbose=0))
    tflite = load_model(trained.run_dir / "model.tflite")
    assert tflite.input_size == RES and tflite.num_classes == len(CLASSES)
    tflite_probs = tflite.predict(pixels)
    assert tflite_probs.shape == (len(test), len(CLASSES))
    np.testing.assert_array_equal(tflite_probs.argmax(axis=1), keras_probs.argmax(axis=1))
    np.testing.assert_allclose(tflite_probs, keras_probs, atol=1e-4)
    # and the exported model scores what training reported (from cached features + the numpy head)
    assert float(np.mean(keras_probs.argmax(axis=1) == labels)) == pytest.approx(
        trained.second.run["metrics"]["test_accuracy"]
    )


def test_labels_and_metadata_are_embedded_in_the_tflite(trained):
    from edgetl.runtime import load_model, read_metadata

    meta = read_metadata(trained.run_dir / "model.tflite")
    assert meta is not None
    assert meta["labels"] == CLASSES
    assert meta["format"] == "tflite-float32"
    assert meta["input"]["size"] == RES and meta["input"]["mean"] == 0.0 and meta["input"]["std"] == 1.0
    assert meta["backbone"]["weights"] == "imagenet:mobilenet_2_5_224_tf_no_top.h5"
    assert load_model(trained.run_dir / "model.tflite").labels == CLASSES


def test_second_identical_run_computes_no_bottlenecks(trained):
    n = len(CLASSES) * PER_CLASS
    assert f"bottlenecks: {n} computed, 0 from cache, 0 failed to decode" in trained.first.out
    assert f"bottlenecks: 0 computed, {n} from cache, 0 failed to decode" in trained.second.out


def test_same_seed_gives_the_same_results(trained):
    a, b = trained.first.run, trained.second.run
    assert a is not None and b is not None
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"]
    assert len(a["history"]) >= 2


def test_print_misclassified_test_images_lists_them(trained):
    out = trained.first.out
    assert "=== misclassified test images ===" in out
    listing = out.split("=== misclassified test images ===", 1)[1]
    lines = re.findall(r"^(\S.*?)  true: (\S+)  predicted: (\S+)$", listing, flags=re.M)
    m = trained.first.run["metrics"]
    expected = round(m["num_test"] * (1 - m["test_accuracy"]))
    assert len(lines) == expected
    assert expected > 0, "the tiny model got every test image right; this check needs at least one miss"
    test_paths = {str(r.path) for r in scan_dataset(trained.image_dir, SplitConfig(VAL, TEST)).split("testing")}
    for path, truth, predicted in lines:
        assert path in test_paths
        assert Path(path).parent.name == truth and truth != predicted and predicted in CLASSES


# ---------------------------------------------------------------------------------------------------------
# bad input


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> dict:
    """A copy of a small real subset plus the usual mess found in people's photo folders."""
    root = copy_subset(FLOWERS, tmp_path_factory.mktemp("messy") / "ds", CLASSES, 20)
    spare = {c: sorted((FLOWERS / c).iterdir())[20:23] for c in CLASSES}  # photos not in the subset
    bad = {
        "truncated": root / "daisy" / "truncated.jpg",
        "zero": root / "daisy" / "zero_bytes.jpg",
        "text": root / "roses" / "actually_text.jpg",
    }
    data = spare["daisy"][0].read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["zero"].write_bytes(b"")
    bad["text"].write_text("Thumbs.db says hello; this is not a JPEG\n" * 20)
    odd = {
        "gray": root / "tulips" / "grayscale.png",
        "rgba": root / "roses" / "with_alpha.png",
        "cmyk": root / "daisy" / "print_cmyk.jpg",
    }
    with Image.open(spare["tulips"][0]) as im:
        im.convert("L").save(odd["gray"])
    with Image.open(spare["roses"][0]) as im:
        rgba = im.convert("RGBA")
        alpha = np.tile(np.linspace(64, 255, rgba.width).astype(np.uint8), (rgba.height, 1))
        rgba.putalpha(Image.fromarray(alpha, "L"))
        rgba.save(odd["rgba"])
    with Image.open(spare["daisy"][1]) as im:
        im.convert("CMYK").save(odd["cmyk"], quality=90)
    for key, mode in (("gray", "L"), ("rgba", "RGBA"), ("cmyk", "CMYK")):
        with Image.open(odd[key]) as im:
            assert im.mode == mode
    (root / "notes_at_root.txt").write_text("not a class")
    (root / "sunflowers").mkdir()  # an empty class folder
    return {"root": root, "bad": bad, "odd": odd, "good": 3 * 20 + len(odd)}


def test_bad_files_are_skipped_and_named_and_odd_modes_are_used(messy, tmp_path, private_cache):
    run_dir = tmp_path / "run"
    result = run_cli(train_args(messy["root"], run_dir, tmp_path / "bottlenecks"), run_dir)
    out = result.out
    assert result.rc == 0, out[-3000:] + result.err[-3000:]
    assert "Traceback" not in out + result.err
    for path in messy["bad"].values():
        assert f"skipping {path}" in out, path
    for path in messy["odd"].values():
        assert str(path) not in out, f"{path} was reported but should have been used"
    # The zero-byte file is skipped by the scan (never opened); the other two fail to decode.
    assert f"bottlenecks: {messy['good']} computed, 0 from cache, 2 failed to decode" in out
    assert f"skipping {messy['bad']['zero']}: empty file (0 bytes)" in out
    assert "notes_at_root.txt" in out and "sunflowers" in out  # the root file and the empty class are mentioned
    assert "misclassified" not in out  # only with --print_misclassified_test_images

    run = result.run
    assert run["classes"] == CLASSES
    assert run["num_skipped_files"] == 3
    assert sorted(p for p, _ in run["skipped_files"]) == sorted(str(p) for p in messy["bad"].values())
    m = run["metrics"]
    assert m["num_train"] + m["num_validation"] + m["num_test"] == messy["good"]
    for name in ("model.tflite", "model.keras", "labels.txt"):
        assert (run_dir / name).is_file()


@pytest.mark.parametrize("layout", ["one_class", "one_class_and_an_empty_folder", "no_classes"])
def test_fewer_than_two_classes_exits_2_with_one_line(layout, tmp_path, capsys, private_cache):
    root = tmp_path / "ds"
    root.mkdir()
    if layout != "no_classes":
        copy_subset(FLOWERS, root, ["roses"], 3)
    if layout == "one_class_and_an_empty_folder":
        (root / "tulips").mkdir()
    run_dir = tmp_path / "run"
    rc = main(train_args(root, run_dir, tmp_path / "bottlenecks"))
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("edgetl train: error:") and "two class" in lines[0]
    if layout == "one_class_and_an_empty_folder":
        assert "tulips" in lines[0]
    assert "Traceback" not in captured.out + captured.err
    assert not run_dir.exists()


def test_missing_weights_exit_2_naming_the_files_looked_for(flowers, tmp_path, capsys, private_cache):
    argv = train_args(flowers, tmp_path / "run", tmp_path / "bottlenecks")
    argv[argv.index("--backbone") + 1] = "v2"
    argv[argv.index("--alpha") + 1] = "0.35"  # no V2 0.35 file exists offline
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("edgetl train: error: no ImageNet weights for MobileNet v2 alpha 0.35")
    assert str(WEIGHTS_DIR / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5") in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_missing_image_dir_exits_2(tmp_path, capsys):
    rc = main(train_args(tmp_path / "nope", tmp_path / "run", tmp_path / "bn"))
    err = capsys.readouterr().err
    assert rc == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_export_reuses_the_runs_tflite_as_the_float32_artifact(trained, tmp_path):
    """One conversion, not two: tflite-float32 is model.tflite's conversion (and still checked; its metadata now
    also names the golden inputs, so the bytes differ, the answers do not); a changed model.tflite that run.json
    does not vouch for is converted again."""
    import shutil

    from edgetl.export import ExportConfig, export_run
    from edgetl.runtime import load_model

    run_dir = shutil.copytree(trained.run_dir, tmp_path / "run")
    (result,) = export_run(run_dir, ExportConfig(formats=("tflite-float32",)), progress=False)
    entry = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]["tflite-float32"]
    assert result.ok and entry["converted_by"].startswith("edgetl train")
    exported, trained_model = load_model(result.path), load_model(run_dir / "model.tflite")
    size = exported.input_size
    pixels = np.random.default_rng(0).integers(0, 256, (3, size, size, 3)).astype(np.uint8)
    assert np.array_equal(exported.predict(pixels), trained_model.predict(pixels))
    (run_dir / "model.tflite").write_bytes((run_dir / "model.tflite").read_bytes() + b"\0")  # not what run.json says
    (result,) = export_run(run_dir, ExportConfig(formats=("tflite-float32",)), progress=False)
    entry = json.loads((run_dir / "artifacts" / "export.json").read_text())["formats"]["tflite-float32"]
    assert result.ok and "converted_by" not in entry and result.max_abs_diff < 1e-3
