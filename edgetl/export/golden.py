"""Golden inputs for a run's artifacts: chosen once per run, embedded in each artifact with its own answers.

Choice (`choose_golden`): a few test photos (MIN_IMAGES..MAX_IMAGES, taken round by round over the classes),
among those the float model classifies right, picked greedily so that every usual wrong pipeline
(`edgetl.runtime.self_check.MISTAKES`) moves the float model's answers on at least one of them as much as
possible, while a correct pipeline with another bilinear resize moves them little. Deterministic: the
candidates are ordered by a hash of their file names and the float model's outputs are deterministic.

Embedding (`embed_golden`): after conversion, the photos and a record without answers go into the file
(TFLite: associated files of the standard metadata; ONNX: metadata_props); the runtime then loads that very
file and computes its answers on the decoded photos; last, only the record is rewritten (the appended
archive of a .tflite, a metadata_props value of an .onnx), so the model bytes that produced the answers are
the ones the file keeps (its model_sha256 is checked unchanged).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgetl import __version__
from edgetl.export.tflite import finish
from edgetl.io.archive import deterministic_zip
from edgetl.io.files import atomic_write_bytes
from edgetl.runtime import METADATA_FILE, appended_zip_start, load_model, model_sha256
from edgetl.runtime import golden as g
from edgetl.runtime.appended_zip import zip_members
from edgetl.runtime.images import open_rgb
from edgetl.runtime.self_check import MISTAKES, Pipeline, run_pipeline

CANDIDATES_PER_CLASS = 12
MAX_CANDIDATES = 60
COVERAGE_CAP = 0.3  # a mistake that moves some golden answer this much is caught whatever the tolerance
# Room kept in the budget for the record and the containers (zip headers, metadata entries); the photos
# get the rest, as base64 for ONNX (4/3 of their bytes).
RECORD_ROOM = 4096
# A correct pipeline that resizes differently; photos whose answers it moves (on the float model) by more
# than a quarter of the tolerance are left out, as a client's resize moves an int8 file's answers further.
# (Adding TensorFlow 1's align_corners resize here left out the photos nearest-neighbour resizing moves most:
# on the flowers V1 0.25 @128 model it then moved tflite-dynamic's answers by only 0.16.)
BENIGN_RESIZES = ("bilinear_no_antialias",)


@dataclass
class GoldenSet:
    """The photos chosen for one run, shared by its artifacts (their answers differ, the photos do not)."""

    photos: list[bytes]
    truth: list[int]
    sources: list[str]
    quality: int


def _candidates(paths: tuple[str, ...], labels: np.ndarray, probs: np.ndarray | None) -> list[int]:
    """Test indices worth considering: per class, those the float model gets right, in hash order."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(i)
    per_class = max(1, min(CANDIDATES_PER_CLASS, MAX_CANDIDATES // max(1, len(by_class))))
    out = []
    for label in sorted(by_class):
        idx = sorted(by_class[label], key=lambda i: hashlib.sha256(Path(paths[i]).name.encode()).hexdigest())
        right = [i for i in idx if probs is None or int(np.argmax(probs[i])) == label]
        out += (right or idx)[:per_class]
    return out


def _shifts(model, photos: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(per photo and mistake: max |probability change|, per photo: the largest change under the correct
    pipelines of BENIGN_RESIZES), against edgetl's own pipeline, on the float model."""
    ref = run_pipeline(model, photos, Pipeline())
    mistakes = np.stack([np.abs(run_pipeline(model, photos, p) - ref).max(1) for _, p in MISTAKES.values()], axis=1)
    benign = np.stack(
        [np.abs(run_pipeline(model, photos, Pipeline(resize=r)) - ref).max(1) for r in BENIGN_RESIZES], axis=1
    ).max(1)
    return mistakes, benign


def _greedy(shifts: np.ndarray, benign: np.ndarray, classes: list[int], n: int) -> list[int]:
    """Positions of `n` photos covering every mistake best (gain capped at COVERAGE_CAP), ties in order."""
    num_classes = len(set(classes))
    usable = [i for i in range(len(classes)) if benign[i] <= g.DEFAULT_TOLERANCE / 4] or list(range(len(classes)))
    chosen: list[int] = []
    covered = np.zeros(shifts.shape[1])
    while len(chosen) < n:
        best, best_gain = None, -1.0
        for i in usable:
            # Round by round: a class gets its k+1-th photo once every class has k (spread over the classes).
            if i in chosen or sum(classes[j] == classes[i] for j in chosen) > len(chosen) // num_classes:
                continue
            gain = float(
                np.minimum(np.maximum(covered, shifts[i]), COVERAGE_CAP).sum() - np.minimum(covered, COVERAGE_CAP).sum()
            )
            gain += 1e-3 * float(np.minimum(shifts[i], COVERAGE_CAP).sum())  # then the most sensitive photo
            if gain > best_gain:
                best, best_gain = i, gain
        if best is None:
            break
        chosen.append(best)
        covered = np.maximum(covered, shifts[best])
    return chosen


def choose_golden(
    paths: tuple[str, ...], labels: np.ndarray, probs: np.ndarray | None, float_model_path: Path | None, resolution: int
) -> GoldenSet:
    """The run's golden photos (see the module docstring). `probs`: the float model's test probabilities;
    `float_model_path`: a float .tflite of the run to measure sensitivity with (None: hash order only)."""
    num_classes = len(set(int(x) for x in labels))
    n = min(g.MAX_IMAGES, max(g.MIN_IMAGES, num_classes))
    cand = _candidates(paths, labels, probs)
    uprights = [open_rgb(paths[i]) for i in cand]
    classes = [int(labels[i]) for i in cand]
    if float_model_path is not None and Path(float_model_path).is_file():
        model = load_model(float_model_path)
        shifts, benign = _shifts(model, [g.encode_photo(im, resolution, g.JPEG_QUALITIES[0]) for im in uprights])
        pick = _greedy(shifts, benign, classes, n)
    else:
        order = sorted(range(len(cand)), key=lambda i: (sum(classes[j] == classes[i] for j in range(i)), i))
        pick = order[:n]
    budget = (g.BUDGET_BYTES - RECORD_ROOM) * 3 // 4
    photos, quality = g.encode_photos([uprights[i] for i in pick], resolution, budget)
    return GoldenSet(photos, [classes[i] for i in pick], [paths[cand[i]] for i in pick], quality)


def _computed_by(model) -> dict:
    return {"edgetl_version": __version__, "runtime": model.backend, "num_threads": model.num_threads}


def _model_input(model) -> dict:
    return {"size": model.input_size, "dtype": model.input_dtype.name, "mean": model.mean, "std": model.std}


def _embed(path: Path, fmt: str, golden: GoldenSet, record: dict | None) -> bytes:
    """The artifact at `path` with the golden files (and `record`) in it; model bytes rebuilt for TFLite."""
    data = path.read_bytes()
    if fmt.startswith("tflite"):
        start = appended_zip_start(data)
        metadata = json.loads(zip_members(data[start:], path)[METADATA_FILE])
        metadata.pop("model_sha256", None)
        return finish(data[:start], metadata, g.golden_members(golden.photos, record))
    import onnx

    proto = onnx.load_model_from_string(data)
    names = {key for key, _ in g.onnx_props(golden.photos, record)}
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in names]
    del proto.metadata_props[:]
    for key, value in keep + g.onnx_props(golden.photos, record):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def embed_golden(path: Path, fmt: str, golden: GoldenSet, labels: list[str]) -> dict:
    """Put `golden` and this artifact's own answers on it into the file at `path` (rewritten atomically);
    returns what export.json records: {images, jpeg_quality, bytes (the file's growth), sources}."""
    path = Path(path)
    before = path.stat().st_size
    atomic_write_bytes(path, _embed(path, fmt, golden, None), f"the {fmt} artifact with golden inputs")
    sha = model_sha256(path)
    model = load_model(path)
    probs = model.predict(g.reference_inputs(golden.photos, model.input_size), batch_size=1)
    record = g.make_record(golden.photos, labels, golden.truth, probs, _model_input(model), _computed_by(model))
    atomic_write_bytes(path, _replace_record(path, fmt, record), f"the {fmt} artifact's golden record")
    if model_sha256(path) != sha:
        raise RuntimeError(f"{path}: writing the golden record changed the model bytes")
    return {
        "images": len(golden.photos),
        "jpeg_quality": golden.quality,
        "bytes": path.stat().st_size - before,
        "sources": golden.sources,
    }


def _replace_record(path: Path, fmt: str, record: dict) -> bytes:
    """The file with only its golden record replaced: the appended archive (TFLite) or one property (ONNX)."""
    data = path.read_bytes()
    new = json.dumps(record, indent=1).encode("utf-8")
    if fmt.startswith("tflite"):
        start = appended_zip_start(data)
        members = zip_members(data[start:], path)
        members[g.RECORD_FILE] = new
        return data[:start] + deterministic_zip(list(members.items()), compress=False)
    import onnx

    proto = onnx.load_model_from_string(data)
    for p in proto.metadata_props:
        if p.key == g.RECORD_FILE:
            p.value = new.decode("utf-8")
    return proto.SerializeToString()
