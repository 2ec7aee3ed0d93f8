"""tools/bench_scale.py's data sets: replicated photos are distinct files, the same every run, and a smaller set's
photos are the first of a larger one's (no TensorFlow, no sweep)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_scale.py"
SPEC = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
bench_scale = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_scale)
FLOWERS = bench_scale.SHARED / "datasets" / "flowers"


def tiny_source(tmp_path: Path) -> Path:
    for name in ("daisy", "roses"):
        (tmp_path / "src" / name).mkdir(parents=True)
        for f in sorted((FLOWERS / name).glob("*.jpg"))[:3]:
            (tmp_path / "src" / name / f.name).symlink_to(f)
    return tmp_path / "src"


def digests(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.rglob("*.jpg")}


def test_replicas_are_distinct_deterministic_and_nested(tmp_path):
    source = tiny_source(tmp_path)
    a = digests(bench_scale.build_dataset(source, 14, 2, tmp_path / "a", workers=1))
    assert len(a) == 14 and len(set(a.values())) == 14  # 3 real photos per class, replicated into 7 distinct files
    assert digests(bench_scale.build_dataset(source, 14, 2, tmp_path / "b", workers=1)) == a
    small = digests(bench_scale.link_subset(tmp_path / "a", 6, tmp_path / "a6"))
    assert len(small) == 6 and all(a[name] == digest for name, digest in small.items())


def test_pseudo_classes_split_real_classes_into_tint_groups(tmp_path):
    source = tiny_source(tmp_path)
    plan = bench_scale.plan_dataset(bench_scale.real_classes(source), 12, 6)
    assert sorted(plan) == [f"{c}_{g:02d}" for c in ("daisy", "roses") for g in range(3)]
    assert all(len(photos) == 2 for photos in plan.values())
    assert {g for _, _, g in plan["roses_02"]} == {2}
    built = bench_scale.build_dataset(source, 12, 6, tmp_path / "c", workers=1)
    assert len(set(digests(built).values())) == 12
