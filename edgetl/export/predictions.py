"""Test-split probabilities saved beside the model that made them, so no one predicts the test split twice.

- `edgetl train` saves the float model's (RUN/test_predictions.npy): every export check compares with them.
- Each export check saves its artifact's (RUN/artifacts/<format>.test_predictions.npy): the sweep's
  benchmark of the same bytes takes its accuracy from them.

A saved file is used only when its SHA-256 still matches and it was made on the same test images in the
same order (`images_sha256`); otherwise the caller predicts, as it would without it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from edgetl.io.files import atomic_write_bytes, sha256_file

REFERENCE = "test_predictions.npy"  # in a run directory: the float model's test-split probabilities


def images_sha256(paths) -> str:
    """A hash of an ordered list of image paths, each resolved: equal hash, the same test images in the same
    order, also when `edgetl train` scanned a relative --image_dir and `edgetl export` the absolute one that
    run.json records (the keys of float_predictions.npz are resolved for the same reason)."""
    return _hash(Path(p).resolve() for p in paths)


def _hash(paths) -> str:
    return hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()


def save_probabilities(path: Path, probabilities: np.ndarray, what: str) -> str:
    """Write float32 probabilities as .npy, atomically; returns the file's SHA-256."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(probabilities, np.float32))
    atomic_write_bytes(path, buffer.getvalue(), what)
    return sha256_file(path)


def load_probabilities(path: Path, sha256: str | None, made_on: str | None, paths) -> np.ndarray | None:
    """The probabilities in `path` when the file hashes to `sha256` and was `made_on` the images `paths`
    (`images_sha256`), one row per image; else None."""
    # made_on: the resolved paths' hash, or for files written before, the paths' as they were given
    if not sha256 or not path.is_file() or made_on not in (images_sha256(paths), _hash(paths)):
        return None
    if sha256_file(path) != sha256:
        return None
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return probs if probs.ndim == 2 and len(probs) == len(paths) else None


def save_reference(run_dir: Path, probabilities: np.ndarray, paths) -> dict:
    """Write RUN/test_predictions.npy, the float model's probabilities on the test split as `edgetl train`
    computed them; returns run.json's "reference" entry, which names the images they belong to.
    (Its SHA-256 goes into run.json's "files", with the model files.)"""
    save_probabilities(Path(run_dir) / REFERENCE, probabilities, "the test-split predictions")
    return {"file": REFERENCE, "images_sha256": images_sha256(paths), "shape": list(np.shape(probabilities))}


def recorded_reference(run_dir: Path, run: dict, paths) -> np.ndarray | None:
    """The probabilities `save_reference` recorded, when intact (run.json's SHA-256), made on the test images
    `paths` in that order and one column per class; else None (a run from before, or changed test images)."""
    probs = load_probabilities(
        Path(run_dir) / REFERENCE,
        (run.get("files") or {}).get(REFERENCE),
        (run.get("reference") or {}).get("images_sha256"),
        paths,
    )
    return probs if probs is not None and probs.shape[1] == len(run["classes"]) else None


def save_check_predictions(artifact: Path, fmt: str, probabilities: np.ndarray, paths) -> dict:
    """An export check's probabilities, beside the artifact; returns export.json's "test_predictions" entry."""
    path = artifact.parent / f"{fmt}.test_predictions.npy"
    digest = save_probabilities(path, probabilities, "the export check's test predictions")
    return {
        "file": path.name,
        "sha256": digest,
        "artifact_sha256": sha256_file(artifact),
        "images_sha256": images_sha256(paths),
    }


def check_predictions(run_dir: Path, entry: dict, paths) -> np.ndarray | None:
    """The export check's probabilities for the artifact of export.json `entry` (paths relative to `run_dir`),
    when they are on disk beside it, intact, made from the artifact as it is now and on the test images
    `paths` in that order; else None."""
    saved, artifact = entry.get("test_predictions") or {}, Path(run_dir) / str(entry.get("path", ""))
    if not saved.get("file") or not artifact.is_file() or sha256_file(artifact) != saved.get("artifact_sha256"):
        return None
    return load_probabilities(
        artifact.parent / str(saved["file"]), saved.get("sha256"), saved.get("images_sha256"), paths
    )
