"""Augmented views of a training photo, for the bottleneck cache and for fine-tuning.

Each view is a pure function of (the image's content hash, the view number, AUGMENT_VERSION), so a cached
feature of view 3 is always the feature of the same pixels and a re-run recomputes nothing. The
transforms are the usual mild ones for photos of objects: a horizontal flip, a random crop of 60-100 %
of each side (aspect ratio free within that), a rotation of up to 10 degrees, and brightness, contrast
and saturation within +-20 %. TensorFlow-free, like `data.load_image`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from edgetl.runtime.images import open_rgb

# Bump when a transform changes: it is part of every augmented view's cache key.
AUGMENT_VERSION = 2
MAX_ROTATION_DEGREES = 10.0
MIN_CROP_SIDE = 0.6
JITTER = 0.2


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


def augmented_image(path: str | Path, content_hash: str, size: int, view: int) -> np.ndarray:
    """View number `view` (1, 2, ...) of the photo at `path`, the same pixels every time."""
    return augment(open_rgb(path), size, np.random.default_rng(view_seed(content_hash, view)))
