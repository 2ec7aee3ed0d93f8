"""How many calibration images int8 needs: for each dataset and grid point, one `edgetl train`, then
tflite-int8 and onnx-int8 exported with `num_calibration_images` 50, 100, 200 (the default) and 500, nothing
else changed (bias correction on; the quantization ladder off, so only the int8 files themselves are made).

For each file: test top-1 with its 95% Wilson interval; paired on the same test images against the float
model and against the 200-image file of its format (discordant counts: b01 = this file right and the other
wrong, b10 the reverse; exact McNemar p); the export's per-class fidelity check (worst class drop, Holm p,
failed classes); the conversion's wall and CPU time; file size. The shared preparation (decoding the
calibration images, bias correction on them) is timed apart from each converter. One table per dataset and
point on stdout, everything in --out (JSON, written atomically).

    nice -n 19 python tools/ablate_calibration.py --out /tmp/ablate29/ablation.json --scratch /tmp/ablate29

Each export runs in a fresh process (`--worker`), so no run benefits from another's warm caches; a finished
worker's JSON is reused when the command is run again. `--cprofile FILE` (with `--worker`) profiles that export
under cProfile. Times on a busy machine are rough: compare CPU seconds, and ratios within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMATS = ("tflite-int8", "onnx-int8")
REFERENCE_COUNT = 200  # ExportConfig.num_calibration_images today


# ---------------------------------------------------------------------------------------------------------
# worker: one export of one run, timed by phase


class Phases:
    """Wall and CPU seconds (this process, all threads) per (format, phase), from wrapped functions."""

    def __init__(self) -> None:
        self.current = "-"
        self.seconds: dict[str, dict[str, dict[str, float]]] = {}

    def wrap(self, module, name: str, phase: str) -> None:
        inner = getattr(module, name)

        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                entry = self.seconds.setdefault(self.current, {}).setdefault(phase, {"wall": 0.0, "cpu": 0.0})
                entry["wall"] += time.perf_counter() - wall
                entry["cpu"] += time.process_time() - cpu

        setattr(module, name, timed)


def worker(run_dir: Path, count: int, out: Path, profile: Path | None, formats: tuple[str, ...], manifest=None) -> None:
    import numpy as np

    from edgetl.export import fidelity, inputs, run, sources
    from edgetl.export.config import ExportConfig
    from edgetl.io.files import atomic_write_json

    phases = Phases()
    phases.wrap(sources, "calibration", "decode calibration images")
    phases.wrap(sources, "correct_biases", "bias correction")
    phases.wrap(run, "export_artifact", "converter")
    phases.wrap(run, "_golden_step", "golden inputs")
    phases.wrap(run.accelerators, "coverage", "accelerator coverage")
    phases.wrap(run, "_check_step", "check (test split + per class)")
    phases.wrap(fidelity, "build", "fidelity set (decode, float answers)")
    config = replace(ExportConfig(), formats=formats, num_calibration_images=count, quantization_ladder=False)
    config = replace(config, calibration_manifest=manifest)  # a further draw (--draws); None: the default draw
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    wall, cpu = time.perf_counter(), time.process_time()
    loaded = inputs.load_run_inputs(run_dir)  # the test split decoded, the float model's answers on it
    phases.seconds["load run inputs"] = {
        "total": {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    }
    results = {}
    for fmt in formats:
        phases.current = fmt
        wall, cpu = time.perf_counter(), time.process_time()
        results[fmt] = run.export_format(loaded, fmt, config, lambda msg: print(msg, file=sys.stderr))
        phases.seconds[fmt]["total"] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile))
    summary = run.read_export_summary(run_dir)
    float_correct = loaded.keras_probs.argmax(1) == loaded.test_labels
    files = {}
    for fmt, result in results.items():
        entry = summary.get(fmt, {})
        probs_path = run_dir / run.ARTIFACTS_DIR / f"{fmt}.test_predictions.npy"
        correct = np.load(probs_path).argmax(1) == loaded.test_labels if probs_path.is_file() else None
        files[fmt] = {
            "status": result.status,
            "size_bytes": result.size_bytes,
            "test_accuracy": result.test_accuracy,
            "correct": None if correct is None else correct.astype(int).tolist(),
            "num_calibration_images": entry.get("num_calibration_images"),
            "class_fidelity": entry.get("class_fidelity"),
            "sha256": entry.get("sha256"),
        }
    atomic_write_json(
        out,
        {
            "run": str(run_dir),
            "count": count,
            "float_correct": float_correct.astype(int).tolist(),
            "files": files,
            "seconds": phases.seconds,
            "total": {"wall": time.perf_counter() - started_wall, "cpu": time.process_time() - started_cpu},
        },
        "the worker's results",
    )


def common_worker(point_dir: Path, labels: list[str], formats: tuple[str, ...], out: Path) -> None:
    """Every file of one point on one set of images none of them was calibrated on: the test split, then
    validation and training images up to 200 per class (`edgetl.export.fidelity`'s selection, leaving out
    the union of all the calibration sets), so that N and the 200-image file are paired on the same images."""
    import numpy as np

    from edgetl.export import calibration, fidelity, inputs
    from edgetl.export.formats import FORMATS as FORMAT_SPECS
    from edgetl.io.files import atomic_write_json
    from edgetl.runtime import load_model

    loaded = inputs.load_run_inputs(point_dir / "train")
    exclude = set()
    for path in point_dir.glob("cal*/artifacts/*.calibration.json"):
        exclude |= {entry["sha256"] for entry in calibration.load_manifest(path)["images"]}
    fset = fidelity.build(loaded, COMMON_PER_CLASS, exclude, inputs._keras_predict)
    predicted = {}
    for n in labels:
        for fmt in formats:
            artifacts = point_dir / f"cal{n}" / "artifacts"
            model = load_model(artifacts / f"{fmt}{FORMAT_SPECS[fmt].suffix}", os.cpu_count() or 1)
            test_probs = np.load(artifacts / f"{fmt}.test_predictions.npy")
            probs = fidelity.artifact_probabilities(fset, model, test_probs, 64)
            predicted[f"{n}:{fmt}"] = probs.argmax(1).tolist()
    atomic_write_json(
        out,
        {
            "classes": list(loaded.run["classes"]),
            "labels": fset.labels.tolist(),
            "float": fset.float_probs.argmax(1).tolist(),
            "excluded_calibration_images": len(exclude),
            "predicted": predicted,
        },
        "the common set's predictions",
    )


COMMON_PER_CLASS = 200


# ---------------------------------------------------------------------------------------------------------
# driver: train each point once, one worker per calibration count, the comparisons and tables


def child_seconds(cmd: list[str], **kwargs) -> dict:
    """Run `cmd`; its wall time and the CPU time (user + system) of it and its children."""
    before, wall = os.times(), time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": time.perf_counter() - wall, "cpu": cpu}


def train(dataset: Path, point: tuple[str, str, str], out: Path, weights: Path) -> dict | None:
    if (out / "run.json").is_file():
        return None
    backbone, alpha, resolution = point
    cmd = [sys.executable, "-m", "edgetl.cli", "train", "--image_dir", str(dataset), "--weights_dir", str(weights)]
    cmd += ["--backbone", backbone, "--alpha", alpha, "--resolution", resolution, "--output_dir", str(out), "-q"]
    return child_seconds(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def draw_manifest(train_dir: Path, count: int, used: set, out: Path) -> None:
    """A calibration manifest of `count` training images none of which is in `used` (the next images of each
    class in the draw order of `edgetl.export.calibration`, as `--calibration_repeats` draws them)."""
    from edgetl.export import calibration
    from edgetl.export.inputs import _run_dataset, read_run

    run = read_run(train_dir)
    resolution = int(run["backbone"]["resolution"])
    drawn = calibration.build_calibration_set(_run_dataset(run), resolution, count, None, frozenset(used))
    calibration.write_manifest(out, drawn.manifest)


def manifest_hashes(path: Path) -> set:
    return {entry["sha256"] for entry in json.loads(path.read_text())["images"]}


def export_count(train_dir: Path, label: str, scratch: Path, formats: tuple[str, ...], used: set | None = None) -> dict:
    """The worker's results for calibration set `label` ("N": the default draw of N images; "NdK": the K-th
    further draw, disjoint from the images in `used`), on a copy of the trained run (artifacts apart)."""
    from edgetl.io.files import atomic_write_json

    result, count = scratch / f"cal{label}.json", int(label.split("d")[0])
    if not result.is_file():
        run_dir = scratch / f"cal{label}"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(train_dir, run_dir, ignore=shutil.ignore_patterns("artifacts"))
        cmd = [sys.executable, __file__, "--worker", str(run_dir), str(count), str(result), "--formats", *formats]
        if used is not None:
            draw_manifest(train_dir, count, used, scratch / f"cal{label}.manifest.json")
            cmd += ["--manifest", str(scratch / f"cal{label}.manifest.json")]
        seconds = child_seconds(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
        data = json.loads(result.read_text())
        data["process"] = seconds  # the whole worker: TensorFlow's import, loading the run, both formats
        atomic_write_json(result, data, "the worker's results")
    return json.loads(result.read_text())


def common_set(scratch: Path, labels: list[str], formats: tuple[str, ...], draws: int) -> dict:
    result = scratch / ("common.json" if draws == 1 else f"common-draws{draws}.json")
    if not result.is_file():
        cmd = [sys.executable, __file__, "--common", str(scratch), ",".join(labels), str(result)]
        child_seconds(cmd + ["--formats", *formats], env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(result.read_text())


def on_common(common: dict, count: int | str, fmt: str) -> dict:
    """The file's accuracy on the common set, paired with the float model and the 200-image file, overall and
    per class (the worst class by drop, Holm-adjusted p over the classes; `failed`: > 3 points and p < 0.05)."""
    import numpy as np

    from edgetl.export.fidelity import class_table
    from edgetl.stats import accuracy_interval

    labels = np.array(common["labels"])
    pred = np.array(common["predicted"][f"{count}:{fmt}"])
    acc, low, high = accuracy_interval(pred == labels)
    row = {"n": len(labels), "accuracy": acc, "low": low, "high": high}
    refs = {"float": np.array(common["float"]), "200": np.array(common["predicted"][f"{REFERENCE_COUNT}:{fmt}"])}
    for name, ref in refs.items():
        if name == "200" and str(count) == str(REFERENCE_COUNT):
            continue
        classes = class_table(labels, ref, pred, common["classes"], 3.0)
        worst = max(classes, key=lambda c: (c["drop_points"], -c["p_holm"]))
        row[f"vs_{name}"] = paired(pred == labels, ref == labels)
        row[f"vs_{name}"]["worst_class"] = {k: worst[k] for k in ("class", "drop_points", "p_holm", "n")}
        row[f"vs_{name}"]["failed_classes"] = [c["class"] for c in classes if c["failed"]]
    return row


def paired(a, b) -> dict:
    from edgetl.stats import mcnemar_exact

    t = mcnemar_exact(a, b)
    return {"b01": t.b01, "b10": t.b10, "diff_points": t.diff_points, "p_value": t.p_value}


def compare(runs: dict[int, dict], formats: tuple[str, ...], common: dict) -> list[dict]:
    """One row per (count, format): accuracy and interval, paired tests, fidelity, time, size."""
    from edgetl.stats import accuracy_interval

    rows = []
    for count, data in sorted(runs.items()):
        prep = {
            phase: v for phase, v in data["seconds"].get(formats[0], {}).items() if phase in PREP_PHASES
        }  # drawn and corrected once, inside the first calibrated format's conversion
        for fmt in formats:
            f = data["files"][fmt]
            row = {"count": count, "format": fmt, "status": f["status"], "size_bytes": f["size_bytes"]}
            row["converter_seconds"] = data["seconds"][fmt].get("converter")
            row["format_seconds"] = data["seconds"][fmt].get("total")
            row["prep_seconds"] = prep if fmt == formats[0] else {}
            if f["correct"] is not None:
                acc, low, high = accuracy_interval(f["correct"])
                row.update(accuracy=acc, low=low, high=high, n=len(f["correct"]))
                row["vs_float"] = paired(f["correct"], data["float_correct"])
                ref = runs.get(REFERENCE_COUNT, {}).get("files", {}).get(fmt, {}).get("correct")
                row["vs_200"] = paired(f["correct"], ref) if ref is not None and count != REFERENCE_COUNT else None
            cf = f.get("class_fidelity") or {}
            worst = max(cf.get("classes", []), key=lambda c: (c["drop_points"], -c["p_holm"]), default=None)
            row["fidelity"] = {
                "worst": None if worst is None else {k: worst[k] for k in ("class", "drop_points", "p_holm", "n")},
                "failed": cf.get("failed"),
                "num_images": cf.get("num_images"),
                "agreement": cf.get("agreement"),
            }
            row["common"] = on_common(common, count, fmt)
            rows.append(row)
    return rows


PREP_PHASES = ("decode calibration images", "bias correction")


def fmt_pair(p: dict | None) -> str:
    """Points vs the reference (b01 this file right and the reference wrong / b10 the reverse, exact McNemar p)."""
    return "ref" if p is None else f"{p['diff_points']:+.1f} ({p['b01']}/{p['b10']}, p={p['p_value']:.2g})"


def fmt_worst(w: dict | None) -> str:
    return "-" if w is None else f"{w['class']} {w['drop_points']:.1f} (p={w['p_holm']:.2g})"


def fmt_seconds(s: dict | None) -> str:
    return "-" if not s else f"{s['wall']:.1f}/{s['cpu']:.1f}"


def table(title: str, float_acc: tuple, rows: list[dict]) -> str:
    n_common = rows[0]["common"]["n"] if rows else 0
    lines = [
        f"{title}: float {float_acc[0]:.1%} [{float_acc[1]:.1%}, {float_acc[2]:.1%}] on {float_acc[3]} test images; "
        f"common set: {n_common} images none of the files calibrated on. Pairs: points (b01/b10, exact McNemar p); "
        "worst class: drop in points (Holm p); prep: decoding + bias correction, once per export",
        "| N | format | test top-1 [95%] | test vs float | test vs N=200 | export's class fidelity | check "
        "| common top-1 [95%] | common vs float | common vs N=200 | its worst class vs N=200 "
        "| convert s wall/CPU | prep s wall/CPU | MB |",
        "|--:|---|---|---|---|---|---|---|---|---|---|---|---|--:|",
    ]
    for r in rows:
        prep = r["prep_seconds"]
        prep_s = " + ".join(fmt_seconds(prep.get(k)) for k in PREP_PHASES) if prep else ""
        top1 = f"{r['accuracy']:.1%} [{r['low']:.1%}, {r['high']:.1%}]" if "accuracy" in r else "-"
        c = r["common"]
        common = f"{c['accuracy']:.1%} [{c['low']:.1%}, {c['high']:.1%}]"
        worst_200 = fmt_worst(c["vs_200"]["worst_class"]) if "vs_200" in c else "-"
        status = "ok" if r["status"] == "ok" else r["status"][:40]
        lines.append(
            f"| {r['count']} | {r['format']} | {top1} | {fmt_pair(r.get('vs_float'))} | {fmt_pair(r.get('vs_200'))} "
            f"| {fmt_worst(r['fidelity']['worst'])} | {status} | {common} | {fmt_pair(c['vs_float'])} "
            f"| {fmt_pair(c.get('vs_200'))} | {worst_200} | {fmt_seconds(r['converter_seconds'])} | {prep_s} "
            f"| {r['size_bytes'] / 1e6:.3f} |"
        )
    return "\n".join(lines)


def further_draws(scratch: Path, counts: list[int], args, formats: tuple[str, ...]) -> list[str]:
    """--draws > 1: the further disjoint draws of each --draw_counts count (none of the default draws' images,
    which nest: each count's default set begins the largest one's); their labels "NdK"."""
    labels = []
    base = manifest_hashes(scratch / f"cal{max(counts)}" / "artifacts" / f"{formats[0]}.calibration.json")
    for n in [int(c) for c in args.draw_counts.split(",")] if args.draws > 1 else []:
        used = set(base)
        for k in range(1, args.draws):
            export_count(scratch / "train", f"{n}d{k}", scratch, formats, used)
            used |= manifest_hashes(scratch / f"cal{n}d{k}.manifest.json")
            labels.append(f"{n}d{k}")
    return labels


def draws_table(title: str, common: dict, draws: list[dict], formats: tuple[str, ...], args) -> str:
    """Each draw of each --draw_counts count on the common set, and the spread over the draws."""
    import numpy as np

    lines = [
        f"{title}, {args.draws} disjoint calibration draws per count (draw 0: the default one), common set of "
        f"{len(common['labels'])} images",
        "| N | format | common top-1 per draw | mean (sd) | draws vs N=200 draw 0, points (b01/b10, p) |",
        "|--:|---|---|---|---|",
    ]
    labels = np.array(common["labels"])
    for n in args.draw_counts.split(","):
        for fmt in formats:
            keys = [n] + [d["label"] for d in draws if d["label"].startswith(f"{n}d") and d["format"] == fmt]
            accs = [float((np.array(common["predicted"][f"{k}:{fmt}"]) == labels).mean()) for k in keys]
            versus = [fmt_pair(on_common(common, k, fmt).get("vs_200")) for k in keys if k != str(REFERENCE_COUNT)]
            lines.append(
                f"| {n} | {fmt} | {', '.join(f'{a:.1%}' for a in accs)} | {100 * np.mean(accs):.2f} "
                f"({100 * np.std(accs, ddof=1):.2f}) | {'; '.join(versus) or '-'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = Path(os.environ.get("EDGETL_TEST_DATA", ROOT / ".." / "shared"))
    parser.add_argument("--datasets", default="flowers,cats_dogs")
    parser.add_argument("--data_dir", type=Path, default=data / "datasets")
    parser.add_argument("--weights_dir", type=Path, default=data / "weights")
    parser.add_argument("--points", default="v1:0.25:128,v2:1.0:224", help="comma list of backbone:alpha:resolution")
    parser.add_argument("--counts", default="50,100,200,500", help="numbers of calibration images")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS))
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/ablate_calibration"), help="outside the repo")
    parser.add_argument("--out", type=Path, help="JSON results (required unless --worker)")
    parser.add_argument("--worker", nargs=3, metavar=("RUN", "N", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--common", nargs=3, metavar=("POINT_DIR", "LABELS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--draws", type=int, default=1, help="calibration sets per count in --draw_counts (disjoint)")
    parser.add_argument("--draw_counts", default="100,200", help="the counts --draws > 1 draws again")
    parser.add_argument("--cprofile", type=Path, help="with --worker: write cProfile stats of the export here")
    args = parser.parse_args()
    formats = tuple(args.formats)
    if args.worker:
        worker(Path(args.worker[0]), int(args.worker[1]), Path(args.worker[2]), args.cprofile, formats, args.manifest)
        return
    if args.common:
        common_worker(Path(args.common[0]), args.common[1].split(","), formats, Path(args.common[2]))
        return
    if args.out is None:
        parser.error("--out is required")
    from edgetl.io.files import atomic_write_json
    from edgetl.stats import accuracy_interval

    counts = [int(c) for c in args.counts.split(",")]
    report = {"counts": counts, "formats": formats, "reference_count": REFERENCE_COUNT, "results": []}
    for name in args.datasets.split(","):
        for point in (tuple(p.split(":")) for p in args.points.split(",")):
            scratch = args.scratch / name / "_".join(point)
            train_seconds = train((args.data_dir / name).resolve(), point, scratch / "train", args.weights_dir)
            runs = {n: export_count(scratch / "train", str(n), scratch, formats) for n in counts}
            labels = further_draws(scratch, counts, args, formats)
            float_correct = next(iter(runs.values()))["float_correct"]
            acc = (*accuracy_interval(float_correct), len(float_correct))
            common = common_set(scratch, [str(n) for n in counts] + labels, formats, args.draws)
            rows = compare(runs, formats, common)
            title = f"{name} {point[0]} {point[1]} @{point[2]}"
            print(table(title, acc, rows) + "\n", flush=True)
            draws = [{"label": x, "format": f, **on_common(common, x, f)} for x in labels for f in formats]
            if draws:
                print(draws_table(title, common, draws, formats, args) + "\n", flush=True)
            report["results"].append(
                {
                    "dataset": name,
                    "point": "-".join(point),
                    "float_accuracy": acc[:3],
                    "num_test_images": acc[3],
                    "train_seconds": train_seconds,
                    "worker_seconds": {
                        n: {"process": d.get("process"), "phases": d["seconds"]} for n, d in runs.items()
                    },
                    "rows": rows,
                    "draws": draws,
                }
            )
            atomic_write_json(args.out, report, "the ablation's results")


if __name__ == "__main__":
    main()
