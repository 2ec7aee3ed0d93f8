"""Bottleneck features: computed once per (backbone, weights, resolution, preprocessing, image), cached on disk.

Each cache entry is one small file: the float32 vector followed by a 16-byte BLAKE2b digest of it, written
atomically, so a damaged or truncated entry is detected and recomputed instead of poisoning training.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from platformdirs import user_cache_dir
from tqdm import tqdm

from edgetl.data.augment import AUGMENT_VERSION, Distortions, augmented_image
from edgetl.data.dataset import ImageRecord
from edgetl.features.engine import ENGINES
from edgetl.io.faults import fault_point
from edgetl.io.files import DiskError, atomic_write_bytes, disk_reason
from edgetl.io.quiet import bars_off
from edgetl.params import Interval, OneOf, validate
from edgetl.runtime.images import PREPROCESS_VERSION, load_image

DIGEST_BYTES = 16


@dataclass(frozen=True)
class FeatureConfig:
    """Where the backbone's weights and the bottleneck cache come from, and the forward-pass batch.

    `weights`: "imagenet" (Keras' file names, looked up in `weights_dir`, then Keras' cache), "none"
    (random weights: pipeline tests only) or the path of a weights file. `bottleneck_dir`: the cache
    (default: $EDGETL_CACHE_DIR or the user cache dir).
    """

    weights: str = "imagenet"
    weights_dir: Path | None = None
    bottleneck_dir: Path | None = None
    batch_size: int = 32
    augment_views: int = 0  # augmented views of each training image cached beside the image itself
    engine: str = "litert"  # what runs the backbone: "litert" (XNNPACK) or "tensorflow"
    num_threads: int | None = None  # LiteRT's threads; None: every core (a sweep leaves one to its export worker)
    distortions: Distortions | None = None  # retrain.py's distortions make the views instead of edgetl's own

    CONSTRAINTS: ClassVar[dict] = {
        "batch_size": Interval(int, 1),
        "augment_views": Interval(int, 0),
        "engine": OneOf(ENGINES),
        "num_threads": Interval(int, 1, none_ok=True),  # None: every core
    }

    def __post_init__(self) -> None:
        validate(self)
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"weights must be 'imagenet', 'none' or a weights file path, got {self.weights!r}")
        if self.distortions is not None:  # checked here in the existing style; edgetl.params has no Instance rule
            if not isinstance(self.distortions, Distortions):
                raise ValueError(f"distortions must be None or a Distortions, got {self.distortions!r}")
            if self.distortions.active and self.augment_views < 1:
                raise ValueError("distortions shape the augmented views: augment_views must be at least 1 with them")


@dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) float32, row i belongs to records[i]
    records: list[ImageRecord]  # the images that decoded
    failed: dict[Path, str]  # images that could not be decoded -> why
    computed: int  # how many were computed now (the rest came from the cache)
    cached: int


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGETL_CACHE_DIR", user_cache_dir("edgetl"))) / "bottlenecks"


def cache_key(backbone_id: str, weights_sha256: str, resolution: int, engine: str = "tensorflow") -> str:
    text = f"{backbone_id}|{weights_sha256 or 'random'}|{resolution}|preprocess-v{PREPROCESS_VERSION}"
    if engine != "tensorflow":  # TensorFlow's features keep the keys they always had
        text += f"|engine-{engine}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def view_key(key: str, view: int, distortions: Distortions | None = None) -> str:
    """The cache key of augmented view `view` of the images under `key` (view 0 is the image itself)."""
    if view and distortions is not None:
        return f"{key}-{distortions.tag}-view{view}"
    return key if view == 0 else f"{key}-aug{AUGMENT_VERSION}-view{view}"


def _entry_path(cache_dir: Path, key: str, content_hash: str) -> Path:
    return cache_dir / key / content_hash[:2] / f"{content_hash}.bin"


def _read_entry(path: Path, dim: int | None) -> np.ndarray | None:
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    data, digest = blob[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
    if len(blob) <= DIGEST_BYTES or len(data) % 4 or hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest() != digest:
        return None
    vector = np.frombuffer(data, dtype="<f4")
    if dim is not None and vector.size != dim:
        return None
    return vector


def _write_entry(path: Path, vector: np.ndarray) -> None:
    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    # Not fsynced: an entry a power cut leaves torn fails its digest and is computed again, and an fsync
    # per image cost more than the forward pass of a small backbone.
    atomic_write_bytes(path, data + hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest(), durable=False)


def _cache(path: Path, vector: np.ndarray, cache_dir: Path) -> bool:
    """Write one cache entry; False (after one warning) when the cache cannot be written at all."""
    try:
        _write_entry(path, vector)
        return True
    except DiskError as e:
        tqdm.write(
            f"warning: the bottleneck cache {cache_dir} cannot be written ({disk_reason(e)}); "
            "features are computed in memory and nothing more is cached this run"
        )
        return False


def _decode(
    record: ImageRecord, size: int, view: int, load, distortions: Distortions | None = None
) -> tuple[np.ndarray | None, str]:
    try:
        if view:
            return augmented_image(record.path, record.content_hash, size, view, distortions), ""
        return load(record.path, size), ""
    except DiskError:
        raise  # the sweep's decoded-pixel store could not be written: the run's problem, not this file's
    except Exception as e:  # any decoder failure is one bad file, not a crashed run
        return None, f"{type(e).__name__}: {e}"


def compute_features(
    records: Sequence[ImageRecord],
    embed: Callable[[np.ndarray], np.ndarray],
    key: str,
    resolution: int,
    cache_dir: str | Path | None = None,
    batch_size: int = FeatureConfig.batch_size,
    decode_workers: int = 4,
    desc: str = "bottlenecks",
    view: int = 0,
    load=None,
    distortions: Distortions | None = None,
) -> FeatureSet:
    """Features for `records`, from the cache where present, else `embed(uint8 batch) -> (n, D)`.

    `view` 1, 2, ... embeds that augmented view of each image instead (`edgetl.data.augment`), cached under
    `view_key(key, view)`; `distortions` makes those views retrain.py's way (`Distortions`).

    Decoding of the next batch runs in threads while the current batch is embedded. `load` (with
    `load_image`'s signature) is where the pixels come from: a sweep's `edgetl.data.pixels` store, decoded once.
    """
    load = load or load_image
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = view_key(key, view, distortions)
    found: dict[int, np.ndarray] = {}
    dim = None
    for i, r in enumerate(records):
        vector = _read_entry(_entry_path(cache_dir, key, r.content_hash), dim)
        if vector is not None:
            found[i] = vector
            dim = vector.size
    todo = [i for i in range(len(records)) if i not in found]
    failed: dict[Path, str] = {}
    cache_ok = True  # a cache that cannot be written costs the cache, not the run
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with (
        ThreadPoolExecutor(decode_workers) as pool,
        tqdm(total=len(todo), desc=desc, unit="img", disable=not todo or bars_off(), leave=False) as bar,
    ):
        submit = lambda batch: [pool.submit(_decode, records[i], resolution, view, load, distortions) for i in batch]  # noqa: E731
        pending = submit(batches[0]) if batches else []
        for n, batch in enumerate(batches):
            decoded = [f.result() for f in pending]
            pending = submit(batches[n + 1]) if n + 1 < len(batches) else []
            good = []
            for i, (pixels, error) in zip(batch, decoded):
                if pixels is None:
                    failed[records[i].path] = error
                    tqdm.write(f"warning: skipping {records[i].path}: cannot decode ({error})")
                else:
                    good.append((i, pixels))
            if good:
                vectors = np.asarray(embed(np.stack([p for _, p in good]).astype(np.float32)), dtype=np.float32)
                for (i, _), vector in zip(good, vectors):
                    found[i] = vector
                    if cache_ok:
                        cache_ok = _cache(_entry_path(cache_dir, key, records[i].content_hash), vector, cache_dir)
            bar.update(len(batch))
            fault_point("features")

    kept = [i for i in range(len(records)) if i in found]
    features = np.stack([found[i] for i in kept]) if kept else np.zeros((0, 0), np.float32)
    return FeatureSet(
        features=features,
        records=[records[i] for i in kept],
        failed=failed,
        computed=len(todo) - len(failed),
        cached=len(records) - len(todo),
    )
