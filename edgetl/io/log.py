"""What a long run says: each line on the console and in its log file, and a heartbeat while a unit runs.

On a terminal the progress bars show what is running; off one (a file, a pipe, CI) they are off
(`edgetl.cli.outcome`), so a sweep says one plain line per finished unit and, during a long unit, a
heartbeat line at most every HEARTBEAT_S seconds. Every line also goes to the sweep's own log file.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT_S = 30.0


def print_line(message: str) -> None:
    """A line on stdout that leaves any progress bar whole (tqdm.write)."""
    from tqdm import tqdm

    tqdm.write(message)


def on_terminal() -> bool:
    return sys.stderr.isatty()


@dataclass(frozen=True)
class RunLog:
    """A `say` function: `echo` (print_line, a logger's info, or None for nowhere), and a line with the
    time appended to `path` (None: no file). Picklable: a sweep's export worker logs through a copy."""

    path: Path | None
    echo: Callable[[str], None] | None = print_line

    def __call__(self, message: str) -> None:
        if self.echo is not None:
            self.echo(message)
        if self.path is not None:
            with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {message}\n")


def worker_log(say) -> RunLog | None:
    """The copy of `say` a worker process logs through: the same file, and stdout unless `say` echoes to a
    logger that is quiet (--quiet); a logger's method would print nothing in a worker, which has no handlers."""
    if not isinstance(say, RunLog):
        return None
    owner = getattr(say.echo, "__self__", None)
    quiet = isinstance(owner, logging.Logger) and not owner.isEnabledFor(logging.INFO)
    return RunLog(say.path, None if quiet or say.echo is None else print_line)


@contextlib.contextmanager
def heartbeat(say: Callable[[str], None], what: str, every: float = HEARTBEAT_S) -> Iterator[None]:
    """While the block runs, off a terminal, say "still <what> (N s)" every `every` seconds."""
    if on_terminal():
        yield
        return
    started, done = time.monotonic(), threading.Event()

    def beat() -> None:
        while not done.wait(every):
            say(f"still {what} ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
