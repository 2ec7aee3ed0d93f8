"""Exit codes for pipelines (0 picked, 3 nothing fits, 4 --strict failures, 2 user errors) and --quiet/--verbose."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_result

from edgetl.cli.main import build_parser, main
from edgetl.cli.outcome import EXIT_CHECK_FAILED, EXIT_NOTHING_FITS, EXIT_PICKED, EXIT_USER_ERROR, LOGGER
from edgetl.io.quiet import quiet_third_party
from edgetl.measure.results import write_results

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    rows = [
        make_result(0.90, latency=12.0, size_mb=4.0, point="v2-a1-r224"),
        make_result(0.85, latency=3.0, size_mb=1.0, point="v1-a0.25-r128"),
    ]
    write_results(rows, tmp_path, notes=["v1-a0.5-r160 skipped: no weights"])
    return tmp_path


def test_report_exits_0_when_picked_and_3_when_nothing_fits(run_dir, capsys):
    assert main(["report", str(run_dir), "--max_latency_ms", "15"]) == EXIT_PICKED == 0
    assert main(["report", str(run_dir), "--max_latency_ms", "0.1"]) == EXIT_NOTHING_FITS == 3
    assert "no artifact fits the budget" in capsys.readouterr().out
    # A skipped grid point (missing weights) is not a failure, even with --strict.
    assert main(["report", str(run_dir), "--max_latency_ms", "15", "--strict"]) == EXIT_PICKED


def test_strict_exits_4_when_an_artifact_failed_its_check(run_dir, capsys):
    rows = [
        make_result(0.90, latency=12.0, point="v2-a1-r224"),
        make_result(0.20, latency=2.0, point="v2-a1-r224", format="tflite-int8", status="check failed: accuracy drop"),
    ]
    write_results(rows, run_dir)
    assert main(["report", str(run_dir), "--max_latency_ms", "15"]) == EXIT_PICKED  # opt-in only
    capsys.readouterr()
    assert main(["report", str(run_dir), "--max_latency_ms", "15", "--strict"]) == EXIT_CHECK_FAILED == 4
    assert "tflite-int8: check failed: accuracy drop" in capsys.readouterr().err
    write_results(rows[:1], run_dir, notes=["v1-a0.25-r96 failed: RuntimeError: boom"])  # a failed grid point
    assert main(["report", str(run_dir), "--strict"]) == EXIT_CHECK_FAILED


def test_user_errors_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == EXIT_USER_ERROR == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_documents_the_exit_codes():
    for argv in ([], ["sweep"], ["report"]):
        parser = build_parser()
        text = (parser._subparsers._group_actions[0].choices[argv[0]] if argv else parser).format_help()
        for code in ("0 ", "2 ", "3 ", "4 "):
            assert f"  {code} " in text, (argv, code)
        assert "--strict" in text


def test_quiet_and_verbose_set_the_edgetl_logger(run_dir, monkeypatch):
    for name in ("EDGETL_VERBOSE", "TQDM_DISABLE", "TF_CPP_MIN_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    try:
        main(["report", str(run_dir), "--quiet"])
        assert logging.getLogger(LOGGER).level == logging.WARNING and os.environ.get("TQDM_DISABLE") == "1"
        main(["report", str(run_dir)])
        assert logging.getLogger(LOGGER).level == logging.INFO
        main(["report", str(run_dir), "--verbose"])
        assert logging.getLogger(LOGGER).level == logging.DEBUG and os.environ.get("EDGETL_VERBOSE") == "1"
    finally:
        monkeypatch.undo()
        logging.getLogger(LOGGER).setLevel(logging.INFO)
        quiet_third_party()  # the rest of the test session quiet again


def test_tensorflow_start_up_noise_is_filtered():
    """A real `import tensorflow` after `import edgetl`: its C++ start-up lines gone, a real stderr line kept."""
    code = (
        "import edgetl, os, sys\n"
        "import tensorflow\n"
        "os.write(2, b'a warning that matters\\n')\n"
        "import logging; logging.getLogger('absl').warning('Please consider providing the trackable_obj argument')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGETL_VERBOSE": "0"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
    assert "a warning that matters" in err
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers", "trackable_obj"):
        assert noise not in err, err
