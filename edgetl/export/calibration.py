"""Representative images for int8 quantization, and the manifest that makes them reproducible.

Full-integer models fix their activation ranges from a few hundred images. Which images, in which
order, decoded how, decides the artifact's bytes: so the choice is deterministic (training split
only, never test images, balanced across classes) and written down in a manifest beside every int8
artifact. Re-using a manifest (`--calibration_manifest`) gives a bit-identical int8 artifact, and a
manifest whose images changed or vanished is refused, naming the files, rather than silently
calibrating on something else. The format is documented in calibration/README.md.

TensorFlow-free (numpy + Pillow via edgetl.data.dataset), like edgetl.data.dataset itself.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from edgetl.data.dataset import Dataset, ImageRecord
from edgetl.export.formats import ExportError
from edgetl.io.files import atomic_write_json, sha256_file
from edgetl.runtime.images import PREPROCESSING, load_image

MANIFEST_KIND = "edgetl-calibration-manifest"
MANIFEST_FORMAT_VERSION = 1
SELECTION = (
    "training split only; one image per class in turn (classes in label order), each class's images "
    "ordered by sha256 of their content; exact duplicates counted once"
)
MAX_NAMED_FILES = 20


@dataclass
class CalibrationSet:
    """The calibration images as the converters want them, and the manifest that describes them."""

    images: np.ndarray  # float32 (N, R, R, 3), pixels 0..255, in manifest order
    manifest: dict
    notes: list[str] = field(default_factory=list)


def _relative_posix(path: Path, root: Path) -> str:
    try:
        rel = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path).relative_to(root)
    return PurePosixPath(*rel.parts).as_posix()


def candidate_order(dataset: Dataset) -> dict[str, list[ImageRecord]]:
    """Per class, the training images in the order they are drawn (deterministic, name-independent).

    Ordering by content hash is a stable pseudo-random shuffle: it does not favour files whose names
    sort first (often one photographer or one day), and it does not change when files are renamed.
    """
    seen: set[str] = set()
    by_class: dict[str, list[ImageRecord]] = {c: [] for c in dataset.classes}
    for r in sorted(dataset.split("training"), key=lambda r: (r.content_hash, str(r.path))):
        if r.content_hash in seen:
            continue
        seen.add(r.content_hash)
        by_class[r.label].append(r)
    return by_class


def build_calibration_set(
    dataset: Dataset, resolution: int, num_images: int, load=None, exclude_hashes=frozenset()
) -> CalibrationSet:
    """Draw `num_images` training images, balanced across classes, and decode them as at inference
    (with `load`, `load_image`'s signature: a sweep's images decoded once), none whose content is in
    `exclude_hashes` (the earlier sets of `--calibration_repeats`: disjoint sets, drawn in the same order).

    Round robin over classes: counts differ by at most one unless a class runs out, in which case
    the others fill the remaining slots. Undecodable files are skipped (and noted).
    """
    if num_images < 1:
        raise ExportError(f"the number of calibration images must be at least 1, got {num_images}")
    load = load or load_image
    queues = {
        c: deque(r for r in rs if r.content_hash not in exclude_hashes) for c, rs in candidate_order(dataset).items()
    }
    chosen: list[tuple[ImageRecord, np.ndarray]] = []
    notes: list[str] = []
    while len(chosen) < num_images and any(queues.values()):
        for label in dataset.classes:
            if len(chosen) >= num_images:
                break
            queue = queues[label]
            while queue:
                record = queue.popleft()
                try:
                    chosen.append((record, load(record.path, resolution)))
                    break
                except (OSError, ValueError) as e:
                    notes.append(f"calibration: skipping undecodable {record.path}: {e}")
    if not chosen:
        raise ExportError(f"no decodable training images in {dataset.root} to calibrate int8 formats with")
    if len(chosen) < num_images:
        notes.append(f"calibration: only {len(chosen)} training images available (asked for {num_images})")
    root = Path(dataset.root).resolve()
    manifest = {
        "kind": MANIFEST_KIND,
        "format_version": MANIFEST_FORMAT_VERSION,
        "dataset_root": str(root),
        "resolution": int(resolution),
        "preprocessing": copy.deepcopy(PREPROCESSING),
        "selection": SELECTION,
        "num_images": len(chosen),
        "images": [
            {"path": _relative_posix(r.path, root), "label": r.label, "sha256": r.content_hash} for r, _ in chosen
        ],
    }
    images = np.stack([img for _, img in chosen]).astype(np.float32)
    return CalibrationSet(images, manifest, notes)


def load_manifest(path: str | Path) -> dict:
    """Read and validate a manifest's structure (the images themselves are checked on use)."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"calibration manifest not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ExportError(f"calibration manifest {path} is not readable JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise ExportError(f'{path} is not an edgetl calibration manifest (no "kind": "{MANIFEST_KIND}")')
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > MANIFEST_FORMAT_VERSION:
        raise ExportError(
            f"calibration manifest {path} has format_version {version!r}; this edgetl reads up to "
            f"{MANIFEST_FORMAT_VERSION} (upgrade edgetl)"
        )
    images = manifest.get("images")
    if not isinstance(manifest.get("dataset_root"), str) or not isinstance(images, list) or not images:
        raise ExportError(f"calibration manifest {path} needs a dataset_root and a non-empty images list")
    for i, entry in enumerate(images):
        if not (
            isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str)
        ):
            raise ExportError(f'calibration manifest {path}: images[{i}] needs "path" and "sha256" strings')
    manifest = dict(manifest)
    manifest["_source"] = str(path)
    return manifest


def _name_files(files: list[str]) -> str:
    shown = ", ".join(files[:MAX_NAMED_FILES])
    return shown + (f" and {len(files) - MAX_NAMED_FILES} more" if len(files) > MAX_NAMED_FILES else "")


def calibration_set_from_manifest(
    manifest: dict, resolution: int, fallback_root: str | Path | None = None
) -> CalibrationSet:
    """Decode exactly the manifest's images, in its order, after checking every file's sha256.
    (Each check has its own message naming the files, which is what makes it a little over 60 lines.)

    `fallback_root` (the run's image_dir) is used when the manifest's dataset_root does not exist,
    so a dataset moved to another machine or folder still works: paths are relative, hashes decide.
    """
    source = manifest.get("_source", "the calibration manifest")
    notes: list[str] = []
    root = Path(manifest["dataset_root"])
    if not root.is_dir():
        if fallback_root is not None and Path(fallback_root).is_dir():
            notes.append(f"calibration: {root} not found; reading the manifest's images under {fallback_root}")
            root = Path(fallback_root)
        else:
            raise ExportError(f"{source}: dataset_root {root} does not exist")
    missing, changed = [], []
    paths = []
    for entry in manifest["images"]:
        p = root / entry["path"]
        paths.append(p)
        if not p.is_file():
            missing.append(str(p))
        elif sha256_file(p) != entry["sha256"]:
            changed.append(str(p))
    if missing or changed:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) missing: {_name_files(missing)}")
        if changed:
            parts.append(
                f"{len(changed)} image(s) changed since it was written (sha256 differs): {_name_files(changed)}"
            )
        raise ExportError(
            f"{source} cannot be reused: "
            + "; ".join(parts)
            + ". Restore those files, or drop --calibration_manifest to draw a new calibration set."
        )
    images, failed = [], []
    for p in paths:
        try:
            images.append(load_image(p, resolution))
        except (OSError, ValueError) as e:
            failed.append(f"{p} ({e})")
    if failed:
        raise ExportError(f"{source}: image(s) cannot be decoded: {_name_files(failed)}")
    if manifest.get("preprocessing") != PREPROCESSING:
        notes.append(
            f"calibration: {source} was written with other preprocessing ({manifest.get('preprocessing')}); "
            "its images are decoded with the current one, so int8 artifacts will differ from the original ones"
        )
    if manifest.get("resolution") not in (None, resolution):
        notes.append(
            f"calibration: {source} was written at {manifest.get('resolution')} px; decoding at {resolution} px"
        )
    out = {k: copy.deepcopy(v) for k, v in manifest.items() if not k.startswith("_")}
    out.update(
        {
            "dataset_root": str(root.resolve()),
            "resolution": int(resolution),
            "preprocessing": copy.deepcopy(PREPROCESSING),
            "num_images": len(images),
        }
    )
    return CalibrationSet(np.stack(images).astype(np.float32), out, notes)


def write_manifest(path: str | Path, manifest: dict) -> Path:
    """Atomically write a manifest (private keys, such as where it was read from, left out)."""
    return atomic_write_json(path, {k: v for k, v in manifest.items() if not k.startswith("_")})


def manifest_sha256(manifest: dict) -> str:
    """The SHA-256 of a manifest's content (canonical JSON), recorded in every int8 artifact's metadata."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
