"""The Python API: `from edgetl import sweep, train, export, SweepConfig, ...`, lazy and documented; the README's
example run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FLOWERS, WEIGHTS_DIR, copy_subset, make_result

import edgetl

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_import_edgetl_is_light_and_every_public_name_resolves_without_tensorflow():
    out = _python(
        "import sys, edgetl\n"
        "light = sorted(m for m in sys.modules if m.startswith('edgetl'))\n"
        "print(light, 'tensorflow' in sys.modules)\n"
        "values = [getattr(edgetl, name) for name in edgetl.__all__]\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    first, second = out.splitlines()
    assert first == "['edgetl', 'edgetl.io', 'edgetl.io.quiet'] False"
    assert second == "False False"  # the configs and functions resolve; TensorFlow waits for a real call


def test_public_names_are_documented_and_listed():
    assert len(edgetl.__all__) == len(set(edgetl.__all__))
    for name in edgetl.__all__:
        if name == "__version__":
            continue
        value = getattr(edgetl, name)
        assert (value.__doc__ or "").strip(), name
        assert name in dir(edgetl)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgetl.nope  # noqa: B018


def test_stage_functions_are_the_same_whatever_was_imported_first():
    """`edgetl.sweep` is also the stage package: importing its modules first must not change what
    `from edgetl import sweep` gives (a callable), nor break `edgetl.sweep.run` as a module path."""
    out = _python(
        "import edgetl.sweep.local, edgetl.train.run, edgetl.export.run\n"
        "from edgetl import sweep, train, export\n"
        "import edgetl.sweep.run as run\n"
        "print(callable(sweep), callable(train), callable(export), sweep.run is run, run.sweep.__name__)\n"
    )
    assert out.split() == ["True", "True", "True", "True", "sweep"]
    from edgetl import export

    with pytest.raises(Exception, match="no-such-run is not a directory"):  # the call reached export_run
        export(REPO / "no-such-run")


def test_to_pandas(monkeypatch):
    from edgetl import SweepResult

    result = SweepResult([make_result(0.9, point="a"), make_result(0.8, point="b")], None, Path("report.md"), [])
    pd = pytest.importorskip("pandas")
    frame = result.to_pandas()
    assert isinstance(frame, pd.DataFrame) and list(frame["point"]) == ["a", "b"]
    assert "predictions" not in frame.columns and frame["accuracy"].tolist() == [0.9, 0.8]


def test_to_pandas_without_pandas_names_the_fix(monkeypatch):
    from edgetl import SweepResult

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        SweepResult([make_result()], None, Path("report.md"), []).to_pandas()


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # trains and exports one tiny grid point
def test_the_readme_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    copy_subset(FLOWERS, tmp_path / "photos", ["daisy", "roses", "tulips"], 20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGETL_WEIGHTS_DIR", str(WEIGHTS_DIR))
    namespace: dict = {}
    exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    result, table = namespace["result"], namespace["table"]
    assert result.pick is not None and result.pick.latency_ms_p50 <= 15
    assert sorted(table["format"]) == ["tflite-float32", "tflite-int8"]
    assert (tmp_path / "runs" / "photos" / "report.md").is_file()
