"""edgetl.export.bias_correction on a real (small) MobileNet: only biases move, int8 means come back."""

from __future__ import annotations

import numpy as np
import pytest
from export_fixtures import ExportRun, build_export_run

from edgetl.export.bias_correction import _reduce_axes, correct_biases, quantize_like_int8


def test_quantize_like_int8_is_symmetric_per_output_channel():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
    kernel[..., 0] = 0.0  # an all-zero channel must not divide by zero
    kernel[..., 1] *= 1000.0  # one large channel must not coarsen the others
    rounded = quantize_like_int8(kernel, (0, 1, 2))
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127.0
    assert np.array_equal(rounded[..., 0], kernel[..., 0])
    for c in range(1, 8):
        steps = rounded[..., c] / scale[c]
        assert np.allclose(steps, np.round(steps), atol=1e-3)
        assert np.abs(np.round(steps)).max() == 127
        assert np.abs(rounded[..., c] - kernel[..., c]).max() <= scale[c] / 2 * (1 + 1e-5)
    depthwise = rng.normal(size=(3, 3, 6, 1)).astype(np.float32)
    per_channel = quantize_like_int8(depthwise, (0, 1))
    assert np.array_equal(per_channel[:, :, 2], quantize_like_int8(depthwise[:, :, 2:3], (0, 1))[:, :, 0])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> ExportRun:
    return build_export_run(tmp_path_factory.mktemp("bias_correction"))


def _images(run: ExportRun) -> np.ndarray:
    from edgetl.data.dataset import SplitConfig, scan_dataset
    from edgetl.runtime.images import load_image

    records = scan_dataset(run.image_dir, SplitConfig(10, 30)).records
    return np.stack([load_image(r.path, run.resolution) for r in records]).astype(np.float32)


def _weights(model) -> dict[str, list[np.ndarray]]:
    out = {}
    for layer in model.layers:
        for sub in getattr(layer, "layers", [layer]):
            out[sub.name] = [w.copy() for w in sub.get_weights()]
    return out


def _with_int8_kernels(model):
    """The model with every conv and dense kernel rounded as the converters round it (in place)."""
    for layer in model.layers:
        for sub in getattr(layer, "layers", [layer]):
            axes = _reduce_axes(sub)
            if axes is not None:
                weights = sub.get_weights()
                weights[0] = quantize_like_int8(weights[0], axes)
                sub.set_weights(weights)
    return model


def test_correction_moves_only_biases_and_restores_the_int8_output_means(run):
    import keras

    load = lambda: keras.saving.load_model(run.run_dir / "model.keras", compile=False)  # noqa: E731
    images = _images(run)
    float_model = load()
    features = lambda m: np.asarray(m.layers[2].predict(m.layers[1](images), verbose=0), np.float64)  # noqa: E731
    float_features = features(float_model)
    before = _weights(float_model)

    corrected = load()
    report = correct_biases(corrected, images)
    after = _weights(corrected)
    convs = [
        layer.name
        for layer in float_model.layers[2].layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    assert report.layers == len(convs) + 1 and report.images == len(images) and report.max_shift > 0
    changed = set()
    for name, weights in before.items():
        for i, (w0, w1) in enumerate(zip(weights, after[name])):
            if not np.array_equal(w0, w1):
                changed.add((name, i))
    # exactly the betas of the batch norms after each conv, and the head's bias
    assert changed == {(f"{n}_bn", 1) for n in convs} | {("head", 1)}

    plain_error = np.abs(features(_with_int8_kernels(load())).mean(0) - float_features.mean(0)).mean()
    corrected_error = np.abs(features(_with_int8_kernels(corrected)).mean(0) - float_features.mean(0)).mean()
    print(f"\nmean |feature mean shift| with int8 kernels: {plain_error:.4g} plain, {corrected_error:.4g} corrected")
    assert corrected_error < 0.5 * plain_error


@pytest.mark.parametrize(
    "kind,kernel,strides,padding",
    [
        ("conv", 3, 1, "same"),
        ("conv", 3, 2, "same"),
        ("conv", 1, 1, "valid"),
        ("conv", 3, 2, "valid"),
        ("depthwise", 3, 1, "same"),
        ("depthwise", 3, 2, "same"),
        ("depthwise", 3, 2, "valid"),
    ],
)
def test_rounding_error_sums_equal_running_the_layer_with_the_kernel_error(kind, kernel, strides, padding):
    """The fast sums over kernel taps give what convolving with W - W_q gives, padding and stride included."""
    import keras

    from edgetl.export import bias_correction as bc

    rng = np.random.default_rng(0)
    layer = (
        keras.layers.Conv2D(8, kernel, strides=strides, padding=padding, use_bias=False)
        if kind == "conv"
        else keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=2, use_bias=False)
    )
    x = rng.uniform(0, 6, (3, 11, 10, 4)).astype(np.float32)
    layer(x)
    float_kernel = layer.get_weights()[0]
    layer.set_weights([bc.quantize_like_int8(float_kernel, bc._reduce_axes(layer))])
    fast, n = bc._rounding_error(layer, float_kernel, x)
    summed, m = bc._rounding_error(layer, float_kernel, x.sum(axis=0), images=len(x))  # as the probe model gives it
    np.testing.assert_allclose(summed, fast, rtol=1e-5, atol=1e-6)
    assert m == n
    layer.set_weights([float_kernel - layer.get_weights()[0]])
    out = np.asarray(layer(x), np.float64)
    slow = out.reshape(-1, out.shape[-1])
    np.testing.assert_allclose(fast, slow.sum(0), rtol=1e-4, atol=1e-5)
    assert n == len(slow)
