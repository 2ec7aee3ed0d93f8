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


def test_pixel_store_benchmark_times_each_way_and_prices_a_sweep(tmp_path, capsys):
    script = Path(__file__).resolve().parents[1] / "tools" / "bench_pixel_store.py"
    spec = importlib.util.spec_from_file_location("bench_pixel_store", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rows = [tool.measure(tool.sample_photos(FLOWERS, 4), size) for size in (32, 64)]
    assert [r["raw_bytes"] for r in rows] == [32 * 32 * 3, 64 * 64 * 3]
    assert all(r["decode_s"] > 0 and r["raw_read_s"] > 0 and 0 < r["zlib1_bytes"] < 1.01 * r["raw_bytes"] for r in rows)
    costs = {way: (s, b) for way, s, b in tool.sweep_costs(rows, 100, [2, 3])}
    assert costs["decode at every point"][1] == 0
    assert costs["raw store (edgetl today)"][1] == 100 * (32 * 32 * 3 + 64 * 64 * 3)
    decode_every_point = 100 * (2 * rows[0]["decode_s"] + 3 * rows[1]["decode_s"])
    assert abs(costs["decode at every point"][0] - decode_every_point) < 1e-9
    assert tool.main(["--image_dir", str(FLOWERS), "--photos", "3", "--resolutions", "32", "--grid_points", "2"]) == 0
    assert "raw store (edgetl today)" in capsys.readouterr().out
