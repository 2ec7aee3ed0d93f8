"""Saved test-split predictions are found again whichever way the image folder was named (no TensorFlow)."""

from __future__ import annotations

import hashlib

import numpy as np

from edgetl.export.predictions import REFERENCE, recorded_reference, save_reference
from edgetl.io.files import sha256_file


def _images(root, n: int = 3) -> list:
    (root / "photos" / "a").mkdir(parents=True)
    paths = [root / "photos" / "a" / f"{i}.jpg" for i in range(n)]
    for p in paths:
        p.write_bytes(b"jpeg")
    return paths


def _run(run_dir, reference: dict) -> dict:
    return {"classes": ["a", "b"], "files": {REFERENCE: sha256_file(run_dir / REFERENCE)}, "reference": reference}


def test_a_reference_recorded_from_a_relative_image_dir_is_found_from_the_absolute_one(tmp_path, monkeypatch):
    """`edgetl train --image_dir ../photos` scans relative paths; run.json records the folder resolved and
    `edgetl export` scans that: the float predictions train recorded must still be used, not recomputed."""
    paths = _images(tmp_path)
    monkeypatch.chdir(tmp_path / "photos")
    relative = [f"../photos/a/{p.name}" for p in paths]
    probs = np.random.default_rng(0).random((len(paths), 2)).astype(np.float32)
    run = _run(tmp_path, save_reference(tmp_path, probs, relative))
    found = recorded_reference(tmp_path, run, [str(p) for p in paths])
    assert found is not None and np.array_equal(found, probs)
    assert recorded_reference(tmp_path, run, relative) is not None
    assert recorded_reference(tmp_path, run, [str(p) for p in paths[::-1]]) is None  # other order: not used
    assert recorded_reference(tmp_path, run, [str(p) for p in paths[:2]]) is None  # other images: not used


def test_a_reference_recorded_before_paths_were_resolved_still_reads(tmp_path, monkeypatch):
    """run.json files written before hashed the paths as given: the same paths still match them."""
    paths = _images(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "photos")  # resolving changes these paths: only the old hash can match
    given = [str(link / "a" / p.name) for p in paths]
    probs = np.ones((len(paths), 2), np.float32)
    entry = save_reference(tmp_path, probs, given)
    entry["images_sha256"] = hashlib.sha256("\n".join(given).encode()).hexdigest()  # as written before
    run = _run(tmp_path, entry)
    assert recorded_reference(tmp_path, run, given) is not None
    assert recorded_reference(tmp_path, run, given[::-1]) is None
