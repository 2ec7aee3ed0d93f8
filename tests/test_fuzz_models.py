"""The model readers fuzzed (issue 28): mutants of real exported artifacts end in a result or one clean error.

Property-based (hypothesis, derandomized so CI is repeatable) over each reader: the appended metadata archive
and the edgetl metadata (`read_embedded`), the standard-metadata flatbuffer reader, the structural flatbuffer
check and ONNX metadata_props; then `label_image` itself, interpreters included, on mutants in a worker
process (tools/fuzz_models.py), so that a crash in native code is counted rather than taking pytest down.
Seeds: the session's tiny exported models (tests/conftest.py), one of them with standard TFLite Metadata.
About a minute in all; `tools/fuzz_models.py --mutants 10000` is the long run.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "tools" / "fuzz_models.py"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz_models = _load("fuzz_models")
MUTATORS = sorted(fuzz_models.MUTATORS)
FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=None,  # a slow example is caught by the per-example time check below, with its own message
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECONDS_PER_READ = 10.0  # a hang, not a busy machine (CI shares its two cores)


@pytest.fixture(scope="module")
def seeds(tiny_models, tmp_path_factory) -> dict[str, Path]:
    """Real exported files (standard TFLite Metadata, a stored archive), and the float one as older edgetl
    versions wrote it: the same members, deflated."""
    hostile = _load("hostile_models")
    out = tmp_path_factory.mktemp("fuzz_seeds")
    flatbuffer, members = hostile.split_model(tiny_models.float_tflite.read_bytes())
    legacy = out / "legacy.tflite"
    legacy.write_bytes(hostile.with_archive(flatbuffer, members, deflated=tuple(members)))
    return {
        "float.tflite": tiny_models.float_tflite,
        "int8.tflite": tiny_models.int8_tflite,
        "legacy.tflite": legacy,
        "model.onnx": tiny_models.onnx,
    }


def _mutant(seeds: dict[str, Path], name: str, mutator: str, seed: int, out: Path) -> Path:
    data = fuzz_models.MUTATORS[mutator](seeds[name].read_bytes(), random.Random(seed))
    path = out / f"mutant{Path(name).suffix}"
    path.write_bytes(data)
    return path


def _timed(fn, *args):
    import time

    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        elapsed = time.perf_counter() - start
        assert elapsed < SECONDS_PER_READ, f"{fn.__name__} took {elapsed:.1f} s on a mutant"


mutants = st.tuples(st.sampled_from(MUTATORS), st.integers(0, 2**32 - 1))


@FUZZ_SETTINGS
@given(name=st.sampled_from(["float.tflite", "int8.tflite", "legacy.tflite", "model.onnx"]), mutant=mutants)
def test_reading_metadata_ends_in_a_result_or_a_model_file_error(seeds, tmp_path, name, mutant):
    from edgetl.runtime.metadata import ModelFileError, read_embedded

    path = _mutant(seeds, name, *mutant, tmp_path)
    try:
        meta, labels = _timed(read_embedded, path)
    except ModelFileError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert labels is None or all(isinstance(x, str) for x in labels)


@FUZZ_SETTINGS
@given(name=st.sampled_from(["float.tflite", "legacy.tflite"]), mutant=mutants)
def test_the_standard_metadata_reader_raises_only_value_error(seeds, tmp_path, name, mutant):
    from edgetl.runtime.standard_metadata import read_standard_metadata

    path = _mutant(seeds, name, *mutant, tmp_path)
    try:
        _timed(read_standard_metadata, path)
    except ValueError:
        pass


@FUZZ_SETTINGS
@given(name=st.sampled_from(["float.tflite", "int8.tflite"]), mutant=mutants)
def test_the_structural_flatbuffer_check_raises_only_flatbuffer_error(seeds, tmp_path, name, mutant):
    from edgetl.runtime.flatbuffer import FlatbufferError, check_tflite_structure

    data = _mutant(seeds, name, *mutant, tmp_path).read_bytes()
    try:
        _timed(check_tflite_structure, data, len(data))
    except FlatbufferError:
        pass


@FUZZ_SETTINGS
@given(mutant=mutants, junk=st.binary(max_size=64))
def test_onnx_metadata_props_and_model_hash_end_in_a_result_or_a_model_file_error(seeds, tmp_path, mutant, junk):
    from edgetl.runtime.metadata import ModelFileError, model_sha256, read_embedded

    path = _mutant(seeds, "model.onnx", *mutant, tmp_path)
    path.write_bytes(path.read_bytes() + junk)  # a stray field, a length running past the end
    for read in (read_embedded, model_sha256):
        try:
            _timed(read, path)
        except ModelFileError:
            pass


def test_label_image_on_mutants_never_crashes_hangs_or_tracebacks(seeds, tiny_models):
    """label_image, interpreters included, on 1,000 mutants in a worker process (about 15 s)."""
    cmd = [sys.executable, str(FUZZ), "--mutants", "1000", "--progress", "0", "--timeout", "30"]
    cmd += ["--seed", "28", "--image", str(tiny_models.images[0]), *map(str, seeds.values())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    assert report["mutants"] == 1000
    assert report["crash"] == report["hang"] == report["traceback"] == 0, report["examples"]
    assert report["clean error"] > 0 and report["answer"] > 0  # both kinds of mutant were reached
    assert proc.returncode == 0


# ---------------------------------------------------------------------------------------------------------
# The host side: results.json is a file anyone can edit or send


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def results_rows():
    from conftest import make_result

    rows = [make_result(0.8, 10, 4), make_result(0.9, 20, 8), make_result(0.7, 5, 2, status="check failed: x")]
    return [r.to_dict() for r in rows]


@settings(FUZZ_SETTINGS, max_examples=40)
@given(row=st.integers(0, 2), field_index=st.integers(0, 40), value=json_values)
def test_edgetl_report_on_a_mangled_results_json_is_a_report_or_exit_2(results_rows, tmp_path, row, field_index, value):
    """Any value in any field of a results.json: `edgetl report` writes the report or says what is wrong."""
    from edgetl.cli.main import main

    rows = json.loads(json.dumps(results_rows))
    names = sorted(rows[row])
    rows[row][names[field_index % len(names)]] = value
    (tmp_path / "results.json").write_text(json.dumps({"results": rows, "notes": []}))
    assert main(["report", str(tmp_path)]) in (0, 2)


def test_class_names_with_control_characters_reach_no_report_card_or_csv(tmp_path):
    from conftest import make_result

    from edgetl.measure.results import write_results
    from edgetl.pick.rebuild import rebuild_report
    from edgetl.pick.report import write_model_card

    evil = "\x1b]0;owned\x07\x1b[2Jdaisy"
    row = make_result(0.9, 5, 2, per_class_accuracy={evil: 0.9, "rose": 0.9}, status="ok")
    write_results([row, make_result(0.8, 10, 4, status=f"check failed: {evil}")], tmp_path)
    rebuild_report(tmp_path, None)
    card = write_model_card(row, {"class_names": [evil, "rose"], "dataset": f"/data/{evil}"}, tmp_path / "card.md")
    for name in ("report.md", "results.csv", card.name):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "\x1b" not in text and "\x07" not in text, name
        assert "\\x1b]0;owned\\x07\\x1b[2Jdaisy" in text, name
