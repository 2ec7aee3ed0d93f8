"""label_image for the device: classify photos with an edgetl .tflite (or .onnx) model.

A drop-in for TensorFlow's ``tensorflow/lite/examples/python/label_image.py``: same flags, same output
(``0.912345: daisy`` lines, then ``time: 1.234ms``), but it needs only numpy, Pillow and a TFLite runtime
(ai-edge-litert or tflite-runtime; onnxruntime for .onnx). It never imports TensorFlow when one of those
interpreters is installed.

Differences from TensorFlow's script:

- ``--input_mean``/``--input_std`` default to the model's embedded metadata, else 0 and 1. edgetl models take
  **raw 0..255 RGB pixels** (the [-1, 1] scaling is inside the model), so leave them alone for edgetl models;
  for TensorFlow's hosted float MobileNets pass ``--input_mean 127.5 --input_std 127.5``.
- ``--label_file`` is optional when the model carries its labels (edgetl models do).
- several ``--image`` paths may be given; with more than one, each result block starts with ``image: PATH``.
- scores are dequantized with the output tensor's scale/zero-point for every model type, and inputs are
  quantized with the input tensor's (TensorFlow's script assumes scale 1/255 for uint8 outputs).
- a model whose metadata records the SHA-256 of its bytes (every edgetl export) is checked against it before
  an interpreter sees it: a damaged file can crash the interpreter (``--no_verify`` skips the check,
  ``--verify`` also refuses a model that records none). Labels and file names are printed with control
  characters escaped (``\\x1b``): they come from whoever made the file.
- TensorFlow's ``--graph`` and ``--labels`` are aliases of ``--model_file`` and ``--label_file`` (a ``--graph``
  path that is not .tflite/.onnx runs the .tflite beside it, which ``edgetl retrain`` writes for retrain.py's
  ``.pb``); ``--input_height``/``--input_width`` are checked against the model; ``--input_layer`` and
  ``--output_layer`` are accepted, with a note when the file has no tensor of that name.
- images are decoded by ``edgetl.data.dataset.load_image`` (EXIF rotation, alpha on white, bilinear squash), the
  same preprocessing used for training and benchmarks.

``--self_check MODEL`` runs the golden images the model carries through the given preprocessing and compares
with the model's own answers (``edgetl.runtime.self_check``: exit 0 match, 1 mismatch with a diagnosis).

Exit status: 0 on success, 1 when some image could not be read (the others are still classified),
2 for a usage, model or label-file error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from edgetl.io.text import visible
from edgetl.runtime import DEFAULT_NUM_THREADS, check_num_threads
from edgetl.runtime.self_check import main as self_check_main

PROG = "label_image"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Classify images with a .tflite or .onnx image classifier (edgetl's device-side label_image).",
        epilog="edgetl models take raw 0..255 RGB pixels: keep --input_mean/--input_std at their defaults. "
        "--self_check MODEL checks a preprocessing against the golden images the model carries "
        "(--self_check MODEL --help for its flags).",
    )
    p.add_argument("-i", "--image", nargs="+", required=True, help="image(s) to classify")
    p.add_argument(
        "-m",
        "--model_file",
        "--graph",
        dest="model_file",
        required=True,
        help=".tflite or .onnx file to run (--graph: TensorFlow's label_image name; for a .pb path, the .tflite "
        "`edgetl retrain` wrote beside it)",
    )
    p.add_argument(
        "-l",
        "--label_file",
        "--labels",
        dest="label_file",
        default=None,
        help="labels, one per line (default: the labels embedded in the model)",
    )
    # TensorFlow's label_image.py flags: sizes are checked, tensor names only noted (one input, one output).
    p.add_argument("--input_height", type=int, default=None, help="checked against the model's input height")
    p.add_argument("--input_width", type=int, default=None, help="checked against the model's input width")
    p.add_argument("--input_layer", default=None, help="accepted: the model's one input is fed")
    p.add_argument("--output_layer", default=None, help="accepted: the model's one output is read")
    p.add_argument(
        "--input_mean",
        type=float,
        default=None,
        help="the float input is (pixel - mean) / std; default: the model's metadata, else 0",
    )
    p.add_argument("--input_std", type=float, default=None, help="default: the model's metadata, else 1")
    p.add_argument(
        "--num_threads",
        type=int,
        default=DEFAULT_NUM_THREADS,
        help=f"interpreter threads (default {DEFAULT_NUM_THREADS})",
    )
    p.add_argument("-k", "--top_k", type=int, default=5, help="how many top classes to print (default 5)")
    p.add_argument(
        "--verify",
        dest="verify",
        action="store_const",
        const="strict",
        default="auto",
        help="refuse a model whose metadata records no SHA-256 of its bytes (by default, a model that records "
        "one is checked against it: a damaged file can crash the interpreter)",
    )
    p.add_argument(
        "--no_verify", dest="verify", action="store_const", const="off", help="do not check the recorded SHA-256"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="describe the model and the backend running it on stderr"
    )
    return p


def _error(message: str) -> None:
    # Messages quote file names and model metadata: a hostile one must not drive the terminal.
    print(f"{PROG}: error: {visible(message)}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"{PROG}: note: {visible(message)}", file=sys.stderr)  # a tensor name is the file's to choose


def _graph_file(path: str) -> str:
    """TensorFlow's `--graph /tmp/output_graph.pb`: `edgetl retrain` wrote TFLite beside it, as .tflite."""
    given = Path(path)
    if given.suffix.lower() in (".tflite", ".onnx"):
        return path
    beside = given.with_suffix(".tflite")
    if beside.is_file():
        _note(f"{path} is not a .tflite or .onnx file name; running {beside} beside it (what edgetl retrain writes)")
        return str(beside)
    return path


def _tensor_names(model) -> tuple[str | None, str | None]:
    """The names of the model's one input and one output tensor, as its file has them."""
    backend = model._backend
    if model.kind == "onnx":
        return backend._in_name, backend._out_name
    return backend._in.get("name"), backend._out.get("name")


def _check_flags_against(model, args) -> str | None:
    """An error for --input_height/--input_width the model does not take; notes for tensor names it lacks."""
    for flag, value in (("input_height", args.input_height), ("input_width", args.input_width)):
        if value is not None and value != model.input_size:
            return (
                f"--{flag} {value}, but {args.model_file} takes {model.input_size}x{model.input_size} images "
                f"(images are resized to that; pass {model.input_size} or leave the flag out)"
            )
    names = _tensor_names(model)
    for flag, given, name, which in zip(
        ("input_layer", "output_layer"), (args.input_layer, args.output_layer), names, ("input", "output")
    ):
        if given is not None and given != name and not (name or "").startswith(f"{given}:"):
            _note(f"--{flag} {given}: {args.model_file} has no tensor of that name; its one {which} '{name}' is used")
    return None


def main(argv: list[str] | None = None) -> int:
    """The command, in the order of TensorFlow's label_image.py (flags, model, labels, images), so the two
    read side by side; that order, with an exit code for each failure, makes it longer than 60 lines."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--self_check" or a.startswith("--self_check=") for a in argv):
        return self_check_main(argv)  # its own flags (edgetl.runtime.self_check)
    args = _parser().parse_args(argv)
    try:
        check_num_threads(args.num_threads)
    except ValueError as e:
        _error(f"--{e}")
        return 2
    if args.top_k < 1:
        _error(f"--top_k must be at least 1, got {args.top_k}")
        return 2
    if args.input_std is not None and args.input_std == 0:
        _error("--input_std must not be 0")
        return 2

    # Imported here so `--help` and usage errors stay instant.
    from edgetl.runtime import ModelFileError, load_model, read_labels, read_metadata, verify_model
    from edgetl.runtime.images import load_image

    args.model_file = _graph_file(args.model_file)
    try:
        if args.verify == "strict" or (
            args.verify == "auto" and (read_metadata(args.model_file) or {}).get("model_sha256")
        ):
            verify_model(args.model_file)
        model = load_model(args.model_file, num_threads=args.num_threads, mean=args.input_mean, std=args.input_std)
    except ModelFileError as e:
        _error(str(e))
        return 2
    except ImportError as e:
        _error(f"cannot run {args.model_file}: {e}")
        return 2

    problem = _check_flags_against(model, args)
    if problem:
        _error(problem)
        return 2
    if args.label_file is not None:
        try:
            labels = read_labels(args.label_file)
        except (OSError, ValueError) as e:  # ValueError: not UTF-8, or over the label limits
            _error(f"cannot read label file {args.label_file}: {e.strerror if isinstance(e, OSError) else e}")
            return 2
        source = args.label_file
    elif model.labels:
        labels, source = model.labels, f"the labels embedded in {args.model_file}"
    else:
        _error(f"{args.model_file} carries no labels (no labels.txt or edgetl.json in it); pass --label_file")
        return 2
    if model.num_classes is not None and len(labels) != model.num_classes:
        _error(f"{source} has {len(labels)} labels but {args.model_file} outputs {model.num_classes} classes")
        return 2

    if args.verbose:
        print(
            f"{PROG}: {visible(args.model_file)}: {model.kind} via {model.backend}, input {model.input_dtype.name} "
            f"{model.input_size}x{model.input_size}x3 (mean {model.mean:g}, std {model.std:g}), "
            f"output {model.output_dtype.name} x {model.num_classes}, {model.num_threads} thread(s)",
            file=sys.stderr,
        )

    failed = 0
    for path in args.image:
        try:
            pixels = load_image(path, model.input_size)
        except Exception as e:  # Pillow raises OSError, ValueError, DecompressionBombError, ...
            _error(f"cannot read image {path}: {' '.join(str(e).split()) or type(e).__name__}")
            failed += 1
            continue
        try:
            model.set_input(pixels)
            start = time.perf_counter()
            model.invoke()
            elapsed = time.perf_counter() - start
            scores = model.output()[0]
        except (RuntimeError, ValueError) as e:  # the interpreter's own complaint about a damaged model
            _error(f"cannot run {args.model_file}: {' '.join(str(e).split()) or type(e).__name__}")
            return 2
        if len(scores) != len(labels):
            _error(f"{args.model_file} produced {len(scores)} scores but there are {len(labels)} labels")
            return 2
        if len(args.image) > 1:
            print(f"image: {visible(path)}")
        for i in np.argsort(-scores, kind="stable")[: args.top_k]:
            print(f"{float(scores[i]):08.6f}: {visible(labels[i])}")
        print(f"time: {elapsed * 1000:.3f}ms")
        sys.stdout.flush()
    if failed:
        _error(f"{failed} of {len(args.image)} image(s) could not be read")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
