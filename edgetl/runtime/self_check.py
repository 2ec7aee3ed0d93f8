"""The self-check: does this pipeline feed the model what it was trained on? And if not, which usual mistake?

A model file exported by edgetl carries golden inputs (`edgetl.runtime.golden`): a few test photos and the
file's own answers on them. `self_check` decodes the photos with the caller's preprocessing (colour order,
normalization, resize method, crop, EXIF orientation), runs the model, and compares the probabilities with
the reference answers under the file's stated tolerance. On a mismatch, `diagnose` re-runs the photos
under the usual wrong pipelines and names the one that reproduces the observed outputs.

TensorFlow-free (numpy, Pillow and a TFLite runtime, or onnxruntime for .onnx): runs wherever the model runs.
Command line: ``edgetl label --self_check MODEL`` or ``python tools/label_image.py --self_check MODEL``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgetl.runtime.golden import GoldenError, read_golden, reference_probabilities
from edgetl.runtime.images import _to_rgb
from edgetl.runtime.metadata import ModelFileError
from edgetl.runtime.model import load_model

PROG = "label_image --self_check"
COLOR_ORDERS = ("RGB", "BGR")
RESIZES = ("bilinear", "bilinear_no_antialias", "bilinear_align_corners", "nearest")
CROPS = ("none", "center")
ORIENTATIONS = ("apply", "ignore")


@dataclass(frozen=True)
class Pipeline:
    """How an app turns a photo into the model input. `mean`/`std` None: the model's own (its metadata);
    the float input is (pixel - mean) / std, pixels 0..255, as label_image's --input_mean/--input_std."""

    color_order: str = "RGB"
    mean: float | None = None
    std: float | None = None
    resize: str = "bilinear"
    crop: str = "none"
    exif_orientation: str = "apply"

    def __post_init__(self):
        for name, valid in (
            ("color_order", COLOR_ORDERS),
            ("resize", RESIZES),
            ("crop", CROPS),
            ("exif_orientation", ORIENTATIONS),
        ):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name} must be one of {', '.join(valid)}; got {getattr(self, name)!r}")
        if self.std is not None and self.std == 0:
            raise ValueError("std must not be 0")


# The usual wrong pipelines (for a model that takes 0..255 RGB pixels, squashed, upright), each with the
# phrase that completes "your pipeline matches these outputs if it ...". Double normalization is [-1, 1]
# scaling applied twice: ((p - 127.5) / 127.5 - 127.5) / 127.5, i.e. mean 127.5 * 128.5, std 127.5 ** 2.
MISTAKES: dict[str, tuple[str, Pipeline]] = {
    "bgr": ("swaps R and B (BGR instead of RGB)", Pipeline(color_order="BGR")),
    "unit_range": ("scales pixels to [0, 1] (the model takes 0..255)", Pipeline(mean=0.0, std=255.0)),
    "pm1_range": ("scales pixels to [-1, 1] (the model takes 0..255)", Pipeline(mean=127.5, std=127.5)),
    "double_normalization": (
        "normalizes twice ([-1, 1] scaling applied on top of [-1, 1])",
        Pipeline(mean=127.5 * 128.5, std=127.5**2),
    ),
    "nearest_resize": ("resizes with nearest neighbour (the model expects bilinear)", Pipeline(resize="nearest")),
    "center_crop": ("center-crops to a square (the model expects the whole image squashed)", Pipeline(crop="center")),
    "rotation": (
        "ignores the EXIF orientation (the image reaches the model turned 90 degrees)",
        Pipeline(exif_orientation="ignore"),
    ),
}


def _bilinear_no_antialias(image: Image.Image, size: int, align_corners: bool = False) -> np.ndarray:
    """Bilinear resize that samples 2x2 neighbours and no antialiasing filter: with half-pixel centers as
    OpenCV's INTER_LINEAR and TensorFlow's resize_bilinear(half_pixel_centers=True), or corner to corner as
    TensorFlow 1's resize_bilinear(align_corners=True)."""
    arr = np.asarray(image, np.float32)
    h, w = arr.shape[:2]

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if align_corners:
            pos = np.arange(size) * ((n_in - 1) / max(1, size - 1))
        else:
            pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h)
    x0, x1, fx = axis(w)
    rows = arr[y0] * (1 - fy)[:, None, None] + arr[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def pixels(data: bytes, size: int, pipeline: Pipeline) -> np.ndarray:
    """One encoded photo through `pipeline`'s decoding, crop, resize and colour order: uint8 (size, size, 3).
    (Normalization is the model's: `LoadedModel` applies mean/std.)"""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if pipeline.exif_orientation == "apply":
            im = ImageOps.exif_transpose(im)
        image = _to_rgb(im)
    if pipeline.crop == "center":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if pipeline.resize in ("bilinear_no_antialias", "bilinear_align_corners"):
        arr = _bilinear_no_antialias(image, size, align_corners=pipeline.resize == "bilinear_align_corners")
    else:
        method = Image.BILINEAR if pipeline.resize == "bilinear" else Image.NEAREST
        arr = np.asarray(image.resize((size, size), method), np.uint8)
    return arr[..., ::-1].copy() if pipeline.color_order == "BGR" else arr


def run_pipeline(model, photos: list[bytes], pipeline: Pipeline) -> np.ndarray:
    """Probabilities (N, C) of a `LoadedModel` on the golden photos prepared by `pipeline`."""
    images = np.stack([pixels(p, model.input_size, pipeline) for p in photos])
    saved = model.mean, model.std
    inp = (model.metadata or {}).get("input") or {}
    model.mean = float(pipeline.mean if pipeline.mean is not None else inp.get("mean", 0.0))
    model.std = float(pipeline.std if pipeline.std is not None else inp.get("std", 1.0))
    try:
        return np.stack([model.predict(image[None], batch_size=1)[0] for image in images])
    finally:
        model.mean, model.std = saved


@dataclass(frozen=True)
class Comparison:
    """Observed probabilities against the reference answers."""

    max_diff: float  # largest |observed - reference| over each image's reference top-k classes
    top1_agree: int  # images whose observed top-1 is the reference top-1
    num_images: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def compare(observed: np.ndarray, record: dict) -> Comparison:
    """How far `observed` (N, C) is from the record's reference top-k (docs/interfaces.md: the tolerance)."""
    observed = np.asarray(observed, np.float64)
    idx, ref = reference_probabilities(record, observed.shape[1])
    if observed.shape[0] != idx.shape[0]:
        raise GoldenError(f"{observed.shape[0]} observed answers for {idx.shape[0]} golden images")
    got = np.take_along_axis(observed, idx, axis=1)
    return Comparison(
        max_diff=float(np.abs(got - ref).max()),
        top1_agree=int((observed.argmax(1) == idx[:, 0]).sum()),
        num_images=int(idx.shape[0]),
        tolerance=float(record["tolerance"]["max_abs_probability_diff"]),
    )


@dataclass(frozen=True)
class Diagnosis:
    """The usual mistakes ranked by how closely they reproduce the observed outputs."""

    ranked: list[tuple[str, float]]  # (mistake, largest |probability difference| to the observed), closest first
    tolerance: float

    @property
    def best(self) -> str | None:
        """The mistake that reproduces the observed outputs within the tolerance, None when none does."""
        return self.ranked[0][0] if self.ranked and self.ranked[0][1] <= self.tolerance else None

    @property
    def closest(self) -> list[str]:
        """The mistakes tied at the smallest distance (an int8 input can make several feed the same tensor)."""
        if self.best is None:
            return []
        return [n for n, d in self.ranked if d <= self.ranked[0][1] + 1e-6]

    def sentence(self) -> str:
        if not self.ranked:
            return "no diagnosis"
        name, dist = self.ranked[0]
        if self.best is None:
            return (
                f"no single usual mistake reproduces these outputs (closest: it {MISTAKES[name][0]}, "
                f"differing by up to {dist:.3f})"
            )
        tied = self.closest[1:]
        close = [n for n, d in self.ranked[1:] if n not in tied and d <= self.tolerance and d <= max(2 * dist, 1e-3)]
        also = f"; as close: {', '.join(tied)}" if tied else ""
        also += f"; about as close: {', '.join(close)}" if close else ""
        return f"your pipeline matches these outputs if it {MISTAKES[name][0]} (differing by up to {dist:.3f}{also})"


def diagnose(model, photos: list[bytes], observed: np.ndarray, tolerance: float) -> Diagnosis:
    """Rank MISTAKES by the largest |probability difference| between their outputs and `observed`."""
    observed = np.asarray(observed, np.float64)
    ranked = []
    for name, (_, pipeline) in MISTAKES.items():
        ranked.append((name, float(np.abs(run_pipeline(model, photos, pipeline) - observed).max())))
    ranked.sort(key=lambda item: item[1])
    return Diagnosis(ranked, tolerance)


@dataclass(frozen=True)
class SelfCheck:
    comparison: Comparison
    diagnosis: Diagnosis | None
    observed: np.ndarray

    @property
    def ok(self) -> bool:
        return self.comparison.ok

    def verdict(self) -> str:
        c = self.comparison
        if c.ok:
            return (
                f"self-check passed: {c.num_images} golden images match the reference answers (largest "
                f"probability difference {c.max_diff:.4f} <= {c.tolerance:g}; top-1 {c.top1_agree}/{c.num_images})"
            )
        line = (
            f"self-check FAILED: the outputs differ from the reference answers by up to {c.max_diff:.3f} "
            f"(> {c.tolerance:g}; top-1 agrees on {c.top1_agree}/{c.num_images} golden images)"
        )
        return line + (f"; {self.diagnosis.sentence()}" if self.diagnosis is not None else "")


def self_check(model, pipeline: Pipeline = Pipeline(), observed: np.ndarray | None = None) -> SelfCheck:
    """Run the golden photos of a `LoadedModel` through `pipeline` (or take an app's `observed` answers on
    them, (N, C) in golden order), compare with the reference answers, and diagnose a mismatch."""
    record, photos = read_golden(model.path)
    if observed is None:
        observed = run_pipeline(model, photos, pipeline)
    comparison = compare(observed, record)
    diagnosis = None if comparison.ok else diagnose(model, photos, observed, comparison.tolerance)
    return SelfCheck(comparison, diagnosis, np.asarray(observed))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run the golden images a model carries through your preprocessing and compare with the "
        "model's reference answers: exit 0 when they match, 1 when not (with a diagnosis), 2 on an error.",
    )
    p.add_argument("--self_check", required=True, metavar="MODEL", help=".tflite or .onnx exported by edgetl")
    p.add_argument(
        "--input_mean", type=float, default=None, help="float input = (pixel - mean) / std; default: the model's"
    )
    p.add_argument("--input_std", type=float, default=None, help="default: the model's")
    p.add_argument("--color_order", choices=COLOR_ORDERS, default="RGB")
    p.add_argument(
        "--resize",
        choices=RESIZES,
        default="bilinear",
        help="bilinear: Pillow's, antialiased (edgetl's); bilinear_no_antialias: OpenCV's INTER_LINEAR; "
        "bilinear_align_corners: TensorFlow 1's align_corners=True",
    )
    p.add_argument("--crop", choices=CROPS, default="none", help="none: squash the whole image")
    p.add_argument("--exif_orientation", choices=ORIENTATIONS, default="apply")
    p.add_argument(
        "--observed",
        default=None,
        metavar="JSON",
        help='an app\'s answers on the golden images instead: {"probabilities": [[p, ...], ...]} in golden order',
    )
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="also print the comparison and diagnosis as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """The command: one verdict line on stdout; exit 0 (match), 1 (mismatch), 2 (error)."""
    args = _parser().parse_args(argv)
    try:
        pipeline = Pipeline(
            args.color_order, args.input_mean, args.input_std, args.resize, args.crop, args.exif_orientation
        )
        model = load_model(args.self_check, num_threads=args.num_threads)
        observed = None
        if args.observed is not None:
            observed = np.asarray(json.loads(Path(args.observed).read_text())["probabilities"], np.float64)
        result = self_check(model, pipeline, observed)
    except (ModelFileError, GoldenError, ValueError, OSError, KeyError, ImportError) as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(result.verdict())
    if args.json:
        d = result.diagnosis
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "max_abs_probability_diff": result.comparison.max_diff,
                    "tolerance": result.comparison.tolerance,
                    "top1_agree": result.comparison.top1_agree,
                    "num_images": result.comparison.num_images,
                    "diagnosis": None if d is None else {"best": d.best, "closest": d.closest, "ranked": d.ranked},
                }
            )
        )
    return 0 if result.ok else 1
