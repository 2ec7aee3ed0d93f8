"""Which accelerators could run an artifact, as each runtime's own tool says (what Qualcomm AI Hub reports as
compute units), recorded in export.json and the results rows.

- TFLite: TensorFlow's model analyzer with its GPU delegate compatibility check
  (`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`): the ops it flags.
- ONNX: onnxruntime's mobile usability checker (`python -m onnxruntime.tools.check_onnx_model_mobile_usability`):
  the nodes NNAPI (Android) and Core ML (iOS, ML Program) could take, in how many partitions, and its verdict
  (YES / MAYBE / NO: one partition with most nodes, or not). A dynamic input shape blocks most of them.

These are static checks of the file against each delegate's op list, not a run on the accelerator: a YES says the
file is worth trying there, a NO says what would fall back to the CPU.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

from edgetl.io.files import one_line

GPU_TOOL = "tf.lite.experimental.Analyzer (gpu_compatibility)"
ORT_TOOL = "onnxruntime.tools.check_onnx_model_mobile_usability"
_ORT_DELEGATES = {  # name in results -> the checker's supported-ops file
    "nnapi": None,
    "coreml": "coreml_supported_mlprogram_ops.md",
}
_OP_LINE = re.compile(r"^\s+Op#(\d+)\s", re.MULTILINE)
_GPU_ISSUE = re.compile(r"GPU COMPATIBILITY WARNING: (?!Subgraph#)(.+)")
_GPU_NODES = re.compile(r"Subgraph#(\d+) has GPU delegate compatibility issues at nodes ([\d, ]+)")


def tflite_coverage(data: bytes) -> dict:
    """The GPU delegate's coverage of a .tflite file's ops, by TensorFlow's analyzer."""
    import tensorflow as tf

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        tf.lite.experimental.Analyzer.analyze(model_content=data, gpu_compatibility=True)
    return parse_gpu_report(text.getvalue())


def parse_gpu_report(text: str) -> dict:
    """The analyzer's printed report -> {"gpu": {ops, supported, compatible, issues}} (first subgraph's ops)."""
    ops = len(_OP_LINE.findall(text))
    flagged = sum(len([n for n in m.group(2).split(",") if n.strip()]) for m in _GPU_NODES.finditer(text))
    issues = sorted({m.group(1).strip() for m in _GPU_ISSUE.finditer(text)})
    compatible = "looks compatible with GPU delegate" in text and not flagged
    return {"gpu": {"ops": ops, "supported": ops - flagged, "compatible": compatible, "issues": issues[:10]}}


def onnx_coverage(path: Path) -> dict:
    """NNAPI's and Core ML's coverage of an .onnx file's nodes, by onnxruntime's mobile usability checker."""
    from onnxruntime.tools.mobile_helpers import usability_checker as checker
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    with tempfile.TemporaryDirectory(prefix="edgetl-ort-check-") as tmp:
        # As the command-line checker does: the basic graph optimizations an ORT session applies first.
        optimized = Path(tmp) / "optimized.onnx"
        optimize_model(Path(path), optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
    out = {}
    for name, ops_file in _ORT_DELEGATES.items():
        if ops_file is None:
            info = checker.check_nnapi_partitions(model, require_fixed_input_sizes=True)
        else:
            info = checker.check_coreml_partitions(model, True, ops_file)
        out[name] = {
            "nodes": info.num_nodes,
            "supported": info.num_supported_nodes,
            "partitions": info.num_partitions,
            "verdict": info.suitability().name,
            "unsupported_ops": sorted(info.unsupported_ops)[:10],
            "blocked_by_dynamic_shape": info.nodes_unsupported_due_to_dynamic_input,
        }
    return out


def coverage(path: Path, runtime: str) -> dict:
    """export.json's `accelerators` of one artifact ({"error": ...} when the tool itself fails: a missing
    analysis is not a failed artifact)."""
    try:
        if runtime == "tflite":
            return {"tool": GPU_TOOL, **tflite_coverage(Path(path).read_bytes())}
        return {"tool": ORT_TOOL, **onnx_coverage(Path(path))}
    except Exception as e:  # an analysis tool's crash (experimental APIs) must not cost the artifact
        return {"error": f"{type(e).__name__}: {one_line(e)}"}


def summary(accelerators: dict | None) -> str:
    """One cell of report.md: 'GPU 31/31' or 'NNAPI 162/162 YES, CoreML 34/162 NO'; '' when not analysed."""
    if not isinstance(accelerators, dict):
        return ""
    parts = []
    for name, label in (("gpu", "GPU"), ("nnapi", "NNAPI"), ("coreml", "CoreML")):
        d = accelerators.get(name)
        if not isinstance(d, dict):
            continue
        try:
            cell = f"{label} {int(d['supported'])}/{int(d['nodes' if 'nodes' in d else 'ops'])}"
        except (KeyError, TypeError, ValueError):
            continue
        verdict = d.get("verdict")
        if isinstance(verdict, str) and verdict.isalpha():
            cell += f" {verdict}"
        parts.append(cell)
    return ", ".join(parts)
