"""The table of formats every stage agrees on, and the flags that name them.

One row per artifact kind: its file suffix, the runtime that loads it, how it is quantized, whether it
needs calibration images, the thresholds of its check against the float Keras model, and its plot
colour. Import-light (stdlib only): the CLI, reports and plots read it without TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExportError(ValueError):
    """A problem the user can fix: not a run directory, bad flags, a stale calibration manifest.

    The CLI prints the message alone (no traceback), so messages say what is wrong and what to do.
    """


@dataclass(frozen=True)
class FormatSpec:
    """One exportable artifact kind."""

    name: str  # e.g. "tflite-int8": file name stem, key in export.json, `format` in the metadata
    suffix: str  # ".tflite" | ".onnx"
    runtime: str  # "tflite" | "onnx": the edgetl.runtime backend that loads it, and the converter module
    quantization: str  # one of QUANTIZATIONS
    needs_calibration: bool  # needs representative images (and writes a calibration manifest)
    max_abs_diff: float | None  # largest |p_artifact - p_keras| allowed; None: weights change by design
    colour: str  # plot colour, the same in every sweep's plot
    description: str

    @property
    def quantized(self) -> bool:
        """Integer weights: probabilities move by design, so only agreement is checked."""
        return self.quantization in ("dynamic", "int8", "int16x8")


# Checks. Every artifact fails when its test accuracy is significantly below the float model's by more
# than ExportConfig.max_accuracy_drop (paired, edgetl.export.run.check_status). float32 conversions
# must moreover be numerically the same model: their weights are the float model's, so a probability
# that moves by more than 1e-3 means the converter did something wrong, whatever the accuracy says.
# float16 and integer formats change the weights by design; their agreement and probability
# differences are reported, not judged (noise on a few hundred images is not a failure).
FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            name="tflite-float32",
            suffix=".tflite",
            runtime="tflite",
            quantization="float32",
            needs_calibration=False,
            max_abs_diff=1e-3,
            colour="#1f77b4",
            description="TFLiteConverter from the frozen forward function, float32 weights and activations",
        ),
        FormatSpec(
            name="tflite-float16",
            suffix=".tflite",
            runtime="tflite",
            quantization="float16",
            needs_calibration=False,
            max_abs_diff=None,
            colour="#17becf",
            description="float16 weights (half the size), float32 input and compute on CPU",
        ),
        FormatSpec(
            name="tflite-dynamic",
            suffix=".tflite",
            runtime="tflite",
            quantization="dynamic",
            needs_calibration=False,
            max_abs_diff=None,
            colour="#9467bd",
            description="dynamic-range: int8 weights, float activations, float32 input",
        ),
        FormatSpec(
            name="tflite-int8",
            suffix=".tflite",
            runtime="tflite",
            quantization="int8",
            needs_calibration=True,
            max_abs_diff=None,
            colour="#d62728",
            description="full integer (TFLITE_BUILTINS_INT8) from a representative dataset; uint8 input by default",
        ),
        FormatSpec(
            name="tflite-int8-mixed",
            suffix=".tflite",
            runtime="tflite",
            quantization="int8",
            needs_calibration=True,
            max_abs_diff=None,
            colour="#8c564b",
            description="full integer like tflite-int8, the layers with the largest quantization error kept in "
            "float (TFLite QuantizationDebugger) until the check passes; the quantization ladder's first rung",
        ),
        FormatSpec(
            name="tflite-int16x8",
            suffix=".tflite",
            runtime="tflite",
            quantization="int16x8",
            needs_calibration=True,
            max_abs_diff=None,
            colour="#ff7f0e",
            description="int16 activations, int8 weights (EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8) "
            "from a representative dataset; float32 input and output",
        ),
        FormatSpec(
            name="onnx-float32",
            suffix=".onnx",
            runtime="onnx",
            quantization="float32",
            needs_calibration=False,
            max_abs_diff=1e-3,
            colour="#2ca02c",
            description="tf2onnx from the Keras model, float32",
        ),
        FormatSpec(
            name="onnx-int8",
            suffix=".onnx",
            runtime="onnx",
            quantization="int8",
            needs_calibration=True,
            max_abs_diff=None,
            colour="#bcbd22",
            description="onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 "
            "activations), float32 input",
        ),
    )
}
RUNTIMES = ("tflite", "onnx")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "int16x8")
IO_TYPES = ("uint8", "int8", "float32")  # input/output type of tflite-int8; the first is the default
IO_TYPE_FORMATS = ("tflite-int8", "tflite-int8-mixed")  # the formats whose input/output type io_type sets
# Made only when named (`--format tflite-int8-mixed`) or by the quantization ladder: `--quantize all` and
# ExportConfig's default leave it out (a search for the layers to keep in float is a recovery, not a format to
# make for every run).
ON_REQUEST = ("tflite-int8-mixed",)
LADDER_TRIGGERS = ("int8", "dynamic")  # the quantizations whose failed check starts the ladder (int8 weights)
ONNX_OPSET = 17
# Bump when a converter recipe changes what an artifact contains: the sweep re-exports on a change.
# 2: int8 formats are converted from the bias-corrected model (edgetl.export.bias_correction), and
#    TFLite files store each distinct quantization vector once (tflite.share_quantization_vectors).
# 3: the input's batch is fixed at 1 unless ExportConfig.dynamic_batch (NNAPI / Core ML need fixed shapes).
RECIPE_VERSION = 3


def check_formats(names) -> tuple[str, ...]:
    """The format names, de-duplicated in order; ExportError listing the valid ones for any other."""
    names = tuple(dict.fromkeys(names))
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise ExportError(f"unknown format(s) {', '.join(map(repr, unknown)) or '(none)'}; valid: {', '.join(FORMATS)}")
    return names


def check_io_type(io_type: str) -> str:
    if io_type not in IO_TYPES:
        raise ExportError(f"unknown io_type {io_type!r}; valid: {', '.join(IO_TYPES)}")
    return io_type


def _split_list(value: str, flag: str, valid: tuple[str, ...]) -> list[str]:
    items = [v.strip().lower() for v in str(value).split(",") if v.strip()]
    if not items:
        raise ExportError(f"{flag} is empty; valid values: {', '.join(valid)}")
    return items


def formats_from_flags(format: str, quantize: str) -> tuple[list[str], list[str]]:
    """Turn `--format tflite,onnx --quantize int8,...` into FORMATS names, plus notes on skipped combos.

    A combination that does not exist (onnx + float16) is skipped with a note rather than an error,
    so `--format tflite,onnx --quantize all` does the obvious thing; an unknown word is an error
    listing the valid ones, because a typo silently exporting nothing is worse.
    `--format` also accepts full format names (e.g. `tflite-int8`), which ignore `--quantize`.
    """
    runtimes = _split_list(format, "--format", RUNTIMES)
    quants = _split_list(quantize, "--quantize", QUANTIZATIONS + ("all",))
    bad = [r for r in runtimes if r not in RUNTIMES and r not in FORMATS]
    if bad:
        raise ExportError(
            f"unknown --format {', '.join(map(repr, bad))}; valid: {', '.join(RUNTIMES)} "
            f"(comma-separated), or a full format name: {', '.join(FORMATS)}"
        )
    bad = [q for q in quants if q not in QUANTIZATIONS and q != "all"]
    if bad:
        raise ExportError(
            f"unknown --quantize {', '.join(map(repr, bad))}; valid: {', '.join(QUANTIZATIONS)} or all "
            "(comma-separated)"
        )
    explicit = "all" not in quants
    wanted = [q for q in QUANTIZATIONS if q in quants] if explicit else list(QUANTIZATIONS)
    names: list[str] = []
    notes: list[str] = []
    for runtime in runtimes:
        if runtime in FORMATS:
            candidates = [runtime]
        else:
            candidates = [f"{runtime}-{q}" for q in wanted if f"{runtime}-{q}" in FORMATS]  # never ON_REQUEST
            if explicit:
                have = ", ".join(n for n in FORMATS if n.startswith(runtime + "-"))
                notes += [
                    f"skipping {runtime} + {q}: no such format ({runtime} exports {have})"
                    for q in wanted
                    if f"{runtime}-{q}" not in FORMATS
                ]
        names += [n for n in candidates if n not in names]
    if not names:
        raise ExportError(
            f"nothing to export for --format {format} --quantize {quantize}; formats that exist: {', '.join(FORMATS)}"
        )
    return names, notes
