"""Per-class fidelity of a converted artifact to its float model, and the per-class gate.

An overall accuracy hides one class quietly broken by quantization. Fidelity (does the converted file
answer like its float model?) needs no held-out data, so it is measured on up to
`ExportConfig.fidelity_images_per_class` images of each class drawn from every labelled image of the run
(train, validation and test) that did not calibrate the artifact: the test split's first (their
predictions are the check's own, so they cost nothing), then the others in content-hash order (a
name-independent, deterministic shuffle, as for calibration). Exact duplicates count once.

Per class, the artifact and the float model are compared on the same images with the exact McNemar test;
the p-values are Holm-adjusted over the classes. A class fails the gate when it is more than
`max_class_drop` points less accurate than the float model and its adjusted p is below `alpha`.

The float model's answers on the non-test images come from `edgetl train` (RUN/float_predictions.npz: its
head on the features of every image, recorded for free) when present and intact; otherwise from the Keras
model. Only formats whose weights change (float16, dynamic, int8, int16x8) are measured: a float32
conversion is held to the float model's probabilities within 1e-3 instead.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl.data.dataset import decode_images
from edgetl.export.formats import FORMATS
from edgetl.io.files import atomic_write_bytes, sha256_file
from edgetl.stats import holm_adjust, mcnemar_exact

FLOAT_PREDICTIONS = "float_predictions.npz"  # in a run directory: the float model on every decoded image
ALPHA = 0.05  # family-wise level of the per-class gate (Holm over classes)
TEST = "exact McNemar per class (artifact vs float model, same images), Holm-adjusted over classes"


def measured(fmt: str) -> bool:
    """Whether `fmt` gets a per-class fidelity measurement (its weights differ from the float model's)."""
    return FORMATS[fmt].quantization != "float32"


@dataclass
class FidelitySet:
    """The images a run's artifacts are judged on per class: rows of the test split, then decoded others."""

    test_rows: np.ndarray  # indices into the test split (whose predictions the check already has)
    extra_images: np.ndarray  # uint8 (M, R, R, 3): non-test images
    labels: np.ndarray  # per fidelity image: test rows' labels, then the others'
    float_probs: np.ndarray  # the float model on the same images, same order
    calibration_excluded: int  # images left out because they calibrated the int8 formats
    reference: str  # where the float answers on the extra images came from


def select(records, test_paths, classes, per_class: int, exclude_hashes=frozenset()):
    """(test rows, extra records) of the fidelity set: per class, test images first, then the rest in
    content-hash order, up to `per_class` images, none whose content is in `exclude_hashes`.

    `records` are the dataset's (each with path, label_index, split, content_hash), `test_paths` the test
    images in check order (their row is their index in it). Pure: unit-tested without images.
    """
    by_path = {str(r.path): r for r in records}
    seen = set(exclude_hashes)
    excluded = sum(r.content_hash in exclude_hashes for r in records)  # every record whose content calibrated
    chosen_test: dict[int, list[int]] = {i: [] for i in range(len(classes))}
    chosen_extra: dict[int, list] = {i: [] for i in range(len(classes))}
    for row, path in enumerate(test_paths):
        r = by_path.get(str(path))
        if r is None or len(chosen_test[r.label_index]) >= per_class:
            continue
        if r.content_hash in seen:
            continue
        seen.add(r.content_hash)
        chosen_test[r.label_index].append(row)
    others = sorted((r for r in records if r.split != "testing"), key=lambda r: (r.content_hash, str(r.path)))
    for r in others:
        have = len(chosen_test[r.label_index]) + len(chosen_extra[r.label_index])
        if have >= per_class:
            continue
        if r.content_hash in seen:
            continue
        seen.add(r.content_hash)
        chosen_extra[r.label_index].append(r)
    test_rows = [row for i in range(len(classes)) for row in chosen_test[i]]
    extra = [r for i in range(len(classes)) for r in chosen_extra[i]]
    return np.asarray(test_rows, np.int64), extra, excluded


def _key(path) -> str:
    """An image's key in float_predictions.npz: its resolved path (train may have scanned a relative image_dir)."""
    return str(Path(path).resolve())


def save_float_predictions(run_dir: Path, probabilities: np.ndarray, paths) -> str:
    """RUN/float_predictions.npz: the float model's probabilities on every image `edgetl train` decoded,
    with their paths; returns the file's SHA-256 (run.json's `files` keeps it)."""
    buffer = io.BytesIO()
    np.savez(buffer, probabilities=np.asarray(probabilities, np.float32), paths=np.asarray([_key(p) for p in paths]))
    path = Path(run_dir) / FLOAT_PREDICTIONS
    atomic_write_bytes(path, buffer.getvalue(), "the float model's predictions")
    return sha256_file(path)


def recorded_float_predictions(run_dir: Path, run: dict, num_classes: int) -> dict[str, np.ndarray]:
    """{path: probabilities} from RUN/float_predictions.npz when it hashes to what run.json recorded; else {}."""
    path = Path(run_dir) / FLOAT_PREDICTIONS
    recorded = (run.get("files") or {}).get(FLOAT_PREDICTIONS)
    if not recorded or not path.is_file() or sha256_file(path) != recorded:
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            probs, paths = data["probabilities"], data["paths"]
    except (OSError, ValueError, KeyError):
        return {}
    if probs.ndim != 2 or probs.shape[1] != num_classes or len(paths) != len(probs):
        return {}
    return {str(p): row for p, row in zip(paths.tolist(), probs)}


def class_table(
    labels: np.ndarray,
    float_pred: np.ndarray,
    artifact_pred: np.ndarray,
    classes,
    max_class_drop: float,
    alpha: float = ALPHA,
) -> list[dict]:
    """Per class: images, float and artifact accuracy, the drop in points, discordant counts, the exact
    McNemar p and its Holm adjustment over the classes, and whether the class fails the gate."""
    rows = []
    for i, name in enumerate(classes):
        mask = labels == i
        if not mask.any():
            continue
        t = mcnemar_exact(artifact_pred[mask] == i, float_pred[mask] == i)
        rows.append(
            {
                "class": name,
                "n": t.n,
                "float_accuracy": t.accuracy_b,
                "accuracy": t.accuracy_a,
                "drop_points": -t.diff_points,
                "flipped_wrong": t.b10,  # right for the float model, wrong for the artifact
                "flipped_right": t.b01,
                "p_value": t.p_value,
            }
        )
    for row, p in zip(rows, holm_adjust([r["p_value"] for r in rows])):
        row["p_holm"] = p
        row["failed"] = bool(row["drop_points"] > max_class_drop and p < alpha)
    return rows


def summary(fidelity: FidelitySet, artifact_probs: np.ndarray, classes, per_class: int, max_class_drop: float) -> dict:
    """export.json's `class_fidelity` entry for one artifact (`artifact_probs` on the fidelity images)."""
    rows = class_table(
        fidelity.labels, fidelity.float_probs.argmax(1), artifact_probs.argmax(1), classes, max_class_drop
    )
    worst = max(rows, key=lambda r: (r["drop_points"], -r["p_holm"]), default=None)
    return {
        "images_per_class": per_class,
        "num_images": int(len(fidelity.labels)),
        "from_test_split": int(len(fidelity.test_rows)),
        "calibration_excluded": fidelity.calibration_excluded,
        "reference": fidelity.reference,
        "max_class_drop": max_class_drop,
        "alpha": ALPHA,
        "test": TEST,
        "agreement": float((fidelity.float_probs.argmax(1) == artifact_probs.argmax(1)).mean()),
        "classes": rows,
        "failed": [r["class"] for r in rows if r["failed"]],
        "worst": None if worst is None else {"class": worst["class"], "drop_points": worst["drop_points"]},
    }


def gate_problems(entry: dict) -> list[str]:
    """Why a class fails the gate, one line per failed class (empty: it passes)."""
    return [
        f"class {r['class']!r} {r['drop_points']:.1f} points lower than the float model "
        f"({r['accuracy']:.1%} vs {r['float_accuracy']:.1%} on {r['n']} images, {r['flipped_wrong']} flipped "
        f"wrong / {r['flipped_right']} right, Holm p = {r['p_holm']:.2g}; > {entry['max_class_drop']:g})"
        for r in entry.get("classes", [])
        if r.get("failed")
    ]


def build(inputs, per_class: int, exclude_hashes, keras_predict) -> FidelitySet:
    """The fidelity set of a run (`inputs`: `edgetl.export.run.RunInputs`): selected, decoded, with the
    float model's answers; `keras_predict(model, images)` is the fallback for images train did not record."""
    classes = list(inputs.run["classes"])
    test_rows, extra, excluded = select(
        inputs.dataset.records, inputs.test_paths, classes, per_class, frozenset(exclude_hashes)
    )
    resolution = int(inputs.run["backbone"]["resolution"])
    images, kept, _failed = decode_images(extra, resolution, inputs.load)  # undecodable: left out
    recorded = recorded_float_predictions(inputs.run_dir, inputs.run, len(classes)) if kept else {}
    if all(_key(r.path) in recorded for r in kept):
        extra_probs = np.stack([recorded[_key(r.path)] for r in kept]) if kept else np.zeros((0, len(classes)))
        reference = "recorded by edgetl train" if kept else "test split only"
    else:
        extra_probs = keras_predict(inputs.source.keras_model, images)
        reference = "the Keras model"
    return FidelitySet(
        test_rows=test_rows,
        extra_images=images,
        labels=np.concatenate([inputs.test_labels[test_rows], [r.label_index for r in kept]]).astype(np.int64),
        float_probs=np.concatenate([inputs.keras_probs[test_rows], extra_probs]).astype(np.float32),
        calibration_excluded=int(excluded),
        reference=reference,
    )


def artifact_probabilities(fidelity: FidelitySet, model, test_probs: np.ndarray, batch_size: int) -> np.ndarray:
    """The artifact's probabilities on the fidelity images: the check's own on the test rows, predicted on
    the others (`model`: a loaded `edgetl.runtime` model)."""
    extra = (
        np.asarray(model.predict(fidelity.extra_images, batch_size=batch_size), np.float32)
        if len(fidelity.extra_images)
        else np.zeros((0, test_probs.shape[1]), np.float32)
    )
    return np.concatenate([test_probs[fidelity.test_rows], extra])
