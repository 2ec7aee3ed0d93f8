#!/usr/bin/env python
"""Per format: top-1 on a run's test split through the stock clients (MediaPipe Tasks, the TFLite Task
Library) next to edgetl's own runtime on the same images, and how often their answers agree.

    .venv/bin/python tools/benchmark_clients.py RUN_DIR [--clients mediapipe,task_library]

RUN_DIR is an `edgetl train` run exported with `edgetl export` (its .tflite files in RUN_DIR/artifacts).
The clients get the original photos and resize them themselves, as an app would; edgetl decodes them with
edgetl.data.dataset.load_image (a bilinear squash with antialiasing), so a gap of a point or two is the resize.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VENVS = {"mediapipe": ".venv-mediapipe", "task_library": ".venv-task-library"}


def client_labels(client: str, model: Path, images: list[Path]) -> list[str] | str:
    """The client's top-1 label name per image, or the error it reported."""
    python = REPO / VENVS[client] / "bin" / "python"
    if not python.exists():
        return f"{VENVS[client]} missing (tools/make_client_venvs.sh)"
    cmd = [
        str(python),
        str(REPO / "tools" / "client_check.py"),
        "--client",
        client,
        "--json",
        "--top_k",
        "1",
        "--model_file",
        str(model),
        "--",
        *map(str, images),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        entry = json.loads(proc.stdout)["models"][0]
    except (ValueError, KeyError, IndexError):
        return (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if entry.get("error"):
        return " ".join(str(entry["error"]).split())[:120]
    return [p["label"] for p in entry["predictions"]]


def main(argv: list[str] | None = None) -> int:
    from edgetl.data.dataset import SplitConfig, decode_images, scan_dataset
    from edgetl.export import FORMATS
    from edgetl.runtime import load_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--clients", default="mediapipe,task_library")
    args = p.parse_args(argv)
    run = json.loads((args.run_dir / "run.json").read_text())
    dataset = scan_dataset(run["image_dir"], SplitConfig(run["validation_percentage"], run["testing_percentage"]))
    images, records, _failed = decode_images(dataset.split("testing"), int(run["backbone"]["resolution"]))
    truth = [r.label for r in records]
    print(f"{len(records)} test images of {run['image_dir']}")
    print(
        f"{'format':15} {'edgetl top-1':>12} "
        + " ".join(f"{c + ' top-1':>20} {'agreement':>9}" for c in args.clients.split(","))
    )
    for spec in (s for s in FORMATS.values() if s.runtime == "tflite"):
        path = args.run_dir / "artifacts" / f"{spec.name}{spec.suffix}"
        if not path.is_file():
            continue
        model = load_model(path)
        ours = [model.labels[i] for i in model.predict(images).argmax(1)]
        cells = [f"{spec.name:15} {np.mean([o == t for o, t in zip(ours, truth)]):>12.1%}"]
        for client in args.clients.split(","):
            theirs = client_labels(client, path, [r.path for r in records])
            if isinstance(theirs, str):
                cells.append(f"{'fails: ' + theirs:>30}")
                continue
            accuracy = np.mean([c == t for c, t in zip(theirs, truth)])
            agreement = np.mean([c == o for c, o in zip(theirs, ours)])
            cells.append(f"{accuracy:>20.1%} {agreement:>9.1%}")
        print(" ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
