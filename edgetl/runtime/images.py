"""A photo as the model input: the one preprocessing edgetl uses for training features, calibration,
benchmarks and on the device. TensorFlow-free: numpy and Pillow only.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Bump when load_image changes: it is part of every bottleneck cache key.
PREPROCESS_VERSION = 1
# How the model input is built from a photo; stored in every exported artifact.
PREPROCESSING = {
    "version": PREPROCESS_VERSION,
    "color": "RGB",
    "resize": "bilinear, whole image squashed to resolution x resolution (no crop)",
    "exif_transpose": True,
    "alpha": "composited on white",
    "pixel_range": "0..255",
}


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Decode a photo upright, as RGB (alpha composited on white). Raises OSError/ValueError (from
    Pillow) for files that cannot be decoded."""
    if isinstance(path, (str, Path)) and Path(path).exists() and not Path(path).is_file():
        raise ValueError(f"{path}: not a regular file")  # a FIFO would block the decoder until someone writes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's palette/EXIF chatter is not the user's problem
        with Image.open(path) as im:
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode a photo into the model input: uint8 RGB array of shape (size, size, 3).

    Raises OSError/ValueError (from Pillow) for files that cannot be decoded.
    """
    return resized(open_rgb(path), size)


def resized(image: Image.Image, size: int) -> np.ndarray:
    """A decoded RGB picture as the model input: squashed to size x size, bilinear, uint8."""
    return np.asarray(image.resize((size, size), Image.BILINEAR), dtype=np.uint8)
