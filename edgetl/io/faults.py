"""Named fault points, so the fault tests stop a run at exact places instead of timed ones.

`fault_point(stage)` is a no-op unless a test sets EDGETL_KILL_AT (SIGKILL the process there, as a power cut
or the OOM killer would) or EDGETL_TRACE (append each reached stage to a file). Stdlib only.
"""

from __future__ import annotations

import os

KILL_AT_ENV = "EDGETL_KILL_AT"  # "stage" or "stage#n": SIGKILL this process at the n-th time it reaches stage
TRACE_ENV = "EDGETL_TRACE"  # a file each reached stage is appended to (which units a run really did)
_reached: dict[str, int] = {}


def fault_point(stage: str) -> None:
    """Mark that the process reached `stage` (e.g. "convert:tflite-int8"); a no-op unless a test asks.

    With EDGETL_KILL_AT naming it, the process kills itself here with SIGKILL, as a power cut or the OOM
    killer would: nothing after this point runs, no cleanup, no flush. A sweep's export worker
    (`edgetl.sweep.local`) kills its sweep first, as a power cut would.
    """
    trace, kill_at = os.environ.get(TRACE_ENV), os.environ.get(KILL_AT_ENV)
    if not trace and not kill_at:
        return
    _reached[stage] = _reached.get(stage, 0) + 1
    if trace:
        with open(trace, "a") as f:
            f.write(f"{stage}\n")
    if kill_at:
        name, _, nth = kill_at.partition("#")
        if name == stage and _reached[stage] == int(nth or 1):
            import signal

            sweep = os.environ.get("EDGETL_SWEEP_PID")  # in a sweep's export worker: the power cut takes both
            if sweep and int(sweep) != os.getpid():
                os.kill(int(sweep), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
