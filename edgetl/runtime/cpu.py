"""Whether this CPU has int8 dot-product instructions: what int8 latency depends on (TF-free, stdlib only).

int8 kernels (XNNPACK, onnxruntime's) are fast on CPUs that multiply-accumulate four int8 pairs per lane in
one instruction (x86: AVX-VNNI, AVX512-VNNI, AMX; Arm: the dot-product extension, i8mm) and can be slower than
float32 on CPUs without them. A latency measured on a host without them says little about a device with them.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# /proc/cpuinfo flag -> the name a report uses
X86_FLAGS = {"avx_vnni": "AVX-VNNI", "avx512_vnni": "AVX512-VNNI", "amx_int8": "AMX-INT8"}
ARM_FLAGS = {"asimddp": "dotprod", "i8mm": "i8mm"}
NONE = "none"


def int8_dot_features(cpuinfo: str | None = None, machine: str | None = None) -> str | None:
    """The CPU's int8 dot-product features, comma-joined ("AVX512-VNNI,AMX-INT8", "dotprod,i8mm"), "none"
    when it has none, None when unknown. `cpuinfo` (the text of /proc/cpuinfo) and `machine` (platform.machine())
    are read from this machine unless given."""
    machine = (machine or platform.machine()).lower()
    if cpuinfo is None:
        if sys.platform == "darwin" and machine == "arm64":
            return "dotprod"  # every Apple silicon CPU has it (i8mm from M2: not detectable without sysctl)
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return None
    table = ARM_FLAGS if machine.startswith(("arm", "aarch")) else X86_FLAGS
    found = [name for flag, name in table.items() if flag in flags]
    return ",".join(found) if found else NONE
