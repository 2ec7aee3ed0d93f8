"""Frozen ImageNet MobileNet backbones: one builder per family, weights resolved in one place.

Weights are looked up, in order: an explicit weights directory (`--weights_dir` or `EDGETL_WEIGHTS_DIR`)
holding Keras' own file names, then Keras' cache (`$KERAS_HOME/models`), then Keras' download when
online. No-top weights do not depend on the input size, so a file for the same version and alpha at
another resolution is used (with a warning) when the exact one is missing.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edgetl.io.files import sha256_file

ALPHAS = {"v1": (0.25, 0.5, 0.75, 1.0), "v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)}
# Resolutions Keras publishes weights for; the builders accept any size in MIN..MAX_RESOLUTION.
KERAS_RESOLUTIONS = {"v1": (128, 160, 192, 224), "v2": (96, 128, 160, 192, 224)}
MIN_RESOLUTION, MAX_RESOLUTION = 32, 512
V1_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
NO_DOWNLOAD_ENV = "EDGETL_NO_DOWNLOAD"  # set to 1 to forbid network access (tests)


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weights for a backbone could be found (and none could be downloaded)."""


@dataclass(frozen=True)
class BackboneSpec:
    version: str  # "v1" | "v2"
    alpha: float
    resolution: int

    def __post_init__(self) -> None:
        if self.version not in ALPHAS:
            raise ValueError(f"unknown backbone {self.version!r}; expected one of {sorted(ALPHAS)}")
        if float(self.alpha) not in ALPHAS[self.version]:
            raise ValueError(
                f"MobileNet {self.version} has no width multiplier {self.alpha}; choose from {ALPHAS[self.version]}"
            )
        if not MIN_RESOLUTION <= int(self.resolution) <= MAX_RESOLUTION:
            raise ValueError(f"resolution {self.resolution} outside {MIN_RESOLUTION}..{MAX_RESOLUTION}")

    @property
    def id(self) -> str:
        return point_id(self.version, self.alpha, self.resolution)


def point_id(version: str, alpha: float, resolution: int) -> str:
    """A grid point's name in file names, tables and plots, e.g. "v2-a1-r224"."""
    return f"{version}-a{float(alpha):g}-r{int(resolution)}"


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path | None  # None means random initialization
    source: str  # "weights_dir" | "keras_cache" | "download" | "random"
    note: str  # human-readable: what was used and why
    sha256: str  # "" for random weights

    @property
    def description(self) -> str:
        return "none (random)" if self.path is None else f"imagenet:{self.path.name}"


def weights_file_name(version: str, alpha: float, resolution: int) -> str:
    """The file name Keras uses for ImageNet no-top weights."""
    if version == "v1":
        alpha_text = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}[float(alpha)]
        return f"mobilenet_{alpha_text}_{resolution}_tf_no_top.h5"
    # Keras writes str(float(alpha)): "1.0", "0.35", "1.3".
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{resolution}_no_top.h5"


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def _find_in(directory: Path, spec: BackboneSpec) -> tuple[Path | None, str]:
    exact = directory / weights_file_name(spec.version, spec.alpha, spec.resolution)
    if exact.is_file():
        return exact, ""
    others = sorted(KERAS_RESOLUTIONS[spec.version], key=lambda r: (abs(r - spec.resolution), -r))
    for r in others:
        candidate = directory / weights_file_name(spec.version, spec.alpha, r)
        if candidate.is_file():
            return candidate, (
                f"no {spec.resolution}px weights for MobileNet {spec.version} alpha {spec.alpha:g}; "
                f"using the {r}px file {candidate.name} (no-top weights do not depend on input size)"
            )
    return None, ""


def resolve_weights(
    spec: BackboneSpec,
    weights: str,
    weights_dir: str | Path | None = None,
    allow_download: bool | None = None,
) -> ResolvedWeights:
    """Find the ImageNet no-top weights for `spec`, or random weights when `weights == "none"`."""
    if weights == "none":
        return ResolvedWeights(None, "random", "random weights (--weights none): for pipeline tests only", "")
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file not found: {path}")
        return ResolvedWeights(path, "file", f"weights from {path}", sha256_file(path))

    weights_dir = weights_dir or os.environ.get("EDGETL_WEIGHTS_DIR")
    searched: list[Path] = []
    places = ([("weights_dir", Path(weights_dir).expanduser())] if weights_dir else []) + [
        ("keras_cache", keras_cache_dir())
    ]
    for source, directory in places:
        searched.append(directory)
        path, note = _find_in(directory, spec)
        if path is not None:
            return ResolvedWeights(path, source, note or f"weights from {path}", sha256_file(path))

    if allow_download is None:
        allow_download = os.environ.get(NO_DOWNLOAD_ENV, "") not in ("1", "true", "yes")
    name = weights_file_name(spec.version, spec.alpha, _download_resolution(spec))
    if allow_download:
        try:
            path = _download(spec.version, name)
            return ResolvedWeights(path, "download", f"downloaded {name} into {path.parent}", sha256_file(path))
        except Exception as e:  # offline: say what was tried instead of a urllib traceback
            why = str(e).split(" -- ")[-1].strip() or type(e).__name__  # Keras wraps the OS error after " -- "
            reason = f"download of {name} failed ({why[:120]})"
    else:
        reason = f"downloads disabled ({NO_DOWNLOAD_ENV}=1)"
    looked = "\n  ".join(
        str(d / weights_file_name(spec.version, spec.alpha, r))
        for d in searched
        for r in KERAS_RESOLUTIONS[spec.version]
    )
    raise WeightsNotFoundError(
        f"no ImageNet weights for MobileNet {spec.version} alpha {spec.alpha:g}; {reason}.\n"
        f"Looked for:\n  {looked}\n"
        "Pass --weights_dir DIR holding Keras' weight files, or --weights none for random weights."
    )


def _download_resolution(spec: BackboneSpec) -> int:
    sizes = KERAS_RESOLUTIONS[spec.version]
    return spec.resolution if spec.resolution in sizes else max(sizes)


def _download(version: str, name: str) -> Path:
    import keras

    url = (V1_URL if version == "v1" else V2_URL) + name
    return Path(keras.utils.get_file(name, url, cache_subdir="models"))


def build_feature_extractor(spec: BackboneSpec, weights: ResolvedWeights):
    """Image (raw RGB 0..255, float32) -> pooled feature vector, with the [-1, 1] scaling inside.

    The backbone is frozen and its batch norm stays in inference mode.
    """
    import keras

    family = keras.applications.MobileNet if spec.version == "v1" else keras.applications.MobileNetV2
    shape = (spec.resolution, spec.resolution, 3)
    backbone = family(
        input_shape=shape,
        alpha=spec.alpha,
        include_top=False,
        weights=str(weights.path) if weights.path is not None else None,
    )
    backbone.trainable = False
    inputs = keras.Input(shape, dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_pm1")(inputs)
    x = backbone(x, training=False)
    # Named here rather than by `pooling="avg"`: Keras numbers unnamed layers per process
    # (global_average_pooling2d_1, _2, ...) and the name ends up in the exported files, so the same
    # point would give different bytes depending on what the process built before it.
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, features, name=f"mobilenet_{spec.version}_{spec.alpha:g}_{spec.resolution}")


def count_macs(model) -> int:
    """Multiply-accumulates for one image through conv, depthwise conv and dense layers.

    Counted from layer shapes (the standard MobileNet paper convention), which is what compares
    backbones; element-wise ops (BN, ReLU, adds) are left out.
    """
    import keras

    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += h * w * cout * kh * kw * cin // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        else:
            yield layer


def hub_fingerprint(handle: str) -> str:
    """Cache identity of a TF Hub handle: the handle, plus the SavedModel's bytes for a local directory."""
    h = hashlib.sha256(handle.encode())
    local = Path(handle).expanduser()
    if local.is_dir():
        for f in sorted(local.rglob("*")):
            if f.is_file():
                h.update(f.relative_to(local).as_posix().encode())
                h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def build_hub_feature_extractor(handle: str, resolution: int):
    """Image (raw RGB 0..255) -> feature vector from a TF Hub image feature-vector module.

    Loaded with `hub.load` (hub.KerasLayer needs tf_keras, not Keras 3). Hub image modules take RGB in
    [0, 1], so the scaling sits in front of the module, inside the model.
    """
    import keras

    layer = _hub_layer_class()(handle, name="tfhub_module")
    inputs = keras.Input((resolution, resolution, 3), dtype="float32", name="image")
    features = layer(inputs)
    return keras.Model(inputs, features, name="tfhub_feature_extractor")


_HUB_LAYER = None


def _hub_layer_class():
    """The Keras layer wrapping a hub module, defined on first use so importing this module stays TF-free."""
    global _HUB_LAYER
    if _HUB_LAYER is not None:
        return _HUB_LAYER
    import keras

    @keras.saving.register_keras_serializable(package="edgetl")
    class HubFeatureVector(keras.layers.Layer):
        def __init__(self, handle: str, **kwargs):
            kwargs["trainable"] = False  # a frozen backbone, also when reloaded from its config
            super().__init__(**kwargs)
            import tensorflow_hub as hub

            self.handle = handle
            try:
                self.module = hub.load(handle)
            except Exception as e:
                raise WeightsNotFoundError(f"cannot load TF Hub module {handle!r}: {type(e).__name__}: {e}") from e

        def call(self, images):
            return self.module(images / 255.0)

        def compute_output_spec(self, images):
            import tensorflow as tf

            probe = self.module(tf.zeros((1, *images.shape[1:]), tf.float32))
            return keras.KerasTensor((images.shape[0], probe.shape[-1]), dtype="float32")

        def get_config(self):
            return {**super().get_config(), "handle": self.handle}

    _HUB_LAYER = HubFeatureVector
    return _HUB_LAYER


def register_custom_layers() -> None:
    """Make saved edgetl models that wrap a TF Hub module loadable with keras.saving.load_model."""
    _hub_layer_class()


# TF Hub's (and Kaggle Models') names of the MobileNet feature-vector modules: family, width x 100, resolution.
_HUB_MOBILENET = (
    re.compile(r"tfhub\.dev/google/imagenet/mobilenet_(v[12])_(\d{3})_(\d{2,3})/feature_vector(/\d+)?/?$"),
    re.compile(r"kaggle\.com/models/google/mobilenet-(v[12])/[^/]+/(\d{3})-(\d{2,3})-feature-vector(/\d+)?/?$"),
)


def hub_mobilenet(handle: str) -> BackboneSpec | None:
    """The MobileNet a TF Hub feature-vector URL names (`.../mobilenet_v2_100_224/feature_vector/5` is V2
    alpha 1.0 at 224 px), or None for any other module. ValueError for a MobileNet edgetl cannot build."""
    for pattern in _HUB_MOBILENET:
        m = pattern.search(handle.strip().lower())
        if m:
            return BackboneSpec(m.group(1), int(m.group(2)) / 100, int(m.group(3)))
    return None


def hub_unreachable(handle: str) -> str | None:
    """Why `handle` cannot be loaded from TF Hub now (downloads disabled, or hub.load failed), else None.

    A module already in TF Hub's cache loads offline, so it is tried before giving up on it."""
    import tensorflow_hub as hub

    if os.environ.get(NO_DOWNLOAD_ENV, "") in ("1", "true", "yes") and not _in_hub_cache(handle):
        return f"downloads disabled ({NO_DOWNLOAD_ENV}=1)"
    try:
        hub.resolve(handle)
    except Exception as e:  # offline: DNS, connection, HTTP errors all mean "not from the hub this time"
        return f"TF Hub unreachable ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
    return None


def _in_hub_cache(handle: str) -> bool:
    """Whether tensorflow_hub's cache already holds `handle` (its directory is sha1(handle), as hub names it)."""
    import tempfile

    cache = Path(os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")
    return (cache / hashlib.sha1(handle.encode()).hexdigest()).is_dir()
