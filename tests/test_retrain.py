"""`edgetl retrain`: retrain.py's command line, TensorBoard curves, distortions, TF Hub MobileNet URLs offline,
and TensorFlow's label_image command line on the result in the TensorFlow-free device environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset
from PIL import Image

from edgetl.cli.main import build_parser, main, train_config_from_args
from edgetl.cli.retrain import LABEL_IMAGE_FLAGS, RETRAIN_FLAGS, RETRAIN_VIEWS, flag_counts, train_argv
from edgetl.data.augment import Distortions, distort
from edgetl.features.backbones import BackboneSpec, hub_mobilenet

REPO = Path(__file__).resolve().parent.parent
# TensorFlow's retrain.py (tensorflow/hub examples/image_retraining/retrain.py), its flags in its order.
RETRAIN_PY_FLAGS = """image_dir output_graph intermediate_output_graphs_dir intermediate_store_frequency output_labels
summaries_dir how_many_training_steps learning_rate testing_percentage validation_percentage eval_step_interval
train_batch_size test_batch_size validation_batch_size print_misclassified_test_images bottleneck_dir
final_tensor_name flip_left_right random_crop random_scale random_brightness tfhub_module saved_model_dir
logging_verbosity checkpoint_path""".split()
MOBILENET_URL = "https://tfhub.dev/google/imagenet/mobilenet_v1_025_128/feature_vector/5"


def test_every_retrain_flag_is_listed_and_accepted(tmp_path):
    assert len(RETRAIN_PY_FLAGS) == 25
    assert [f for f, _, _ in RETRAIN_FLAGS] == RETRAIN_PY_FLAGS
    values = {"print_misclassified_test_images": None, "flip_left_right": None, "logging_verbosity": "WARN"}
    argv = ["retrain"]
    for flag in RETRAIN_PY_FLAGS:
        value = values.get(flag, "7" if "percentage" in flag or "random" in flag else str(tmp_path / flag))
        if flag in ("how_many_training_steps", "eval_step_interval", "train_batch_size", "test_batch_size"):
            value = "7"
        if flag in ("validation_batch_size", "intermediate_store_frequency"):
            value = "7"
        if flag in ("learning_rate",):
            value = "0.01"
        if flag in ("tfhub_module", "final_tensor_name"):
            value = MOBILENET_URL if flag == "tfhub_module" else "final_result"
        argv += [f"--{flag}"] + ([value] if value is not None else [])
    args = build_parser().parse_args(argv)
    assert args.flip_left_right and args.random_crop == 7.0 and args.test_batch_size == 7
    # The same config `edgetl train` builds, from the `edgetl train` command line retrain prints.
    train_args = args.train_parser.parse_args(train_argv(args))
    config = train_config_from_args(train_args, log=lambda _m: None)
    assert config.backbone == BackboneSpec("v1", 0.25, 128)
    assert config.head.learning_rate == 0.01 and config.tune.learning_rate == (0.01,)
    assert config.head.how_many_training_steps == 7 and config.head.eval_step_interval == 7
    assert config.split.testing_percentage == 7.0 and config.split.validation_percentage == 7.0
    assert config.features.distortions == Distortions(True, 7.0, 7.0, 7.0)
    assert config.features.augment_views == RETRAIN_VIEWS
    assert config.features.bottleneck_dir == tmp_path / "bottleneck_dir"
    assert config.summaries_dir == tmp_path / "summaries_dir"
    assert config.intermediate_store_frequency == 7
    assert config.intermediate_output_graphs_dir == tmp_path / "intermediate_output_graphs_dir"
    assert config.print_misclassified_test_images and config.tfhub_module == MOBILENET_URL


def test_flag_table_counts_and_readme():
    counts = flag_counts()
    assert sum(counts.values()) == len(RETRAIN_FLAGS) + len(LABEL_IMAGE_FLAGS)
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Coming from retrain.py", 1)[1]
    for flag, kind, _ in RETRAIN_FLAGS + LABEL_IMAGE_FLAGS:
        assert re.search(rf"\| `--{flag}` \| {kind} \|", section), flag
    total = f"{counts['same']} same meaning, {counts['mapped']} mapped, {counts['noted']} noted"
    assert total in section


@pytest.mark.parametrize(
    "url,spec",
    [
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/1", BackboneSpec("v2", 1.0, 224)),
        ("https://tfhub.dev/google/imagenet/mobilenet_v1_025_128/feature_vector/5", BackboneSpec("v1", 0.25, 128)),
        ("https://tfhub.dev/google/imagenet/mobilenet_v1_050_160/feature_vector/3/", BackboneSpec("v1", 0.5, 160)),
        (
            "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/035-96-feature-vector/2",
            BackboneSpec("v2", 0.35, 96),
        ),
        ("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/3", None),
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5", None),
        ("/some/local/saved_model", None),
    ],
)
def test_hub_mobilenet_names(url, spec):
    assert hub_mobilenet(url) == spec


def test_distortions_follow_retrain_percentages():
    with pytest.raises(ValueError, match="random_brightness"):
        Distortions(random_brightness=100)
    with pytest.raises(ValueError, match="random_crop"):
        Distortions(random_crop=-1)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))
    plain = distort(photo, 64, np.random.default_rng(1), Distortions())
    assert plain.shape == (64, 64, 3) and np.array_equal(plain, np.asarray(photo.resize((64, 64), Image.BILINEAR)))
    flips = [distort(photo, 64, np.random.default_rng(s), Distortions(flip_left_right=True)) for s in range(12)]
    mirrored = [np.array_equal(f, plain[:, ::-1]) for f in flips]
    assert all(m or np.array_equal(f, plain) for m, f in zip(mirrored, flips)) and 0 < sum(mirrored) < 12
    bright = distort(photo, 64, np.random.default_rng(2), Distortions(random_brightness=30))
    ratio = bright.astype(float).sum() / plain.astype(float).sum()
    assert 0.7 <= ratio <= 1.3 and ratio != 1.0
    cropped = distort(photo, 64, np.random.default_rng(3), Distortions(random_crop=50, random_scale=50))
    assert cropped.shape == (64, 64, 3) and not np.array_equal(cropped, plain)


def test_fine_tuning_distorter_keeps_shape_and_range():
    import tensorflow as tf

    from edgetl.train.finetune import _distorter

    apply = _distorter(Distortions(True, 20, 20, 40), 32, seed=0)
    image = tf.constant(np.full((32, 32, 3), 200, np.uint8))
    outs = [apply(image).numpy() for _ in range(8)]
    assert all(o.shape == (32, 32, 3) and o.min() >= 0 and o.max() <= 255 for o in outs)
    assert len({round(float(o.mean()), 3) for o in outs}) > 1  # brightness drawn per image


def test_replayed_heads_are_the_trained_heads_at_that_step():
    """Intermediate files replay the head's fit: stopped at step k it has the weights step k of the full fit had."""
    from test_head import blobs, quiet

    from edgetl.train.head import HeadConfig
    from edgetl.train.intermediate import intermediate_steps
    from edgetl.train.tuning import TuneConfig, fit_head

    tx, ty, vx, vy = blobs(3, n_train=60, n_val=30)
    base = HeadConfig(how_many_training_steps=200, eval_step_interval=10, train_batch_size=16, dropout=0.3)
    extra = (tx[:20] + 0.01, ty[:20])  # augmented views join the training data of every fit, and of the replay
    fit = fit_head((tx, ty), (vx, vy), 3, base, TuneConfig(), log=quiet, extra_train=extra)
    assert fit.trained_steps == fit.refit_steps
    assert fit.replay(fit.trained_steps).weights.tobytes() == fit.head.weights.tobytes()
    kept = fit_head((tx, ty), (vx, vy), 3, base, TuneConfig(refit=False), log=quiet, extra_train=extra)
    assert kept.trained_steps == kept.selected.history[-1]["step"]
    assert kept.replay(kept.selected.best_step).weights.tobytes() == kept.selected.weights.tobytes()
    assert len(kept.histories) == len(kept.table) and kept.histories[0][0]["step"] == 10
    assert intermediate_steps(205, 50) == [50, 100, 150, 200] and intermediate_steps(205, 0) == []


def test_logging_verbosity_filters_edgetl_lines(capsys, monkeypatch):
    from edgetl.cli.retrain import _logger

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    for level, shown in (("INFO", 3), ("WARN", 2), ("ERROR", 0)):
        log = _logger(level)
        for line in ("dataset: 80 images", "warning: class 'a' has only 16 images", "note: the same as"):
            log(line)
        assert len(capsys.readouterr().out.splitlines()) == shown, level
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"  # ERROR: TensorFlow's C++ logging at its error level


def test_label_image_takes_tensorflows_flags(tiny_models, tmp_path, capsys):
    import shutil

    from edgetl.runtime.label_image import main as label_image

    graph = tmp_path / "output_graph.tflite"
    shutil.copy(tiny_models.float_tflite, graph)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(tiny_models.labels) + "\n")
    size, image = tiny_models.size, tiny_models.images[0]
    args = [f"--graph={tmp_path / 'output_graph.pb'}", f"--labels={labels}", f"--image={image}"]
    assert label_image([*args, f"--input_height={size}", f"--input_width={size}", "--input_layer=Placeholder"]) == 0
    out, err = capsys.readouterr()
    assert f"running {graph}" in err and "note: --input_layer Placeholder" in err and "--output_layer" not in err
    assert out.splitlines()[0].split(": ")[1] == tiny_models.keras_top[0]
    assert label_image([*args, f"--input_width={size + 1}"]) == 2
    assert f"--input_width {size + 1}, but" in capsys.readouterr().err
    assert label_image([f"--model_file={tmp_path / 'missing.pb'}", f"--image={image}"]) == 2


def read_events(directory: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{run (sub-directory): {tag: [(step, value), ...]}} from TensorBoard event files."""
    import tensorflow as tf

    runs: dict[str, dict[str, list]] = {}
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        run = path.parent.relative_to(directory).as_posix()
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    runs.setdefault(run, {}).setdefault(value.tag, []).append(
                        (event.step, float(tf.make_ndarray(value.tensor)))
                    )
    return runs


def test_summaries_and_curves_of_a_run(tmp_path):
    from edgetl.train.curves import candidate_name, plot_curves, write_summaries

    history = [
        {
            "step": s,
            "train_accuracy": 0.5 + s / 1000,
            "train_cross_entropy": 1.0 - s / 1000,
            "validation_accuracy": 0.4 + s / 1000,
            "validation_cross_entropy": 1.1 - s / 1000,
        }
        for s in (50, 100, 150)
    ]
    row = {"learning_rate": 0.001, "l2": 0.0, "dropout": 0.3, "label_smoothing": 0.1}
    table = [
        {**row, "best_step": 100, "validation_accuracy": 0.5, "validation_cross_entropy": 0.9},
        {**row, "l2": 1e-4, "best_step": 150, "validation_accuracy": 0.55, "validation_cross_entropy": 0.8},
    ]
    fine = {
        "history": [
            {"epoch": e, "loss": 0.5 / e, "accuracy": 0.8, "val_loss": 0.6 / e, "val_accuracy": 0.7} for e in (1, 2)
        ]
    }
    run = {"history": history, "tuning": {"table": table}, "fine_tune": fine}
    write_summaries(tmp_path / "logs", run, [history, history[:2]], history[:1])
    write_summaries(tmp_path / "logs", run, [history, history[:2]], history[:1])  # replaces, no doubled points
    events = read_events(tmp_path / "logs")
    assert events["train"]["accuracy"] == [(h["step"], pytest.approx(h["train_accuracy"])) for h in history]
    assert events["validation"]["cross_entropy"] == [
        (h["step"], pytest.approx(h["validation_cross_entropy"])) for h in history
    ]
    assert events["validation"]["fine_tune/cross_entropy"] == [(1, pytest.approx(0.6)), (2, pytest.approx(0.3))]
    assert events["train"]["refit/accuracy"] == [(50, pytest.approx(0.55))]
    assert [s for s, _ in events[f"search/{candidate_name(table[1])}"]["search/validation_accuracy"]] == [50, 100]
    assert events["search"]["search/candidate_validation_accuracy"] == [(0, 0.5), (1, pytest.approx(0.55))]
    png = plot_curves(run, tmp_path / "run" / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(png).size[0] >= 400


# ---------------------------------------------------------------------------------------------------------
# The tutorial, end to end


def device_python() -> Path:
    venv = REPO / ".venv-litert"
    if not venv.is_dir():
        message = f"{venv} does not exist: run tools/make_device_venvs.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return venv / "bin" / "python"


@pytest.mark.slow
def test_the_tutorial_commands_with_edgetl_retrain(tmp_path, capsys):
    """`python retrain.py ...` -> `edgetl retrain ...`, TensorBoard's logs read back, then TensorFlow's
    label_image command line on the result, run by the TensorFlow-free device environment."""
    python = device_python()
    flowers = copy_subset(
        FLOWERS, tmp_path / "flower_photos", ["daisy", "dandelion", "roses", "sunflowers", "tulips"], 16
    )
    logs, graph, labels = tmp_path / "retrain_logs", tmp_path / "output_graph.pb", tmp_path / "output_labels.txt"
    code = main(
        [
            "retrain",
            "--image_dir", str(flowers),
            "--tfhub_module", MOBILENET_URL,
            "--weights_dir", str(WEIGHTS_DIR),
            "--how_many_training_steps", "150",
            "--flip_left_right", "--random_crop", "10", "--random_scale", "10", "--random_brightness", "10",
            "--summaries_dir", str(logs),
            "--output_graph", str(graph),
            "--output_labels", str(labels),
            "--intermediate_store_frequency", "50",
            "--intermediate_output_graphs_dir", str(tmp_path / "intermediate"),
            "--saved_model_dir", str(tmp_path / "saved_model"),
            "--bottleneck_dir", str(tmp_path / "bottlenecks"),
            "--final_tensor_name", "final_result",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "downloads disabled" in out and "local ImageNet weights" in out  # the hub URL, offline
    assert "note: --final_tensor_name" in out and "edgetl train --image_dir" in out
    run_dir = tmp_path / "output_graph_run"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["backbone"]["version"] == "v1" and run["backbone"]["alpha"] == 0.25
    assert run["backbone"]["resolution"] == 128 and run["augment_views"] == RETRAIN_VIEWS
    assert run["metrics"]["num_augmented"] == RETRAIN_VIEWS * run["metrics"]["num_train"]
    tflite = tmp_path / "output_graph.tflite"
    assert tflite.read_bytes() == (run_dir / "model.tflite").read_bytes()
    assert labels.read_text().split() == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"

    events = read_events(logs)  # what TensorBoard shows: the head's curves, per eval step, as run.json has them
    for split in ("train", "validation"):
        for metric in ("accuracy", "cross_entropy"):
            expected = [(h["step"], pytest.approx(h[f"{split}_{metric}"], abs=1e-6)) for h in run["history"]]
            assert events[split][metric] == expected
    searched = [r for r in events if r.startswith("search/")]
    assert len(searched) == len(run["tuning"]["table"]) > 1
    assert len(events["search"]["search/candidate_validation_accuracy"]) == len(searched)

    steps = run["tuning"]["refit_steps"]  # the shipped head's steps: intermediate files every 50 of them
    stored = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "intermediate").glob("intermediate_*.tflite"))
    assert stored == list(range(50, steps + 1, 50)) and stored

    from edgetl.runtime import load_model
    from edgetl.runtime.images import load_image

    photo = sorted((flowers / "daisy").iterdir())[0]
    pixels = load_image(photo, 128)[None]
    float_probs = load_model(tflite).predict(pixels)[0]
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    saved_probs = serve(image=tf.constant(pixels.astype(np.float32)))["prediction"].numpy()[0]
    np.testing.assert_allclose(saved_probs, float_probs, atol=1e-4)

    # The tutorial's label_image command line, as it is, in the device environment (no TensorFlow there).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [
            str(python), str(REPO / "tools" / "label_image.py"),
            f"--graph={graph}", f"--labels={labels}",
            "--input_layer=Placeholder", "--output_layer=final_result",
            f"--image={photo}",
        ],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "note: --input_layer Placeholder" in proc.stderr and "note: --output_layer final_result" in proc.stderr
    scores = [line.split(": ") for line in proc.stdout.splitlines() if not line.startswith("time:")]
    printed = {label: float(score) for score, label in scores}
    names = labels.read_text().split()
    np.testing.assert_allclose([printed[n] for n in names], float_probs, atol=1e-5)
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None)"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert probe.stdout.strip() == "True"

    wrong = subprocess.run(
        [str(python), str(REPO / "tools" / "label_image.py"), f"--graph={graph}", "--input_height=224",
         "--input_width=224", f"--image={photo}"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert wrong.returncode == 2 and "takes 128x128 images" in wrong.stderr and "Traceback" not in wrong.stderr


@pytest.mark.slow
def test_fine_tuning_with_distortions_writes_epoch_curves_and_sweep_points_their_own(tmp_path, capsys):
    """`edgetl train --fine_tune` with retrain.py's distortions: fine-tuning's curves per epoch in TensorBoard;
    and a sweep's training unit writes its point's curves under summaries_dir/<point id>."""
    flowers = copy_subset(FLOWERS, tmp_path / "flowers", ["daisy", "sunflowers"], 20)
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    code = main(
        [
            "train", "--image_dir", str(flowers), "--backbone", "v1", "--alpha", "0.25", "--resolution", "96",
            "--weights_dir", str(WEIGHTS_DIR), "--no_tune", "--how_many_training_steps", "60",
            "--eval_step_interval", "20", "--flip_left_right", "--random_brightness", "20", "--augment_views", "1",
            "--fine_tune", "--fine_tune_epochs", "2", "--fine_tune_layers", "5",
            "--summaries_dir", str(logs), "--output_dir", str(run_dir),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    run = json.loads((run_dir / "run.json").read_text())
    assert run["fine_tune"]["distortions"] == {
        "flip_left_right": True, "random_crop": 0.0, "random_scale": 0.0, "random_brightness": 20.0
    }  # fmt: skip
    events = read_events(logs)
    epochs = run["fine_tune"]["history"]
    assert events["validation"]["fine_tune/accuracy"] == [
        (r["epoch"], pytest.approx(r["val_accuracy"], abs=1e-6)) for r in epochs
    ]
    assert [s for s, _ in events["train"]["fine_tune/cross_entropy"]] == [r["epoch"] for r in epochs]
    assert "search" not in events  # --no_tune: one candidate, no search to show

    from edgetl.data.dataset import scan_dataset
    from edgetl.features.backbones import BackboneSpec, resolve_weights
    from edgetl.features.bottlenecks import FeatureConfig
    from edgetl.sweep.config import SweepConfig
    from edgetl.sweep.units import train_point
    from edgetl.train.head import HeadConfig
    from edgetl.train.tuning import TuneConfig

    spec = BackboneSpec("v1", 0.25, 96)
    config = SweepConfig(
        image_dir=flowers,
        output_dir=tmp_path / "sweep",
        points=(spec,),
        features=FeatureConfig(weights_dir=WEIGHTS_DIR),
        head=HeadConfig(how_many_training_steps=40, eval_step_interval=20),
        tune=TuneConfig(search=False),
        summaries_dir=tmp_path / "sweep_logs",
    )
    weights = resolve_weights(spec, "imagenet", WEIGHTS_DIR)
    point = train_point(config, spec, scan_dataset(flowers, config.split), weights, lambda _m: None)
    events = read_events(tmp_path / "sweep_logs" / spec.id)
    assert [s for s, _ in events["validation"]["accuracy"]] == [h["step"] for h in point["history"]]
