"""Standard TFLite Metadata for edgetl's .tflite files, so MediaPipe Tasks and the TFLite Task Library load
them as they are.

A .tflite file written by :func:`with_standard_metadata` carries, as the TFLite Metadata spec lays out:

1. a ``TFLITE_METADATA`` entry in the model's ``metadata`` list, naming a new buffer that holds a
   ``ModelMetadata`` flatbuffer (file identifier ``M001``, the schema MediaPipe ships as
   ``mediapipe/tasks/metadata/metadata_schema.fbs``): model name, description, version, author, license;
   the input tensor as an RGB image with NormalizationOptions and the pixel range (Stats); the output tensor
   as class scores with ``labels.txt`` as its ``TENSOR_AXIS_LABELS`` file; ``edgetl.json`` as a model-level
   associated file;
2. the associated files ``labels.txt`` and ``edgetl.json``, stored (not deflated: the C++ readers of
   MediaPipe and the Task Library hand out associated files in place) in a ZIP archive appended to the
   flatbuffer. That is also exactly what edgetl's own reader looks for (``labels.txt`` and ``edgetl.json``
   members of a ZIP ending the file), so it keeps working unchanged.

The metadata tables are built by MediaPipe's maintained metadata writer classes
(``mediapipe.tasks.python.metadata.metadata_writers.metadata_info``: ``GeneralMd``, ``InputImageTensorMd``,
``ClassificationTensorMd``, ``LabelFileMd``, ``AssociatedFileMd``: the ones ``image_classifier.MetadataWriter``
uses) and packed with MediaPipe's generated schema code (``mediapipe.tasks.metadata.
metadata_schema_py_generated``). The last step, putting the buffer into the model and appending the files,
follows ``MetadataPopulator.populate`` but is done here, because MediaPipe's ``metadata.py`` (the populator)
does not import from the PyPI wheels (checked: mediapipe 0.10.35, 1.0.1, 1.2.3; it imports
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version``, which the wheels no longer ship), and
because three things the populator does are wrong for edgetl:

- it stamps the ZIP members with the current time: here they get a fixed date (reproducible bytes);
- it writes the archive with offsets counted from the start of the .tflite file; edgetl's reader (and any
  reader that locates "the ZIP at the end of the file" as a ZIP of its own) wants offsets counted from the
  start of the archive, which is how ``zipfile`` writes a ZIP to a fresh buffer. MediaPipe's and the Task
  Library's readers (minizip) accept both;
- it repacks the model with the generated Python ``Pack``, which aligns constant buffers to 1 byte; here
  every buffer keeps the schema's ``force_align: 16``.

The model itself is unpacked and packed again with the object API of the TFLite schema (as the populator and
the TFLite converter's own last step do): every tensor, operator and weight buffer comes out identical, and
the only additions are one buffer and one metadata entry, so the interpreter's outputs are bit-identical.

`edgetl.runtime.standard_metadata.read_standard_metadata` reads all of it back with the standard library
only (no TensorFlow, no MediaPipe, no ``flatbuffers`` package: tflite-runtime device environments have
none of them), walking the flatbuffers by the field numbers of the published schemas.

``info`` keys used by :func:`with_standard_metadata` (nothing else in ``info`` is read):

=============  =========  =============================================================================
key            required   becomes
=============  =========  =============================================================================
name           yes        ``ModelMetadata.name``
labels         yes        ``labels.txt`` (one per line, index order): the output's TENSOR_AXIS_LABELS
mean           yes        ``NormalizationOptions.mean`` (one float, or one per RGB channel)
std            yes        ``NormalizationOptions.std`` (same); model input = (pixel - mean) / std
edgetl_json    yes        ``edgetl.json`` (``json.dumps(..., indent=1)``, key order kept), and the facts
                          listed in EDGETL_FACTS, appended to the description
description    no         ``ModelMetadata.description`` (before the facts line)
version        no         ``ModelMetadata.version``
author         no         ``ModelMetadata.author``
license        no         ``ModelMetadata.license``
extra_files    no         [(name, bytes), ...]: more model-level associated files, after ``edgetl.json``
                          (the golden inputs of `edgetl.export.golden`: ``*.json`` as DESCRIPTIONS)
=============  =========  =============================================================================

edgetl's own models take raw 0..255 RGB pixels whatever their input type: mean 0, std 1. For a float32
input MediaPipe and the Task Library require the NormalizationOptions (MediaPipe refuses the file
otherwise); for a uint8 input they feed the pixels unchanged and do not need them, but the file records
the same normalization (as MediaPipe's own image classifier writer does for quantized models) so it stays
self-describing, and Stats gives the tensor's value range (0..255 for uint8, as MediaPipe's writer sets it).
"""

from __future__ import annotations

import json

from edgetl import __version__
from edgetl.export.flatbuffer_repack import check_bare, repack
from edgetl.io.archive import deterministic_zip
from edgetl.runtime.appended_zip import LABELS_FILE
from edgetl.runtime.appended_zip import METADATA_FILE as EDGETL_FILE
from edgetl.runtime.standard_metadata import METADATA_FIELD_NAME, METADATA_IDENTIFIER

# Everything written here is in the schema since 1.0.0 (no subgraph process units, tensor groups,
# associated-file versions or custom metadata; see the version history in metadata_schema.fbs), so 1.0.0 is
# what MetadataPopulator's GetMinimumMetadataParserVersion computes for it.
MIN_PARSER_VERSION = "1.0.0"

INPUT_NAME = "image"
INPUT_DESCRIPTION = "Input image to be classified: RGB pixels."
OUTPUT_NAME = "probability"
OUTPUT_DESCRIPTION = "Probabilities of the labels respectively."
LABELS_DESCRIPTION = "Labels for categories that the model can recognize."
EDGETL_DESCRIPTION = "edgetl's metadata for this artifact (JSON): format, labels, backbone, input."
GOLDEN_DESCRIPTIONS = {
    "json": "Golden inputs (JSON): the preprocessing contract and this model's reference answers on the golden images.",
    "image": "Golden input image (JPEG with EXIF orientation) for the self-check; see golden.json.",
}

# (label in the description, path in info["edgetl_json"]): the facts written on the description's last line,
# "edgetl: format=tflite-int8 backbone=v1 alpha=0.25 ...", for those present.
EDGETL_FACTS = (
    ("format", ("format",)),
    ("backbone", ("backbone", "version")),
    ("alpha", ("backbone", "alpha")),
    ("resolution", ("backbone", "resolution")),
    ("weights", ("backbone", "weights")),
    ("bias_correction", ("bias_correction",)),
    ("calibration_manifest_sha256", ("calibration_manifest_sha256",)),
    ("edgetl_version", ("edgetl_version",)),
)

REQUIRED_KEYS = ("name", "labels", "mean", "std", "edgetl_json")
OPTIONAL_KEYS = ("description", "version", "author", "license", "extra_files")


# ---------------------------------------------------------------------------------------------------------
# Writing (main environment: needs mediapipe for the schema and metadata classes)


#: The MediaPipe module that keeps the error of its optional `sounddevice` import, and the name it keeps it under.
AUDIO_RECORD_MODULE, AUDIO_ERROR = "mediapipe.tasks.python.audio.core.audio_record", "sd_error"


def _forget_audio_error() -> None:
    """Drop the traceback of the audio import error MediaPipe keeps (`sd_error`, for its AudioRecord to raise).

    Importing any part of the `mediapipe` package imports its audio tasks, which try `sounddevice` and keep
    the OSError/ImportError when PortAudio is missing. That error's traceback holds the import's frames, and
    through their f_back every frame that was running at the first import, with all their locals: a
    training's (`edgetl.train.run` exports its float model) or an export's arrays would stay in memory for
    the rest of the process. The error itself is kept, so AudioRecord still says why it cannot record.
    """
    import sys

    error = getattr(sys.modules.get(AUDIO_RECORD_MODULE), AUDIO_ERROR, None)
    seen = set()
    while isinstance(error, BaseException) and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


def _mediapipe_metadata():
    """MediaPipe's generated metadata schema and metadata_info module (pure Python, no native library)."""
    try:
        from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_info
    except ImportError as e:
        raise ImportError(
            f"edgetl.export.tflite_metadata needs MediaPipe's metadata schema: pip install 'mediapipe==1.2.3' ({e})"
        ) from e
    _forget_audio_error()
    return metadata_fb, metadata_info


def _tflite_schema():
    """The TFLite model schema (object API): LiteRT's copy, the newest one edgetl depends on."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # same file as TensorFlow's (mediapipe 1.2.3 ships TF 2.21's, byte for byte)
        from mediapipe.tasks.metadata import schema_py_generated as schema

        _forget_audio_error()
    return schema


def _channels(value, what: str) -> list[float]:
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"with_standard_metadata: info[{what!r}] must be one float or three, got {value!r}")
    if what == "std" and any(v == 0 for v in values):
        raise ValueError("with_standard_metadata: info['std'] must not be 0")
    return values


def _lookup(obj, path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _fmt_fact(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def edgetl_facts_line(edgetl_json: dict) -> str:
    """The description's last line: "edgetl: format=... backbone=... ..." (the EDGETL_FACTS present)."""
    facts = [(label, _lookup(edgetl_json, path)) for label, path in EDGETL_FACTS]
    return "edgetl: " + " ".join(f"{label}={_fmt_fact(v)}" for label, v in facts if v is not None)


def _check_info(info: dict) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise ValueError(f"with_standard_metadata: info lacks {', '.join(missing)}")
    labels = info["labels"]
    if not isinstance(labels, (list, tuple)) or not labels:
        raise ValueError("with_standard_metadata: info['labels'] must be a non-empty list of strings")
    for label in labels:
        if not isinstance(label, str) or not label.strip() or "\n" in label or "\r" in label:
            raise ValueError(f"with_standard_metadata: label {label!r} is empty or spans lines")
    if not isinstance(info["edgetl_json"], dict):
        raise ValueError("with_standard_metadata: info['edgetl_json'] must be a dict")


def _tensor_types(schema, model):
    sg = model.subgraphs[0]
    return [sg.tensors[i].type for i in sg.inputs], [sg.tensors[i].type for i in sg.outputs]


def _metadata_buffer(model, info: dict) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001) for an image classifier with one input and output."""
    import flatbuffers

    metadata_fb, mi = _mediapipe_metadata()
    schema = _tflite_schema()
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ValueError(
            f"with_standard_metadata: TFLite Metadata describes one subgraph, the model has "
            f"{len(model.subgraphs or [])}"
        )
    in_types, out_types = _tensor_types(schema, model)
    if len(in_types) != 1 or len(out_types) != 1:
        raise ValueError(
            f"with_standard_metadata: an image classifier has one input and one output tensor, "
            f"the model has {len(in_types)} and {len(out_types)}"
        )
    n_classes = model.subgraphs[0].tensors[model.subgraphs[0].outputs[0]].shape
    if n_classes is not None and len(n_classes) and int(n_classes[-1]) != len(info["labels"]):
        raise ValueError(
            f"with_standard_metadata: {len(info['labels'])} labels for an output of {int(n_classes[-1])} classes"
        )

    description = "\n\n".join(
        part for part in (str(info.get("description") or "").strip(), edgetl_facts_line(info["edgetl_json"])) if part
    )
    general = mi.GeneralMd(
        name=str(info["name"]),
        version=None if info.get("version") is None else str(info["version"]),
        description=description,
        author=None if info.get("author") is None else str(info["author"]),
        licenses=None if info.get("license") is None else str(info["license"]),
    )
    # `is` comparisons inside metadata_info want the schema's ints, which small ints are.
    image = mi.InputImageTensorMd(
        name=INPUT_NAME,
        description=INPUT_DESCRIPTION,
        norm_mean=_channels(info["mean"], "mean"),
        norm_std=_channels(info["std"], "std"),
        color_space_type=metadata_fb.ColorSpaceType.RGB,
        tensor_type=in_types[0],
    )
    scores = mi.ClassificationTensorMd(
        name=OUTPUT_NAME,
        description=OUTPUT_DESCRIPTION,
        label_files=[mi.LabelFileMd(file_path=LABELS_FILE)],  # only the base name is recorded
        tensor_type=out_types[0],
    )
    labels_md = scores.create_metadata()
    for f in labels_md.associatedFiles or []:
        f.description = LABELS_DESCRIPTION
    subgraph = metadata_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image.create_metadata()]
    subgraph.outputTensorMetadata = [labels_md]
    model_md = general.create_metadata()
    model_md.subgraphMetadata = [subgraph]
    model_md.associatedFiles = [
        mi.AssociatedFileMd(
            file_path=EDGETL_FILE, description=EDGETL_DESCRIPTION, file_type=metadata_fb.AssociatedFileType.DESCRIPTIONS
        ).create_metadata()
    ] + [
        mi.AssociatedFileMd(
            file_path=name,
            description=GOLDEN_DESCRIPTIONS["json" if name.endswith(".json") else "image"],
            file_type=metadata_fb.AssociatedFileType.DESCRIPTIONS
            if name.endswith(".json")
            else metadata_fb.AssociatedFileType.UNKNOWN,
        ).create_metadata()
        for name, _ in info.get("extra_files") or ()
    ]
    model_md.minParserVersion = MIN_PARSER_VERSION
    b = flatbuffers.Builder(1024)
    b.Finish(model_md.Pack(b), METADATA_IDENTIFIER)
    return bytes(b.Output())


def with_standard_metadata(model_bytes: bytes, info: dict) -> bytes:
    """The bare TFLite flatbuffer `model_bytes` with standard TFLite Metadata and its associated files.

    `info`: see the module docstring (name, labels, mean, std, edgetl_json; optional description, version,
    author, license). A TFLITE_METADATA entry already in the model is replaced. Deterministic: equal inputs
    give equal bytes. Raises ValueError for bytes that are not a bare TFLite flatbuffer (an archive already
    appended, weights in external buffers, not one subgraph with one input and one output) or a bad `info`.
    """
    model_bytes = bytes(model_bytes)
    model_bytes = check_bare(model_bytes, "with_standard_metadata")
    _check_info(info)
    schema = _tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    buffers = list(model.buffers or [])
    if any(b.offset or b.size for b in buffers):
        raise ValueError(
            "with_standard_metadata: the model keeps its weights outside the flatbuffer (> 2 GB); "
            "repacking it would move them"
        )
    metadata_buf = _metadata_buffer(model, info)

    entries = list(model.metadata or [])
    ours = [m for m in entries if (m.name or b"").decode("utf-8", "replace") == METADATA_FIELD_NAME]
    if ours:  # replace, as MetadataPopulator does
        buffers[ours[0].buffer].data = metadata_buf
    else:
        entry = schema.MetadataT()
        entry.name = METADATA_FIELD_NAME
        entry.buffer = len(buffers)
        buffer = schema.BufferT()
        buffer.data = metadata_buf
        buffers.append(buffer)
        entries.append(entry)
    model.metadata = entries
    model.buffers = buffers
    return repack(schema, model, len(model_bytes) + len(metadata_buf)) + associated_files(info)


def associated_files(info: dict) -> bytes:
    """The archive appended after the flatbuffer: labels.txt and edgetl.json, as the metadata names them."""
    labels_txt = "\n".join(info["labels"]).encode("utf-8")  # as MediaPipe's writer exports labels
    edgetl_json = json.dumps(info["edgetl_json"], indent=1, sort_keys=False).encode("utf-8")
    return deterministic_zip(
        [(LABELS_FILE, labels_txt), (EDGETL_FILE, edgetl_json), *(info.get("extra_files") or ())], compress=False
    )


def standard_info(metadata: dict) -> dict:
    """The `info` of :func:`with_standard_metadata` for an edgetl artifact, from its edgetl.json dict."""

    bb, inp, labels = metadata.get("backbone") or {}, metadata.get("input") or {}, list(metadata["labels"])
    family = {"v1": "MobileNet V1", "v2": "MobileNet V2", "hub": "TF Hub"}.get(bb.get("version"), "MobileNet")
    name = f"edgetl {family} {bb.get('alpha', 0):g} {bb.get('resolution', '?')}px {metadata.get('format', '')}"
    return {
        "name": name.strip(),
        "description": (
            f"Image classifier of {len(labels)} classes: a {family} backbone (alpha "
            f"{bb.get('alpha', 0):g}) with a classification head retrained by edgetl. Input: RGB "
            f"pixels 0..255 resized to {bb.get('resolution', '?')}x{bb.get('resolution', '?')}; "
            "output: class probabilities."
        ),
        "version": __version__,
        "author": "edgetl",
        "license": "Apache-2.0 (the MobileNet ImageNet weights); the head is trained on the user's photos",
        "labels": labels,
        "mean": float(inp.get("mean", 0.0)),
        "std": float(inp.get("std", 1.0)),
        "edgetl_json": metadata,
    }
