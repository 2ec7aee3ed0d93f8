#!/usr/bin/env python3
"""Classify images with a stock client library and a .tflite file as it is: MediaPipe Tasks'
ImageClassifier (default) or the TFLite Task Library's ImageClassifier (--client task_library).

The library reads everything it needs from the file's standard TFLite Metadata (normalization, label
names); nothing is passed beside the model. Runs in the client environments of tools/make_client_venvs.sh
(.venv-mediapipe, .venv-task-library): it imports neither edgetl nor TensorFlow.

Images are decoded with Pillow (EXIF orientation applied, converted to RGB) and handed to the library as
uint8 RGB arrays; the library resizes them to the model's input itself, with its own method.

  .venv-mediapipe/bin/python tools/client_check.py --model_file m.tflite --image_dir photos/ [--limit 20]
  .venv-task-library/bin/python tools/client_check.py --client task_library --model_file m.tflite img1.jpg img2.jpg
  ... --json            # one JSON document on stdout: {"client", "version", "models": [{"model_file",
                        #   "predictions": [{"image", "label", "index", "score", "top": [...]}]}]}

Exit status: 0 when every model loaded and classified every image, 1 otherwise (errors are reported per
model; with --json they are in the document as "error").
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
CLIENTS = ("mediapipe", "task_library")


def find_images(image_dir: Path, limit: int | None, per_class: int | None) -> list[Path]:
    """Image files under `image_dir`, sorted; `per_class` keeps that many from each folder."""
    files = sorted(p for p in image_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if per_class is not None:
        kept: list[Path] = []
        counts: dict[Path, int] = {}
        for p in files:
            if counts.get(p.parent, 0) < per_class:
                kept.append(p)
                counts[p.parent] = counts.get(p.parent, 0) + 1
        files = kept
    return files[:limit] if limit is not None else files


def load_rgb(path: Path):
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _categories(raw, top_k: int) -> list[dict]:
    cats = sorted(raw, key=lambda c: (-float(c.score), int(c.index)))[:top_k]
    return [
        {
            "label": c.category_name or "",
            "display_name": getattr(c, "display_name", "") or "",
            "index": int(c.index),
            "score": float(c.score),
        }
        for c in cats
    ]


class MediaPipeClient:
    name = "mediapipe"

    def __init__(self, model_file: Path, max_results: int):
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core import base_options

        self._mp = mp
        options = vision.ImageClassifierOptions(
            base_options=base_options.BaseOptions(model_asset_path=str(model_file)), max_results=max_results
        )
        self._classifier = vision.ImageClassifier.create_from_options(options)

    def classify(self, rgb, top_k: int) -> list[dict]:
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        result = self._classifier.classify(image)
        return _categories(result.classifications[0].categories, top_k)

    def close(self) -> None:
        self._classifier.close()


class TaskLibraryClient:
    name = "task_library"

    def __init__(self, model_file: Path, max_results: int):
        from tflite_support.task import core, processor, vision

        self._vision = vision
        options = vision.ImageClassifierOptions(
            base_options=core.BaseOptions(file_name=str(model_file)),
            classification_options=processor.ClassificationOptions(max_results=max_results),
        )
        self._classifier = vision.ImageClassifier.create_from_options(options)

    def classify(self, rgb, top_k: int) -> list[dict]:
        image = self._vision.TensorImage.create_from_array(rgb)
        result = self._classifier.classify(image)
        return _categories(result.classifications[0].categories, top_k)

    def close(self) -> None:
        pass


def client_version(client: str) -> str:
    dist = {"mediapipe": "mediapipe", "task_library": "tflite-support"}[client]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_model(client: str, model_file: Path, images: list[Path], top_k: int) -> dict:
    entry: dict = {"model_file": str(model_file), "predictions": []}
    t0 = time.perf_counter()
    try:
        cls = MediaPipeClient if client == "mediapipe" else TaskLibraryClient
        classifier = cls(model_file, max_results=-1)  # every class: the top-k is cut here
    except Exception as e:  # the library's own message: it says what the metadata lacks
        entry["error"] = f"{type(e).__name__}: {e}"
        return entry
    entry["load_seconds"] = round(time.perf_counter() - t0, 4)
    try:
        for path in images:
            try:
                rgb = load_rgb(path)
            except OSError as e:
                entry["predictions"].append({"image": str(path), "error": f"cannot decode: {e}"})
                continue
            top = classifier.classify(rgb, top_k)
            best = top[0] if top else {"label": None, "index": None, "score": None}
            entry["predictions"].append(
                {"image": str(path), "label": best["label"], "index": best["index"], "score": best["score"], "top": top}
            )
    except Exception as e:
        entry["error"] = f"{type(e).__name__}: {e}"
    finally:
        classifier.close()
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model_file", "--model-file", nargs="+", type=Path, required=True, help=".tflite file(s)")
    p.add_argument("--image_dir", "--image-dir", type=Path, help="classify the images under this folder")
    p.add_argument("images", nargs="*", type=Path, help="image files (besides or instead of --image_dir)")
    p.add_argument("--client", choices=CLIENTS, default="mediapipe")
    p.add_argument("--limit", type=int, help="at most this many images from --image_dir")
    p.add_argument("--per_class", "--per-class", type=int, help="at most this many images per folder")
    p.add_argument("--top_k", "--top-k", type=int, default=3, help="categories kept per image (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    args = p.parse_args(argv)

    images = list(args.images)
    if args.image_dir is not None:
        if not args.image_dir.is_dir():
            p.error(f"--image_dir {args.image_dir} is not a folder")
        images += find_images(args.image_dir, args.limit, args.per_class)
    if not images:
        p.error("no images: pass --image_dir or image files")
    for path in images:
        if not path.is_file():
            p.error(f"{path}: no such image")

    doc = {"client": args.client, "version": client_version(args.client), "models": []}
    ok = True
    for model_file in args.model_file:
        entry = run_model(args.client, model_file, images, max(1, args.top_k))
        doc["models"].append(entry)
        ok = ok and "error" not in entry and all("error" not in pr for pr in entry["predictions"])
        if not args.json:
            print(f"== {model_file} ({args.client} {doc['version']})")
            for pr in entry["predictions"]:
                if "error" in pr:
                    print(f"{pr['image']}: ERROR {pr['error']}")
                else:
                    print(f"{pr['image']}: {pr['label']!s} {pr['score']:.4f}")
            if "error" in entry:
                print(f"ERROR {entry['error']}")
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
