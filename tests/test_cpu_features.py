"""int8 dot-product support of the timing CPU (edgetl.runtime.cpu): read from /proc/cpuinfo, recorded in bench rows,
and named in report.md when int8 files were timed without it."""

from __future__ import annotations

from conftest import make_result

from edgetl.pick.budget import Budget
from edgetl.pick.pareto import pick
from edgetl.pick.report import write_report
from edgetl.runtime.cpu import int8_dot_features

X86_OLD = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
X86_VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx_vnni amx_tile amx_int8\n"
ARM_DOT = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp i8mm\n"
ARM_OLD = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32\n"


def test_features_from_cpuinfo():
    assert int8_dot_features(X86_OLD, "x86_64") == "none"
    assert int8_dot_features(X86_VNNI, "x86_64") == "AVX-VNNI,AVX512-VNNI,AMX-INT8"
    assert int8_dot_features(ARM_DOT, "aarch64") == "dotprod,i8mm"
    assert int8_dot_features(ARM_OLD, "armv7l") == "none"
    assert int8_dot_features("processor : 0\n", "x86_64") is None  # no flags line: unknown, not "none"
    assert int8_dot_features() is None or isinstance(int8_dot_features(), str)  # this machine


def test_report_notes_int8_timed_without_dot_product(tmp_path):
    rows = [
        make_result(0.90, 10.0, 4.0, point="a", format="tflite-float32", cpu_int8_dot="none"),
        make_result(0.89, 12.0, 1.0, point="a", format="tflite-int8", cpu_int8_dot="none"),
    ]
    budget = Budget(max_latency_ms=50)
    text = write_report(rows, pick(rows, budget), budget, tmp_path / "none").read_text(encoding="utf-8")
    assert "1 int8 artifact(s) were timed on a CPU without int8 dot-product instructions" in text
    assert "`edgetl bundle`" in text
    rows = [make_result(0.89, 12.0, 1.0, point="a", format="tflite-int8", cpu_int8_dot="AVX512-VNNI")]
    text = write_report(rows, pick(rows, budget), budget, tmp_path / "vnni").read_text(encoding="utf-8")
    assert "without int8 dot-product" not in text
