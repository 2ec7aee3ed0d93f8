"""Augmented views of a training photo, for the bottleneck cache and for fine-tuning.

Each view is a pure function of (the image's content hash, the view number, AUGMENT_VERSION), so a cached
feature of view 3 is always the feature of the same pixels and a re-run recomputes nothing. The
transforms are the usual mild ones for photos of objects: a horizontal flip, a random crop of 60-100 %
of each side (aspect ratio free within that), a rotation of up to 10 degrees, and brightness, contrast
and saturation within +-20 %; or, with `Distortions`, retrain.py's flip, crop, scale and brightness with
its percentages (`edgetl retrain`). TensorFlow-free, like `data.load_image`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageEnhance

from edgetl.params import Interval, OneOf, validate
from edgetl.runtime.images import open_rgb

# Bump when a transform changes: it is part of every augmented view's cache key.
AUGMENT_VERSION = 2
MAX_ROTATION_DEGREES = 10.0
MIN_CROP_SIDE = 0.6
JITTER = 0.2
# retrain.py set no upper bound; beyond doubling a side, a view is mostly blur of one corner.
MAX_DISTORTION_PERCENT = 100.0


def view_seed(content_hash: str, view: int) -> int:
    digest = hashlib.sha256(f"{content_hash}|view-{view}|augment-v{AUGMENT_VERSION}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def augment(im: Image.Image, size: int, rng: np.random.Generator) -> np.ndarray:
    """One random view of `im` as the model input: uint8 RGB (size, size, 3)."""
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    w, h = im.size
    # Crop inside the rotated picture, so no blank corner enters the view.
    shrink = 1.0 / (math.cos(math.radians(abs(angle))) + math.sin(math.radians(abs(angle))) * max(w / h, h / w))
    im = im.rotate(angle, resample=Image.BILINEAR)
    # The crop lies inside the centred rectangle (w, h) * shrink, which the rotated picture covers.
    iw, ih = int(w * shrink), int(h * shrink)
    cw, ch = (max(1, int(side * rng.uniform(MIN_CROP_SIDE, 1.0))) for side in (iw, ih))
    left = (w - iw) // 2 + rng.integers(0, iw - cw + 1)
    top = (h - ih) // 2 + rng.integers(0, ih - ch + 1)
    im = im.crop((left, top, left + cw, top + ch)).resize((size, size), Image.BILINEAR)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhancer(im).enhance(rng.uniform(1 - JITTER, 1 + JITTER))
    return np.asarray(im, dtype=np.uint8)


def augmented_image(
    path: str | Path, content_hash: str, size: int, view: int, distortions: Distortions | None = None
) -> np.ndarray:
    """View number `view` (1, 2, ...) of the photo at `path`, the same pixels every time: edgetl's own
    transforms, or retrain.py's `distortions` when given."""
    rng = np.random.default_rng(view_seed(content_hash, view))
    if distortions is not None:
        return distort(open_rgb(path), size, rng, distortions)
    return augment(open_rgb(path), size, rng)


@dataclass(frozen=True)
class Distortions:
    """retrain.py's distortions, with its flags' meanings (percentages), for augmented views and fine-tuning.

    As retrain.py did: the photo is resized to `size * (1 + random_crop/100) * uniform(1, 1 + random_scale/100)`
    on each side, a `size` x `size` square is cut at a random place, mirrored with probability 1/2 when
    `flip_left_right`, and its pixels multiplied by uniform(1 - b, 1 + b) for `random_brightness` b (in
    percent); edgetl clips the result to 0..255 since a view is a uint8 image.
    """

    flip_left_right: bool = False
    random_crop: float = 0.0
    random_scale: float = 0.0
    random_brightness: float = 0.0

    CONSTRAINTS: ClassVar[dict] = {  # percentages
        "flip_left_right": OneOf((True, False)),
        "random_crop": Interval(float, 0, MAX_DISTORTION_PERCENT),
        "random_scale": Interval(float, 0, MAX_DISTORTION_PERCENT),
        "random_brightness": Interval(float, 0, 100, "left"),
    }

    def __post_init__(self) -> None:
        validate(self)

    @property
    def active(self) -> bool:
        return bool(self.flip_left_right or self.random_crop or self.random_scale or self.random_brightness)

    @property
    def tag(self) -> str:
        """Part of the views' cache key: other percentages, other pixels."""
        return (
            f"retrain-f{int(self.flip_left_right)}-c{self.random_crop:g}-s{self.random_scale:g}"
            f"-b{self.random_brightness:g}"
        )


def distort(im: Image.Image, size: int, rng: np.random.Generator, d: Distortions) -> np.ndarray:
    """One retrain.py-style random view of `im` as the model input: uint8 RGB (size, size, 3)."""
    scale = (1.0 + d.random_crop / 100.0) * rng.uniform(1.0, 1.0 + d.random_scale / 100.0)
    side = max(size, int(round(size * scale)))
    im = im.resize((side, side), Image.BILINEAR)  # squashed, like retrain.py's resize_bilinear
    left, top = rng.integers(0, side - size + 1), rng.integers(0, side - size + 1)
    im = im.crop((left, top, left + size, top + size))
    if d.flip_left_right and rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    b = d.random_brightness / 100.0
    pixels = np.asarray(im, dtype=np.float32) * rng.uniform(1.0 - b, 1.0 + b)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)
