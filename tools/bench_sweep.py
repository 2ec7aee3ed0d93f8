"""Issue 12's benchmark: the README sweep from an empty cache, where its time goes, and its ratios to the
floor it cannot beat and to the Keras recipe it should beat.

    .venv/bin/python tools/bench_sweep.py --out bench_sweep.json       # everything (about an hour here)
    .venv/bin/python tools/bench_sweep.py --skip_keras --skip_memory   # floor, cold and warm sweep only

Steps, one at a time (two at once would share the cores and spoil each other's timings): the floor (each
point's backbone as TFLite in LiteRT, batch 1, all cores, over the whole data set preloaded as uint8), the
README sweep with an empty EDGETL_CACHE_DIR and again warm, the Keras recipe against `edgetl train` cold and
warm on edgetl's own split (accuracies paired), and the peak RSS of a 4- and a 16-point sweep on a subset.
Figures are printed as soon as known and written to --out after every step. Anything after `--` goes to
both README sweep commands. Progress goes to stderr, edgetl's own output to WORK_DIR/*.log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGETL_TEST_DATA", REPO.parent / "shared"))
# The README's grid (backbones, alphas, resolutions): the sweep timed unless --backbones/--alphas/--resolutions.
README_GRID = ("v1,v2", "0.25,1.0", "128,224")
# Issue 12's targets: ratio name -> (comparison, bound).
TARGETS = {
    "sweep_overhead": ("<=", 4.0),
    "extraction_efficiency": (">=", 0.85),
    "warm_over_cold": ("<=", 0.10),
    "int8_export_cost": ("<=", 2.0),
    "recipe_over_train_cold": (">=", 5.0),
    "recipe_over_train_warm": (">=", 20.0),
    "memory_16_over_4": ("<=", 1.25),
    "sweep_over_recipe": ("<=", 0.8),
}
# Runs a command and writes its peak resident memory in KiB: the sum over the command and every process it
# started (the sweep and its export worker run side by side), sampled every 0.2 s, or the largest single
# process' exact peak (ru_maxrss) when that is higher.
RSS_WRAPPER = """
import os, resource, subprocess, sys, time

def tree_rss_kib(root):
    children = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/stat') as f:
                children.setdefault(int(f.read().rsplit(')', 1)[1].split()[1]), []).append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f'/proc/{pid}/status') as f:
                total += next((int(line.split()[1]) for line in f if line.startswith('VmRSS:')), 0)
        except OSError:
            pass
    return total

proc, peak = subprocess.Popen(sys.argv[2:]), 0
while proc.poll() is None:
    peak = max(peak, tree_rss_kib(proc.pid))
    time.sleep(0.2)
peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
open(sys.argv[1], 'w').write(str(peak))
sys.exit(proc.returncode)
"""
FAILED: list[str] = []  # edgetl commands that exited non-zero: this script then exits 1


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--image_dir", type=Path, default=SHARED / "datasets" / "flowers")
    p.add_argument("--weights_dir", type=Path, default=SHARED / "weights")
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/bench_sweep"))
    p.add_argument("--out", type=Path, default=None, help="results JSON (default WORK_DIR/bench_sweep.json)")
    p.add_argument("--skip_keras", action="store_true", help="no Keras recipe, no `edgetl train` (ratios 5, 7)")
    p.add_argument("--skip_memory", action="store_true", help="no 4- and 16-point sweeps (ratio 6)")
    p.add_argument("--skip_warm", action="store_true", help="no second run of the README sweep (ratio 3)")
    p.add_argument("--skip_sweep", action="store_true", help="no floor and no README sweep (ratios 1-4)")
    grid = "the sweep's grid (default: the README's); issue 29's full grid: --alphas 0.25,0.5,0.75,1.0 "
    p.add_argument("--backbones", default=README_GRID[0], help=grid + "--resolutions 128,160,192,224")
    p.add_argument("--alphas", default=README_GRID[1], help="see --backbones")
    p.add_argument("--resolutions", default=README_GRID[2], help="see --backbones")
    hidden = argparse.SUPPRESS  # for trying the script on tiny inputs; the defaults are the settings
    p.add_argument("--subset_per_class", type=int, default=0, help=hidden)
    p.add_argument("--epochs", type=int, default=5, help=hidden)
    p.add_argument("--floor_repeats", type=int, default=2, help=hidden)
    p.add_argument("--memory_per_class", type=int, default=40, help=hidden)
    # V1 ALPHAS/RESOLUTIONS; the 4-point grid holds the 16-point grid's largest model, so the ratio shows what
    # the number of points adds, not what a larger backbone does
    p.add_argument("--memory_small", default="0.25,1.0/128,224", help=hidden)
    p.add_argument("--memory_large", default="0.25,0.5,0.75,1.0/128,160,192,224", help=hidden)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    args.out = args.out or args.work_dir / "bench_sweep.json"
    readme = (args.backbones, args.alphas, args.resolutions) == README_GRID
    args.sweep_name = "README sweep" if readme else f"sweep ({args.backbones} x {args.alphas} x {args.resolutions})"
    return args, extra


# pure helpers: reading a sweep's output and the ratios (tests/test_bench_sweep.py)


def log(message: str) -> None:
    print(f"[bench_sweep {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den is not None and den > 0 else None


def verdict(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    op, bound = TARGETS[name]
    return "PASS" if (value <= bound if op == "<=" else value >= bound) else "MISS"


def show(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def target_line(label: str, name: str, value: float | None) -> str:
    op, bound = TARGETS[name]
    return f"  {label:<52}{show(value):>8}   target {op} {bound:g}   {verdict(name, value)}"


def read_json(path: Path) -> dict:
    """The JSON object at `path`; {} when missing or unreadable (fields the sweep does not write yet: n/a)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def number(d: object, *keys: str) -> float | None:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def point_breakdown(point: Path, floor_s: float | None = None) -> dict:
    """One grid point's stages from run.json, artifacts/export.json and bench/*.json, and its ratios 2 and 4."""
    run = read_json(point / "run.json")
    engine = (run.get("backbone") or {}).get("feature_engine")
    engine = engine if isinstance(engine, dict) else {}
    b: dict = {k: number(run, "timings", k) for k in ("features", "head", "save")}
    b.update({k: number(engine, k) for k in ("convert_s", "check_s", "forward_s")})
    parts = [b["convert_s"], b["check_s"], b["forward_s"]]
    b["rest_of_features"] = None if b["features"] is None or None in parts else b["features"] - sum(parts)
    formats = read_json(point / "artifacts" / "export.json").get("formats") or {}
    b["export"] = {fmt: number(e, "seconds") for fmt, e in formats.items()}
    b["f32_converted_by"] = (formats.get("tflite-float32") or {}).get("converted_by")
    b["bench"] = {f.stem: number(read_json(f), "seconds") for f in sorted((point / "bench").glob("*.json"))}
    int8 = b["export"].get("tflite-int8")
    b["int8_over_f32_export"] = ratio(int8, b["export"].get("tflite-float32"))
    b["int8_over_train_save"] = ratio(int8, b["save"])  # "save" = model.keras + SavedModel + the f32 convert
    b["floor_s"] = floor_s
    b["extraction_efficiency"] = ratio(floor_s, b["features"])
    known = [
        v for v in (b["features"], b["head"], b["save"], *b["export"].values(), *b["bench"].values()) if v is not None
    ]
    b["total_s"] = sum(known) if known else None
    return b


def sweep_breakdown(out: Path, floor: dict[str, dict]) -> dict:
    """Every finished point of a sweep output (points/<id>/run.json), the shared decode and ratio 1's floor."""
    timings = read_json(out / "timings.json")
    points = {
        p.name: point_breakdown(p, number(floor.get(p.name), "seconds"))
        for p in sorted((out / "points").glob("*"))
        if (p / "run.json").is_file()
    }
    floors = [b["floor_s"] for b in points.values()]
    walls = timings.get("point_wall_s") if isinstance(timings.get("point_wall_s"), dict) else {}
    for name, b in points.items():  # the sweep process' own time on the point (its export ran beside the next)
        b["sweep_process_s"] = number(walls, name)
    return {
        "decode_once_s": number(timings, "decode_once_s"),
        "sweep_wall_s": number(timings, "wall_s"),
        "start_s": number(timings, "start_s"),
        "finish_s": number(timings, "finish_s"),
        "points": points,
        "floor_sum_s": None if not floors or None in floors else sum(floors),
    }


def wilson_text(correct: int, n: int) -> str:
    from edgetl.stats import wilson_interval

    low, high = wilson_interval(correct, n)
    return f"{100 * correct / n:.1f}% (95% {100 * low:.1f}-{100 * high:.1f}, {correct}/{n})" if n else "n/a"


# data


def subset(image_dir: Path, per_class: int, dest: Path) -> Path:
    """A class-folder copy of `image_dir` made of symlinks to its first `per_class` photos of each class."""
    shutil.rmtree(dest, ignore_errors=True)
    for cls in sorted(d for d in image_dir.iterdir() if d.is_dir()):
        (dest / cls.name).mkdir(parents=True)
        for f in sorted(f for f in cls.iterdir() if f.is_file())[:per_class]:
            (dest / cls.name / f.name).symlink_to(f.resolve())
    return dest


def link_split(records: list, classes: list[str], dest: Path) -> dict[str, object]:
    """Class folders of symlinks to `records` (what image_dataset_from_directory reads): link name -> record.
    Every class gets its folder, even an empty one, so Keras infers the same class list as edgetl."""
    shutil.rmtree(dest, ignore_errors=True)
    for c in classes:
        (dest / c).mkdir(parents=True)
    links = {}
    for i, r in enumerate(records):
        name = f"{i:05d}_{r.path.name}"  # numbered: names are unique only within one class folder
        (dest / r.label / name).symlink_to(Path(r.path).resolve())
        links[name] = r
    return links


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# 1. the floor


def forward_pass(interpreter, images) -> float:
    """Seconds for one batch-1 pass over `images` (uint8, cast per image as the sweep's engine does)."""
    import numpy as np

    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    for image in images[:3]:  # the first invokes pack XNNPACK's weights: not the steady state
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
    started = time.perf_counter()
    for image in images:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        interpreter.get_tensor(out["index"])
    return time.perf_counter() - started


def measure_floor(image_dir: Path, weights_dir: Path, specs: list, repeats: int) -> dict[str, dict]:
    """Each point's backbone alone in LiteRT on all cores over the whole data set, pixels decoded beforehand."""
    import keras

    from edgetl.data.dataset import decode_images, scan_dataset
    from edgetl.features.backbones import WeightsNotFoundError, build_feature_extractor, resolve_weights
    from edgetl.features.engine import convert_backbone
    from edgetl.runtime.backends import tflite_interpreter_class

    records, floor, pixels = scan_dataset(image_dir).records, {}, {}
    threads = os.cpu_count() or 1
    for spec in sorted(specs, key=lambda s: (s.resolution, s.version, s.alpha)):
        try:
            weights = resolve_weights(spec, "imagenet", weights_dir, allow_download=False)
        except WeightsNotFoundError:
            print(f"floor {spec.id}: no weights, skipped (as the sweep skips it)", flush=True)
            continue
        if spec.resolution not in pixels:
            pixels.clear()  # one resolution in memory at a time (all 3,670 photos at 224 are 550 MB)
            log(f"floor: decoding {len(records)} images at {spec.resolution} (not timed)")
            pixels[spec.resolution] = decode_images(records, spec.resolution)[0]
        started = time.perf_counter()
        interpreter_class, backend = tflite_interpreter_class()
        interpreter = interpreter_class(
            model_content=convert_backbone(build_feature_extractor(spec, weights)), num_threads=threads
        )
        interpreter.allocate_tensors()
        convert_s = time.perf_counter() - started
        log(f"floor: {spec.id} forward passes ({repeats}x)")
        seconds = min(forward_pass(interpreter, pixels[spec.resolution]) for _ in range(max(1, repeats)))
        n = len(pixels[spec.resolution])
        floor[spec.id] = {
            "seconds": seconds,
            "images": n,
            "images_per_s": n / seconds,
            "build_convert_s": convert_s,
            "backend": backend,
            "num_threads": threads,
        }
        print(
            f"floor {spec.id}: {seconds:.2f} s for {n} images = {n / seconds:.0f} images/s "
            f"({backend}, {threads} threads, batch 1; build + convert {convert_s:.1f} s, not counted)",
            flush=True,
        )
        del interpreter
        keras.backend.clear_session()  # the extractors would otherwise pile up in this process
    return floor


# running edgetl


def edgetl_command() -> list[str]:
    beside = Path(sys.executable).parent / "edgetl"  # the venv's entry point (an editable install: this tree)
    return [str(beside) if beside.is_file() else shutil.which("edgetl") or "edgetl"]


def run_edgetl(cli: list[str], cache: Path, log_file: Path, rss_file: Path | None = None) -> tuple[float, int]:
    """Wall seconds and exit code of one edgetl command, its output in `log_file`."""
    env = {**os.environ, "EDGETL_CACHE_DIR": str(cache), "EDGETL_NO_DOWNLOAD": "1"}
    cmd = edgetl_command() + cli
    if rss_file is not None:
        cmd = [sys.executable, "-c", RSS_WRAPPER, str(rss_file), *cmd]
    log(f"running edgetl {' '.join(cli[:1])} (output in {log_file})")
    started = time.perf_counter()
    with open(log_file, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    if code:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
        log(f"edgetl {cli[0]} exited with {code}; the end of {log_file}:\n{tail}")
        FAILED.append(f"{log_file.name}: exit {code}")
    return wall, code


def sweep_cli(image_dir: Path, weights_dir: Path, out: Path, grid: tuple[str, str, str], extra: list[str]) -> list[str]:
    return [
        "sweep",
        "--image_dir",
        str(image_dir),
        "--weights_dir",
        str(weights_dir),
        "--backbones",
        grid[0],
        "--alphas",
        grid[1],
        "--resolutions",
        grid[2],
        "--output_dir",
        str(out),
        *extra,
    ]


# 2. the README sweep, cold and warm

STAGES = ("convert", "check", "forward", "rest", "head", "save", "export", "bench", "total")


def stage_cells(p: dict) -> list[float | None]:
    """One point's row of the time table, in STAGES order ("rest" = features minus convert, check, forward)."""

    def summed(d: dict) -> float | None:
        return sum(v for v in d.values() if v is not None) if any(v is not None for v in d.values()) else None

    return [
        p["convert_s"],
        p["check_s"],
        p["forward_s"],
        p["rest_of_features"],
        p["head"],
        p["save"],
        summed(p["export"]),
        summed(p["bench"]),
        p["total_s"],
    ]


def print_time_table(b: dict, wall: float) -> None:
    """Where the cold sweep's time went: the shared decode, then each point's stages and artifacts."""
    print(
        f"\nwhere the time goes, seconds (wall {wall:.1f}; in-sweep wall {show(b['sweep_wall_s'], 1)}, "
        f"decode once {show(b['decode_once_s'], 1)})\n  {'point':<14}" + "".join(f"{s:>8}" for s in STAGES)
    )
    rows = {pid: stage_cells(p) for pid, p in b["points"].items()}
    for pid, cells in rows.items():
        print(f"  {pid:<14}" + "".join(f"{show(v, 1):>8}" for v in cells))
    totals = [sum(c[i] for c in rows.values() if c[i] is not None) for i in range(len(STAGES))]
    print(f"  {'total':<14}" + "".join(f"{v:>8.1f}" for v in totals))
    summed = totals[-1] + (b["decode_once_s"] or 0.0)
    # Each point's export runs in the sweep's export worker while the next point trains (edgetl/overlap.py),
    # so the units' own seconds (each stretched by sharing the cores) add up to more than the wall time.
    print(
        f"  the units and the decode sum to {summed:.1f} s in a {wall:.1f} s sweep: {summed - wall:.1f} s more than "
        f"the wall time, from exports run beside the next point's training; outside the units: start-up "
        f"and scan {show(b.get('start_s'), 1)}, results, pick and report {show(b.get('finish_s'), 1)}, before the "
        f"sweep began (process start, imports) {show(wall - b['sweep_wall_s'] if b['sweep_wall_s'] else None, 1)}"
        f"\n  per artifact, export / bench:"
    )
    for pid, p in b["points"].items():
        print(
            f"  {pid:<14}"
            + "  ".join(
                f"{f} {show(p['export'].get(f), 1)}/{show(p['bench'].get(f), 1)}"
                for f in sorted(set(p["export"]) | set(p["bench"]))
            )
        )


def print_point_ratios(b: dict) -> None:
    """Ratios 2 and 4 per point; int8 cost against both float32 conversions, since f32 may be a copy now."""
    print(
        "\nper point: efficiency = floor forward / the point's feature stage; int8 cost = tflite-int8 export over\n"
        "  (a) tflite-float32's export.json seconds (only a check when copied from the run's model.tflite),\n"
        "  (b) run.json timings.save (model.keras + SavedModel + the float32 conversion done at training)"
    )
    for pid, p in b["points"].items():
        eff, a, b_ = p["extraction_efficiency"], p["int8_over_f32_export"], p["int8_over_train_save"]
        print(
            f"  {pid}: {show(p['floor_s'])} / {show(p['features'])} = {show(eff)} "
            f"[{verdict('extraction_efficiency', eff)}]; int8 cost (a) {show(a)}"
            f"{' (f32 copied)' if p['f32_converted_by'] else ''} [{verdict('int8_export_cost', a)}], "
            f"(b) {show(b_)} [{verdict('int8_export_cost', b_)}]"
        )


def worst(values: list[float | None], name: str) -> float | None:
    """The point furthest from its target (None when any point's figure is missing)."""
    if not values or None in values:
        return None
    return min(values) if TARGETS[name][0] == ">=" else max(values)


def readme_sweep(args: argparse.Namespace, extra: list[str], image_dir: Path, floor: dict, results: dict) -> None:
    out, cache = args.work_dir / "sweep", fresh(args.work_dir / "sweep-cache")
    shutil.rmtree(out, ignore_errors=True)
    cli = sweep_cli(
        image_dir,
        args.weights_dir,
        out,
        (args.backbones, args.alphas, args.resolutions),
        ["--max_latency_ms", "15", *extra],
    )
    cold, code = run_edgetl(cli, cache, args.work_dir / "sweep-cold.log")
    notes = [ln for ln in (args.work_dir / "sweep-cold.log").read_text().splitlines() if ln.startswith("note:")]
    b = sweep_breakdown(out, floor)
    print(
        f"\n{args.sweep_name}, empty cache: {cold:.1f} s wall, exit {code}, {len(b['points'])} point(s) ran"
        + "".join(f"\n  {n}" for n in notes),
        flush=True,
    )
    print_time_table(b, cold)
    print_point_ratios(b)
    overhead = ratio(cold, b["floor_sum_s"])
    r = results["ratios"]
    r["sweep_overhead"] = overhead
    r["extraction_efficiency"] = worst(
        [p["extraction_efficiency"] for p in b["points"].values()], "extraction_efficiency"
    )
    r["int8_export_cost"] = worst([p["int8_over_f32_export"] for p in b["points"].values()], "int8_export_cost")
    r["int8_export_cost_vs_train_save"] = worst(
        [p["int8_over_train_save"] for p in b["points"].values()], "int8_export_cost"
    )
    print("\nratios:")
    print(
        target_line(
            f"1. sweep overhead ({cold:.0f} s / floor {show(b['floor_sum_s'], 1)} s)", "sweep_overhead", overhead
        )
    )
    print(target_line("2. extraction efficiency (worst point)", "extraction_efficiency", r["extraction_efficiency"]))
    print(target_line("4. int8 export cost, worst point (a) vs f32 export", "int8_export_cost", r["int8_export_cost"]))
    print(
        target_line(
            "4. int8 export cost, worst point (b) vs training save",
            "int8_export_cost",
            r["int8_export_cost_vs_train_save"],
        ),
        flush=True,
    )
    results["sweep"] = {"cold_wall_s": cold, "exit": code, "notes": notes, "points_ran": len(b["points"]), **b}
    if not args.skip_warm:
        warm, code = run_edgetl(cli, cache, args.work_dir / "sweep-warm.log")
        r["warm_over_cold"] = ratio(warm, cold)
        results["sweep"].update(
            warm_wall_s=warm, warm_exit=code, warm_in_sweep_wall_s=number(read_json(out / "timings.json"), "wall_s")
        )
        print(f"\n{args.sweep_name} again (same output, same cache): {warm:.1f} s wall, exit {code}")
        print(
            target_line(f"3. warm / cold ({warm:.1f} s / {cold:.1f} s)", "warm_over_cold", r["warm_over_cold"]),
            flush=True,
        )


# 3. the Keras recipe against `edgetl train`


def keras_recipe(train_dir: Path, test_dir: Path, weights: Path, epochs: int) -> dict:
    """The tutorials' transfer learning: wall seconds (dataset creation to the end of fit) and per-image
    correctness on the test folder, keyed by link name."""
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    train = keras.utils.image_dataset_from_directory(
        train_dir, image_size=(224, 224), batch_size=32, seed=0, verbose=False
    )
    classes = train.class_names
    train = train.prefetch(tf.data.AUTOTUNE)  # the tutorials' pipeline minus .cache(): the base runs every epoch
    base = keras.applications.MobileNetV2(
        weights=str(weights), include_top=False, pooling="avg", input_shape=(224, 224, 3)
    )
    base.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = base(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs), training=False)
    model = keras.Model(inputs, keras.layers.Dense(len(classes), activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, epochs=epochs, verbose=0)
    wall = time.perf_counter() - started
    started = time.perf_counter()
    test = keras.utils.image_dataset_from_directory(
        test_dir, image_size=(224, 224), batch_size=32, shuffle=False, verbose=False
    )
    predicted = model.predict(test, verbose=0).argmax(axis=1)
    names = [Path(p).name for p in test.file_paths]
    return {
        "wall_s": wall,
        "eval_s": time.perf_counter() - started,
        "classes": classes,
        "predicted": dict(zip(names, (classes[k] for k in predicted))),
    }


def tflite_predictions(model: Path, links: dict[str, object], resolution: int, classes: list[str]) -> dict[str, str]:
    """`edgetl train`'s model.tflite on the test links' photos: per-image predictions, for the pairing."""
    from edgetl.data.dataset import decode_images
    from edgetl.runtime.model import load_model

    images, kept, _ = decode_images(list(links.values()), resolution)
    name_of = {id(r): n for n, r in links.items()}
    predicted = load_model(model, num_threads=os.cpu_count() or 1).predict(images).argmax(axis=1)
    return {name_of[id(r)]: classes[int(k)] for r, k in zip(kept, predicted)}


def paired(links: dict, a: dict[str, str], b: dict[str, str]) -> dict | None:
    """McNemar on the test photos both predicted (a = the recipe, b = edgetl train)."""
    from edgetl.stats import mcnemar_exact

    common = [n for n in links if n in a and n in b]
    if not common:
        return None
    return mcnemar_exact([a[n] == links[n].label for n in common], [b[n] == links[n].label for n in common]).to_dict()


def train_step(args: argparse.Namespace, image_dir: Path, links: dict) -> dict:
    """`edgetl train` on V2 1.0 @224, cold (fresh cache) then warm (same cache), and its per-image predictions."""
    out, cache = args.work_dir / "train", fresh(args.work_dir / "train-cache")
    shutil.rmtree(out, ignore_errors=True)
    cli = [
        "train",
        "--image_dir",
        str(image_dir),
        "--backbone",
        "v2",
        "--alpha",
        "1.0",
        "--resolution",
        "224",
        "--weights_dir",
        str(args.weights_dir),
        "--output_dir",
        str(out),
    ]
    t: dict = {}
    for run in ("cold", "warm"):
        t[f"{run}_s"], t[f"{run}_exit"] = run_edgetl(cli, cache, args.work_dir / f"train-{run}.log")
        t[f"{run}_test_accuracy"] = number(read_json(out / "run.json"), "metrics", "test_accuracy")
        if run == "cold":  # the model of the cold run (the warm one refits on the same cached features)
            classes = read_json(out / "run.json").get("classes")
            t["predicted"] = tflite_predictions(out / "model.tflite", links, 224, classes) if classes else {}
            t["correct"] = sum(t["predicted"][n] == links[n].label for n in t["predicted"])
        print(
            f"edgetl train {run}: {t[f'{run}_s']:.1f} s wall (exit {t[f'{run}_exit']}), run.json test_accuracy "
            f"{show(t[f'{run}_test_accuracy'], 4)}",
            flush=True,
        )
    print(f"  its model.tflite (cold run) on the test photos here: {wilson_text(t['correct'], len(t['predicted']))}")
    return t


def keras_step(args: argparse.Namespace, image_dir: Path, results: dict) -> None:
    """Ratios 5 and 7: the recipe and `edgetl train` on the same split, both accuracies, paired when possible."""
    from edgetl.data.dataset import scan_dataset
    from edgetl.features.backbones import weights_file_name

    dataset = scan_dataset(image_dir)
    train = link_split(
        dataset.split("training") + dataset.split("validation"), dataset.classes, args.work_dir / "recipe-train"
    )
    links = link_split(dataset.split("testing"), dataset.classes, args.work_dir / "recipe-test")
    log(f"Keras recipe: V2 1.0 @224, {len(train)} train + validation images, {args.epochs} epoch(s)")
    recipe = keras_recipe(
        args.work_dir / "recipe-train",
        args.work_dir / "recipe-test",
        args.weights_dir / weights_file_name("v2", 1.0, 224),
        args.epochs,
    )
    recipe["correct"] = sum(recipe["predicted"][n] == links[n].label for n in recipe["predicted"])
    print(
        f"\nKeras recipe (V2 1.0 @224, {args.epochs} epoch(s)): {recipe['wall_s']:.1f} s wall, dataset creation to "
        f"the end of fit (test prediction {recipe['eval_s']:.1f} s more, not counted); test accuracy "
        f"{wilson_text(recipe['correct'], len(recipe['predicted']))}",
        flush=True,
    )
    ours = train_step(args, image_dir, links)
    test = paired(links, recipe["predicted"], ours["predicted"])
    if test:
        print(
            f"  paired on {test['n']} test photos: recipe - edgetl = {test['diff_points']:+.1f} points (95% "
            f"{test['diff_low_points']:+.1f} to {test['diff_high_points']:+.1f}), McNemar p = {test['p_value']:.3g}"
        )
    r, wall = results["ratios"], recipe["wall_s"]
    r["recipe_over_train_cold"], r["recipe_over_train_warm"] = ratio(wall, ours["cold_s"]), ratio(wall, ours["warm_s"])
    r["sweep_over_recipe"] = ratio(results.get("sweep", {}).get("cold_wall_s"), wall)
    print(target_line("5. recipe / edgetl train cold", "recipe_over_train_cold", r["recipe_over_train_cold"]))
    print(target_line("5. recipe / edgetl train warm", "recipe_over_train_warm", r["recipe_over_train_warm"]))
    print(target_line(f"7. {args.sweep_name} cold / recipe", "sweep_over_recipe", r["sweep_over_recipe"]), flush=True)
    results["keras"] = {
        "recipe": {k: v for k, v in recipe.items() if k != "predicted"},
        "test_images": len(links),
        "epochs": args.epochs,
        "edgetl_train": {k: v for k, v in ours.items() if k != "predicted"},
        "mcnemar_recipe_vs_edgetl_train": test,
    }


# 4. memory


def memory_step(args: argparse.Namespace, results: dict) -> None:
    data = subset(args.image_dir, args.memory_per_class, args.work_dir / f"subset-{args.memory_per_class}")
    peaks = {}
    for size, grid in (("small", args.memory_small), ("large", args.memory_large)):
        alphas, resolutions = grid.split("/")
        out, cache = args.work_dir / f"memory-{size}", fresh(args.work_dir / f"memory-{size}-cache")
        shutil.rmtree(out, ignore_errors=True)
        cli = sweep_cli(
            data,
            args.weights_dir,
            out,
            ("v1", alphas, resolutions),
            ["--formats", "tflite-float32,tflite-int8", "--calibration_images", "20"],
        )
        rss_file = args.work_dir / f"memory-{size}.rss"
        wall, code = run_edgetl(cli, cache, args.work_dir / f"memory-{size}.log", rss_file)
        ran = len(list(out.glob("points/*/run.json")))
        peak = int(rss_file.read_text()) / 1024 if rss_file.is_file() else None
        peaks[size] = {"grid": grid, "points_ran": ran, "peak_rss_mib": peak, "wall_s": wall, "exit": code}
        print(
            f"\nmemory, {ran}-point sweep (v1 {grid}, {args.memory_per_class} photos/class): peak RSS "
            f"{show(peak, 0)} MB (all its processes together), {wall:.0f} s, exit {code}",
            flush=True,
        )
    value = ratio(peaks["large"]["peak_rss_mib"], peaks["small"]["peak_rss_mib"])
    results["ratios"]["memory_16_over_4"], results["memory"] = value, peaks
    print(
        target_line(
            f"6. peak RSS {peaks['large']['points_ran']}-point / {peaks['small']['points_ran']}-point",
            "memory_16_over_4",
            value,
        ),
        flush=True,
    )


def save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EDGETL_NO_DOWNLOAD", "1")
    from edgetl.sweep.grid import grid

    image_dir = args.image_dir
    if args.subset_per_class:
        image_dir = subset(args.image_dir, args.subset_per_class, args.work_dir / f"subset-{args.subset_per_class}")
    specs, _ = grid(
        args.backbones.split(","),
        [float(a) for a in args.alphas.split(",")],
        [int(r) for r in args.resolutions.split(",")],
    )
    results: dict = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "sweep_args": extra,
        "cpu_count": os.cpu_count(),
        "load_average_1min_before": os.getloadavg()[0],
        "ratios": {},
    }
    if not args.skip_sweep:
        results["floor"] = measure_floor(image_dir, args.weights_dir, specs, args.floor_repeats)
        save(results, args.out)
        readme_sweep(args, extra, image_dir, results["floor"], results)
        save(results, args.out)
    if not args.skip_keras:
        keras_step(args, image_dir, results)
        save(results, args.out)
    if not args.skip_memory:
        memory_step(args, results)
    results["load_average_1min_after"], results["failed"] = os.getloadavg()[0], FAILED
    save(results, args.out)
    print("\nsummary:")
    for name, value in results["ratios"].items():
        print(target_line(name, name if name in TARGETS else "int8_export_cost", value))
    print(
        f"1-minute load average {results['load_average_1min_before']:.2f} before, "
        f"{results['load_average_1min_after']:.2f} after, on {os.cpu_count()} cores (other work on the machine "
        f"makes these figures meaningless)\nwritten: {args.out}"
    )
    if FAILED:
        print("edgetl failed: " + ", ".join(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
