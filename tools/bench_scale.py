"""Issue 29's scale benchmark: the same `edgetl sweep` at growing numbers of photos, classes and grid points, and
how its time, peak memory and peak disk grow. It measures COST, NOT ACCURACY: the larger data sets are real
photos replicated into distinct files by deterministic crops, flips and tints, and the extra classes are real
classes split into pseudo-classes (a real class seen through one tint), so their accuracies mean nothing.

    .venv/bin/python tools/bench_scale.py --quick                       # smoke test, a few minutes
    .venv/bin/python tools/bench_scale.py --grid small --photos 2500,5000,10000,20000 --classes 5,30,120 \\
        --classes_photos 2500 --out bench_scale.json
    .venv/bin/python tools/bench_scale.py ... --build_only              # make the data sets now, measure later

Each size is one `edgetl sweep` (the real CLI in a subprocess, an empty EDGETL_CACHE_DIR, a fresh output dir),
one at a time. Recorded per size: wall time; each stage's seconds from the sweep's own records (timings.json,
run.json, export.json, bench/*.json: the same reading as tools/bench_sweep.py); peak resident memory of the
sweep and every process it started, summed (bench_sweep's RSS_WRAPPER); peak disk of the pixel store
(OUTPUT/.pixels), the bottleneck cache and the rest of the output (artifacts), each walked about every second
(allocated blocks, so a sparse file counts what is written). The data sets are built first (not timed) and kept
in WORK/data for the next run. The JSON (--out) is rewritten after every size; the table is printed at the end.
Anything after `--` goes to every sweep.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGETL_TEST_DATA", REPO.parent / "shared"))
_SPEC = importlib.util.spec_from_file_location("bench_sweep", Path(__file__).with_name("bench_sweep.py"))
bench_sweep = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench_sweep)
read_json, number, ratio, show = bench_sweep.read_json, bench_sweep.number, bench_sweep.ratio, bench_sweep.show

# --grid name -> the sweep's grid options (README.md "Two commands"; the full grid with weights)
GRIDS = {
    "small": ["--grid", "{small_grid_file}"],
    "readme": ["--backbones", "v1,v2", "--alphas", "0.25,1.0", "--resolutions", "128,224", "--max_latency_ms", "15"],
    "full": ["--backbones", "v1,v2", "--alphas", "0.25,0.5,0.75,1.0", "--resolutions", "128,160,192,224"],
}
SMALL_GRID = (
    "points:\n  - {backbone: v1, alpha: 0.25, resolution: 128}\n  - {backbone: v1, alpha: 1.0, resolution: 224}\n"
)
# issue 29's targets: name -> (comparison, bound)
TARGETS = {"time_linearity": ("<=", 1.1), "memory_over_photos": ("<=", 1.25), "memory_over_grids": ("<=", 1.25)}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
STAGES = ("decode", "features", "head", "save", "checks_in_export", "bench")


def log(message: str) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--source", type=Path, default=SHARED / "datasets" / "flowers", help="real photos, class folders")
    p.add_argument("--weights_dir", type=Path, default=SHARED / "weights")
    p.add_argument(
        "--grid",
        default="small",
        help="comma list of readme|small|full; the series use the first, "
        "each other grid runs once on the smallest photo count (default small)",
    )
    p.add_argument("--photos", default="2500,5000,10000,20000", help="photo counts, at the source's classes")
    p.add_argument("--classes", default="5,30,120", help="class counts at --classes_photos photos ('' skips)")
    p.add_argument("--classes_photos", type=int, default=2500)
    p.add_argument("--formats", default=None, help="passed to every sweep (default: the sweep's own)")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_scale"), help="data sets, outputs, caches, logs")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default WORK/bench_scale.json)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (photos 100,400; classes 5,10 at 100)")
    p.add_argument("--build_only", action="store_true", help="make the data sets and stop")
    p.add_argument("--deadline", default=None, help="HH:MM UTC: skip a sweep predicted to end after it")
    p.add_argument("--sample_s", type=float, default=1.0, help="disk sampling period (at least 10x a walk)")
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.quick:
        args.photos, args.classes, args.classes_photos = "100,400", "5,10", 100
    args.photos = [int(n) for n in args.photos.split(",") if n]
    args.classes = [int(n) for n in args.classes.split(",") if n]
    args.grid = [g for g in args.grid.split(",") if g]
    bad = [g for g in args.grid if g not in GRIDS]
    if bad:
        p.error(f"unknown --grid {','.join(bad)}; expected readme, small or full")
    args.out = args.out or args.work / "bench_scale.json"
    return args, extra


# data sets: real photos, replicated and split into pseudo-classes (deterministic, distinct files)


def real_classes(source: Path) -> dict[str, list[Path]]:
    classes = {
        d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        for d in sorted(source.iterdir())
        if d.is_dir()
    }
    return {name: files for name, files in classes.items() if files}


def plan_dataset(real: dict[str, list[Path]], photos: int, classes: int) -> dict[str, list[tuple[Path, int, int]]]:
    """Pseudo-class name -> its photos as (source photo, replica round, tint group). Pseudo-class k is real class
    k % C seen through tint group k // C (group 0: no class tint, the real class' name); its photos are that real
    class' photos in order, round r being the r-th pass over them. Photo j of a class does not depend on
    `photos`, so a smaller set's photos are the first ones of a larger set's."""
    names = list(real)
    plan: dict[str, list[tuple[Path, int, int]]] = {}
    per, extra = divmod(photos, classes)
    groups_of = [(k % len(names), k // len(names)) for k in range(classes)]
    n_groups = {c: sum(1 for cc, _ in groups_of if cc == c) for c in range(len(names))}
    for k, (c, g) in enumerate(groups_of):
        files, count = real[names[c]], per + (k < extra)
        # groups of one real class take disjoint runs of its photos while there are enough of them
        offset = g * (len(files) // n_groups[c])
        name = names[c] if classes <= len(names) else f"{names[c]}_{g:02d}"
        plan[name] = [(files[(offset + j) % len(files)], (offset + j) // len(files), g) for j in range(count)]
    return plan


def tint_of_group(g: int) -> tuple[float, float, float]:
    if g == 0:
        return (1.0, 1.0, 1.0)
    rng = random.Random(f"group-{g}")
    return tuple(rng.uniform(0.6, 1.4) for _ in range(3))


def replica(source: Path, r: int, g: int, salt: int = 0) -> bytes:
    """One photo as JPEG bytes: a crop of 80-97 % of each side resized back to the original size, a flip, a mild
    tint, then its group's tint; all drawn from (class, file name, round, group, salt): the same every run."""
    from PIL import Image, ImageOps

    # the class folder is in the seed: flowers holds a few photos twice, under the same name in two classes
    rng = random.Random(f"{source.parent.name}/{source.name}/{r}/{g}/{salt}")
    with Image.open(source) as im:
        image = ImageOps.exif_transpose(im).convert("RGB")
    w, h = image.size
    cw, ch = int(w * rng.uniform(0.80, 0.97)), int(h * rng.uniform(0.80, 0.97))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    image = image.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    tint = [a * rng.uniform(0.92, 1.08) for a in tint_of_group(g)]
    bands = [band.point(lambda v, a=a: min(255, int(v * a))) for band, a in zip(image.split(), tint)]
    image = Image.merge("RGB", bands)
    from io import BytesIO

    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write_class(job: tuple[str, list[tuple[Path, int, int]], str]) -> list[str]:
    name, photos, dest = job
    folder = Path(dest) / name
    folder.mkdir(parents=True, exist_ok=True)
    seen, hashes = set(), []
    for j, (source, r, g) in enumerate(photos):
        salt = 0
        while True:  # a repeated file would be a cache hit, not a cost: draw again (never happens in practice)
            data = replica(source, r, g, salt)
            digest = hashlib.sha256(data).hexdigest()
            if digest not in seen:
                break
            salt += 1
        seen.add(digest)
        hashes.append(digest)
        (folder / f"{source.stem}_r{r}g{g}_{j:05d}.jpg").write_bytes(data)
    return hashes


def meta(dest: Path) -> Path:
    """A data set's settings, beside it (a file inside would be a stray file in the class-folder root)."""
    return dest.parent / f"{dest.name}.json"


def build_dataset(source: Path, photos: int, classes: int, dest: Path, workers: int | None = None) -> Path:
    """`dest` as a class-folder data set of `photos` distinct JPEGs in `classes` classes (reused when made
    before with the same settings). Raises ValueError when the source has fewer real classes than 1."""
    settings = {"source": str(source.resolve()), "photos": photos, "classes": classes, "version": 2}
    if read_json(meta(dest)).get("settings") == settings:
        return dest
    real = real_classes(source)
    if not real:
        raise ValueError(f"{source}: no class folders with photos")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    started = time.perf_counter()
    jobs = [(name, ph, str(dest)) for name, ph in plan_dataset(real, photos, classes).items()]
    workers = workers or os.cpu_count() or 1
    if workers == 1:  # in this process (the tests import this file, which a worker could not)
        hashes = [h for job in jobs for h in _write_class(job)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            hashes = [h for hs in pool.map(_write_class, jobs) for h in hs]
    distinct = len(set(hashes))
    info = {"settings": settings, "files": len(hashes), "distinct": distinct, "build_s": time.perf_counter() - started}
    meta(dest).write_text(json.dumps(info, indent=2))
    log(f"built {dest}: {len(hashes)} photos ({distinct} distinct), {len(jobs)} classes, {info['build_s']:.0f} s")
    return dest


# measuring one sweep


def allocated(path: Path) -> int:
    """Bytes allocated under `path` (st_blocks: a sparse file counts what is written)."""
    total, todo = 0, [path]
    while todo:
        try:
            with os.scandir(todo.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        todo.append(e.path)
                    else:
                        total += e.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
    return total


class DiskSampler(threading.Thread):
    """Peak bytes of each named directory (and of their sum), walked every `period` s or 10x a walk's time."""

    def __init__(self, dirs: dict[str, Path], period: float = 1.0):
        super().__init__(daemon=True)
        self.dirs, self.period, self.stop = dirs, period, threading.Event()
        self.peak = {name: 0 for name in [*dirs, "total"]}
        self.walk_s, self.samples = 0.0, 0

    def sample(self) -> None:
        started = time.perf_counter()
        sizes = {name: allocated(d) for name, d in self.dirs.items()}
        if "pixels" in sizes and "output" in sizes:
            sizes["output"] -= sizes["pixels"]  # the store lives inside the output dir: counted once, as pixels
        sizes["total"] = sum(sizes.values())
        for name, v in sizes.items():
            self.peak[name] = max(self.peak[name], v)
        self.walk_s += time.perf_counter() - started
        self.samples += 1

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.sample()
            self.stop.wait(max(self.period, 10 * (time.perf_counter() - started)))
        self.sample()


def stage_seconds(out: Path) -> dict:
    """The sweep's stages summed over its points: decode, features, head, save, each export format, the
    per-class checks (inside the exports' seconds), bench."""
    b = bench_sweep.sweep_breakdown(out, {})
    points = b["points"].values()

    def total(values) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) if known else None

    formats = sorted({f for p in points for f in p["export"]})
    checks = []
    for p in sorted((out / "points").glob("*/artifacts/export.json")):
        for entry in (read_json(p).get("formats") or {}).values():
            checks.append(number(entry, "class_fidelity", "seconds"))
    return {
        "decode": b["decode_once_s"],
        "features": total(p["features"] for p in points),
        "head": total(p["head"] for p in points),
        "save": total(p["save"] for p in points),
        "export": {f: total(p["export"].get(f) for p in points) for f in formats},
        "checks_in_export": total(checks),
        "bench": total(v for p in points for v in p["bench"].values()),
        "sweep_wall_s": b["sweep_wall_s"],
        "points_ran": len(b["points"]),
        "per_point": b["points"],
    }


def run_sweep(label: str, image_dir: Path, grid_cli: list[str], args, extra: list[str]) -> dict:
    """One `edgetl sweep` from an empty cache into a fresh output dir: wall, stages, peak RSS and disk."""
    out, cache = args.work / "runs" / label, args.work / "runs" / f"{label}-cache"
    for d in (out, cache):
        shutil.rmtree(d, ignore_errors=True)
    cache.mkdir(parents=True)
    cli = ["sweep", "--image_dir", str(image_dir), "--weights_dir", str(args.weights_dir), *grid_cli]
    cli += ["--output_dir", str(out), *(["--formats", args.formats] if args.formats else []), *extra]
    rss_file, log_file = args.work / "runs" / f"{label}.rss", args.work / "runs" / f"{label}.log"
    # this tree's edgetl, whichever tree the venv's `edgetl` entry point was installed from
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "EDGETL_CACHE_DIR": str(cache), "EDGETL_NO_DOWNLOAD": "1", "PYTHONPATH": path}
    edgetl = [sys.executable, "-m", "edgetl.cli"]
    cmd = [sys.executable, "-c", bench_sweep.RSS_WRAPPER, str(rss_file), *edgetl, *cli]
    sampler = DiskSampler({"pixels": out / ".pixels", "cache": cache, "output": out}, args.sample_s)
    log(f"{label}: edgetl sweep of {image_dir.name} (log {log_file})")
    started = time.perf_counter()
    sampler.start()
    with open(log_file, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    text = log_file.read_text(errors="replace")
    if code:
        log(f"{label}: edgetl sweep exited {code}; the end of its log:\n" + "\n".join(text.splitlines()[-15:]))
    photos = count_photos(image_dir)
    classes = sum(1 for d in image_dir.iterdir() if d.is_dir())
    peak_rss = int(rss_file.read_text()) / 1024 if rss_file.is_file() else None
    return {
        "label": label,
        "image_dir": str(image_dir),
        "photos": photos,
        "classes": classes,
        "exit": code,
        "wall_s": wall,
        "images_per_s": photos / wall if wall else None,
        "peak_rss_mib": peak_rss,
        "peak_disk_bytes": sampler.peak,
        "disk_samples": sampler.samples,
        "disk_walk_s": sampler.walk_s,
        "announced": announced(text),
        "load_average_1min_after": os.getloadavg()[0],
        "stages": stage_seconds(out),
    }


def announced(log_text: str) -> dict:
    """The sweep's own disk announcement (edgetl.sweep.space): its line, total and pixel-store MB."""
    line = next((ln for ln in log_text.splitlines() if ln.startswith("disk: about")), None)
    if line is None:
        return {}
    found = re.search(r"about (\d+) MB at most: the decoded-pixel store (\d+) MB", line)
    return {"line": line, **({"total_mb": int(found[1]), "pixels_mb": int(found[2])} if found else {})}


# the table and the ratios


def mb(v: float | None) -> str:
    return "n/a" if v is None else f"{v / 1e6:.0f}"


def table(rows: list[dict]) -> list[str]:
    formats = sorted({f for r in rows for f in r["stages"]["export"]})
    short = {f: f.replace("tflite-", "tfl-").replace("float32", "f32").replace("onnx-", "onx-") for f in formats}
    head = ["decode", "feat", "head", "save", *(short[f] for f in formats), "checks", "bench"]
    lines = [
        "time, seconds (stages summed over the grid's points, each as the sweep recorded it; exports run beside the",
        "next point's training, so stages can add up to more than the wall; checks = the per-class check, inside",
        "the exports' seconds)",
        f"  {'size':<16}{'photos':>7}{'cls':>5}{'pts':>4}{'wall':>8}{'img/s':>7}" + "".join(f"{h:>9}" for h in head),
    ]
    for r in rows:
        s = r["stages"]
        cells = [s["decode"], s["features"], s["head"], s["save"], *(s["export"].get(f) for f in formats)]
        cells += [s["checks_in_export"], s["bench"]]
        lines.append(
            f"  {r['label']:<16}{r['photos']:>7}{r['classes']:>5}{s['points_ran']:>4}{r['wall_s']:>8.1f}"
            f"{show(r['images_per_s'], 1):>7}"
            + "".join(f"{show(v, 1):>9}" for v in cells)
            + ("" if r["exit"] == 0 else f"   exit {r['exit']}")
        )
    lines += [
        "",
        "peak memory (MB, the sweep and its workers summed), peak disk (MB allocated; KB per photo) and the disk the",
        "sweep announced before starting (MB, its 'disk: about' line: at most, with a 1.5x margin; pixel store exact);",
        "total = the largest sum at one moment (the pixel store is deleted before the end)",
        f"  {'size':<16}{'photos':>7}{'rss':>7}{'pixels':>8}{'cache':>8}{'output':>8}{'total':>8}"
        f"{'pix/ph':>8}{'cache/ph':>9}{'total/ph':>9}{'announced (pixels)':>20}",
    ]
    for r in rows:
        d, n = r["peak_disk_bytes"], r["photos"]
        per = [d["pixels"] / n / 1e3, d["cache"] / n / 1e3, d["total"] / n / 1e3] if n else [None] * 3
        lines.append(
            f"  {r['label']:<16}{n:>7}{show(r['peak_rss_mib'], 0):>7}{mb(d['pixels']):>8}{mb(d['cache']):>8}"
            f"{mb(d['output']):>8}{mb(d['total']):>8}"
            + "".join(f"{show(v, 0):>9}" for v in per)
            + f"{r['announced'].get('total_mb', 'n/a'):>12} ({r['announced'].get('pixels_mb', 'n/a')})"
        )
    return lines


def verdict(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    op, bound = TARGETS[name]
    return "MET" if (value <= bound if op == "<=" else value >= bound) else "NOT MET"


def spread(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key)]
    return max(values) / min(values) if len(values) > 1 else None


def ratios(series: list[dict], classes: list[dict], grids: list[dict]) -> tuple[dict, list[str]]:
    """Time linearity (largest photo count against the one nearest a quarter of it), memory spreads, disk."""
    r: dict = {}
    lines = ["", "ratios (issue 29's targets)"]
    ok = sorted((x for x in series if x["exit"] == 0), key=lambda x: x["photos"])
    if len(ok) > 1:
        big = ok[-1]
        ref = min(ok[:-1], key=lambda x: abs(big["photos"] / x["photos"] - 4))
        k = big["photos"] / ref["photos"]
        r["time_linearity"] = ratio(big["wall_s"], k * ref["wall_s"])
        r["time_linearity_sizes"] = [ref["photos"], big["photos"]]
        lines.append(
            f"  time({big['photos']}) / ({k:g} x time({ref['photos']})) = {big['wall_s']:.1f} / ({k:g} x "
            f"{ref['wall_s']:.1f}) = {show(r['time_linearity'])}   target <= 1.1   "
            + verdict("time_linearity", r["time_linearity"])
        )
        pairs = [(stage, big["stages"][stage], ref["stages"][stage]) for stage in STAGES]
        pairs += [(f"export {f}", v, ref["stages"]["export"].get(f)) for f, v in big["stages"]["export"].items()]
        for stage, a, b in pairs:
            scaled = ratio(a, None if b is None else k * b)
            lines.append(f"    {stage:<22} {show(a, 1):>8} / ({k:g} x {show(b, 1):>7}) = {show(scaled)}")
    for name, rows, what in (
        ("memory_over_photos", ok, "photo counts"),
        ("memory_over_classes", classes, "class counts"),
        ("memory_over_grids", grids, "grids"),
    ):
        r[name] = spread(rows, "peak_rss_mib")
        target = f"target <= 1.25   {verdict(name, r[name])}" if name in TARGETS else "(no target)"
        lines.append(f"  peak RSS largest / smallest across {what}: {show(r[name])}   {target}")
    every = ok + classes + grids
    if every:
        big = max(every, key=lambda x: x["photos"])
        d = big["peak_disk_bytes"]
        r["disk_per_photo_kb"] = d["total"] / big["photos"] / 1e3
        lines.append(
            f"  disk per photo at {big['photos']} photos: {r['disk_per_photo_kb']:.0f} KB peak (pixel store "
            f"{d['pixels'] / big['photos'] / 1e3:.0f}, cache {d['cache'] / big['photos'] / 1e3:.0f}, output "
            f"{d['output'] / big['photos'] / 1e3:.0f}); {mb(d['total'])} MB in all"
        )
    lines.append("  (cost only: replicated photos and pseudo-classes make the accuracies meaningless)")
    return r, lines


def save(results: dict, path: Path) -> None:
    from edgetl.io.files import atomic_write_json

    atomic_write_json(path, results)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    (args.work / "runs").mkdir(parents=True, exist_ok=True)
    small_grid = args.work / "small_grid.yaml"
    small_grid.write_text(SMALL_GRID)
    grids = {g: [a.format(small_grid_file=small_grid) for a in GRIDS[g]] for g in args.grid}
    n_real = len(real_classes(args.source))
    data = args.work / "data"
    log(f"building data sets in {data} (not timed)")
    top = build_dataset(args.source, max(args.photos), n_real, data / f"{n_real}c-{max(args.photos)}")
    photo_sets = {n: link_subset(top, n, data / f"{n_real}c-{n}") for n in args.photos}
    class_sets = {
        k: photo_sets[args.classes_photos]
        if k == n_real and args.classes_photos in photo_sets
        else build_dataset(args.source, args.classes_photos, k, data / f"{k}c-{args.classes_photos}")
        for k in args.classes
    }
    if args.build_only:
        return 0
    first = args.grid[0]
    results: dict = {
        "note": "cost, not accuracy: replicated photos and pseudo-classes",
        "settings": {**{k: str(v) for k, v in vars(args).items()}, "sweep_args": extra},
        "cpu_count": os.cpu_count(),
        "nice": os.nice(0),
        "load_average_1min_before": os.getloadavg()[0],
        "photos": [],
        "classes": [],
        "grids": [],
        "skipped": [],
    }
    jobs = [("photos", f"{first}-{n}ph", d, first) for n, d in photo_sets.items()]
    jobs += [("classes", f"{first}-{k}cls", d, first) for k, d in class_sets.items()]
    jobs += [("grids", f"{g}-{min(args.photos)}ph", photo_sets[min(args.photos)], g) for g in args.grid[1:]]
    done: dict[str, dict] = {}
    for section, label, d, g in jobs:
        same = next((r for r in done.values() if r["image_dir"] == str(d) and r["grid"] == g), None)
        if same is not None:  # the same data set and grid as a row already run (e.g. 5 classes): not run twice
            results[section].append({**same, "same_run_as": same["label"]})
            continue
        late = past_deadline(args.deadline, list(done.values()), count_photos(d))
        if late:
            log(f"{label}: skipped, {late}")
            results["skipped"].append({"label": label, "why": late})
            continue
        done[label] = {**run_sweep(label, d, grids[g], args, extra), "grid": g}
        results[section].append(done[label])
        save(results, args.out)
    if results["grids"]:
        smallest = next(r for r in results["photos"] if r["photos"] == min(args.photos))
        results["grids"].insert(0, smallest)
    rows = sorted(done.values(), key=lambda r: (r["grid"] != first, r["classes"], r["photos"]))
    lines = [f"bench_scale: edgetl sweep, grid {first} ({' '.join(grids[first])}), {args.source.name} photos."]
    lines += ["COST, NOT ACCURACY: the photos are replicas (crops, flips, tints), the extra classes pseudo-classes."]
    lines += table(rows)
    lines += [f"  skipped {s['label']}: {s['why']}" for s in results["skipped"]]
    results["ratios"], more = ratios(results["photos"], results["classes"], results["grids"])
    results["load_average_1min_after"] = os.getloadavg()[0]
    lines += more
    lines.append(
        f"1-minute load average {results['load_average_1min_before']:.2f} before, "
        f"{results['load_average_1min_after']:.2f} after, {os.cpu_count()} cores, nice {results['nice']}"
    )
    results["table"] = lines
    save(results, args.out)
    print("\n".join(lines) + f"\nwritten: {args.out}", flush=True)
    return 1 if any(r["exit"] for r in rows) else 0


def count_photos(image_dir: Path) -> int:
    return read_json(meta(image_dir)).get("files") or sum(1 for _ in image_dir.glob("*/*.jpg"))


def past_deadline(deadline: str | None, done: list[dict], photos: int) -> str | None:
    """Why a sweep of `photos` photos would end after `deadline` (HH:MM UTC), from a line through the two largest
    sweeps run (wall = a + b x photos; one sweep: wall per photo), or None."""
    if not deadline or not done:
        return None
    runs = sorted(done, key=lambda r: r["photos"])[-2:]
    if len(runs) == 2 and runs[1]["photos"] > runs[0]["photos"]:
        slope = (runs[1]["wall_s"] - runs[0]["wall_s"]) / (runs[1]["photos"] - runs[0]["photos"])
        predicted = runs[1]["wall_s"] + max(slope, 0.0) * (photos - runs[1]["photos"])
    else:
        predicted = runs[-1]["wall_s"] * photos / runs[-1]["photos"]
    hours, minutes = map(int, deadline.split(":"))
    now = time.gmtime()
    left = (hours * 60 + minutes) * 60 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
    if predicted <= left:
        return None
    return f"predicted {predicted:.0f} s, {max(left, 0):.0f} s left before {deadline} UTC"


def link_subset(top: Path, photos: int, dest: Path) -> Path:
    """The first `photos` photos of `top` (its classes' first files, in the plan's order) as symlinks."""
    if dest == top:
        return top
    info = read_json(meta(top))
    settings = {**info["settings"], "photos": photos, "linked_from": str(top)}
    if read_json(meta(dest)).get("settings") == settings:
        return dest
    real = real_classes(Path(info["settings"]["source"]))
    plan = plan_dataset(real, photos, info["settings"]["classes"])
    shutil.rmtree(dest, ignore_errors=True)
    for name, items in plan.items():
        (dest / name).mkdir(parents=True)
        for j, (source, r, g) in enumerate(items):
            file = f"{source.stem}_r{r}g{g}_{j:05d}.jpg"
            (dest / name / file).symlink_to((top / name / file).resolve())
    meta(dest).write_text(json.dumps({"settings": settings, "files": photos}, indent=2))
    return dest


if __name__ == "__main__":
    sys.exit(main())
