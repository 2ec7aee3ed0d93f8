"""What the `edgetl` command tells a pipeline: its exit codes, and how much it says (`--quiet`, `--verbose`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from edgetl.io.quiet import be_verbose

EXIT_PICKED = 0  # an artifact was picked (and, with --strict, every artifact passed its checks)
EXIT_USER_ERROR = 2  # bad flags or inputs, a missing dataset or weights, a full disk: one message, no traceback
EXIT_NOTHING_FITS = 3  # `sweep`/`report`: no artifact fits the budget (report.md lists the closest)
EXIT_CHECK_FAILED = 4  # with --strict: an artifact failed its export check or benchmark, or a grid point failed

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_PICKED}  an artifact was picked (sweep, report); the command succeeded (the others)
  {EXIT_USER_ERROR}  user error: bad flags or inputs, missing dataset or weights, a full disk (one message)
  {EXIT_NOTHING_FITS}  sweep, report: nothing fits the budget (report.md lists the closest artifacts)
  {EXIT_CHECK_FAILED}  sweep, report with --strict: an artifact failed its check (or a grid point failed)
  1  bench, export: an artifact failed its check; label: a model or image could not be read
"""

#: The keyword arguments of a parser whose --help ends with the exit codes.
EXIT_CODES_EPILOG = {"epilog": EXIT_CODES_HELP, "formatter_class": argparse.RawDescriptionHelpFormatter}

#: The logger edgetl's own messages go through; --quiet and --verbose set its level.
LOGGER = "edgetl"


def add_verbosity_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors (stderr) and the result lines (stdout)"
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug messages, and the third-party start-up lines and deprecation warnings edgetl hides",
    )


def add_strict_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strict",
        action="store_true",
        help=f"exit {EXIT_CHECK_FAILED} when any artifact failed its export check or benchmark, or a grid point failed",
    )


class _ToStream(logging.Handler):
    """INFO and below to stdout, warnings and errors to stderr; through tqdm.write, so progress bars stay whole."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr if record.levelno >= logging.WARNING else sys.stdout)
        except Exception:
            self.handleError(record)


def configure_logging(args: argparse.Namespace) -> logging.Logger:
    """Set the `edgetl` logger's level from --quiet/--verbose; --verbose also lets third-party noise through."""
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if verbose:
        be_verbose()
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, _ToStream) for h in logger.handlers):
        handler = _ToStream()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    return logger


def quiet_progress(argv: Sequence[str]) -> None:
    """--quiet: no progress bars, here and in every process started from here (export workers, Ray).

    tqdm (>= 4.66) takes its defaults from TQDM_* variables when it is imported, and building the parser
    imports it, so this looks at the raw arguments first.
    """
    if "--quiet" in argv or "-q" in argv:
        os.environ.setdefault("TQDM_DISABLE", "1")


def failed_units(results: Sequence, notes: Sequence[str]) -> list[str]:
    """What failed: artifacts whose status is not ok, and grid points that failed (not those skipped)."""
    failed = [f"{r.point} {r.format}: {r.status}" for r in results if not r.ok]
    return failed + [n for n in notes if " failed: " in n.split("\n", 1)[0]]


def pick_exit_code(picked: bool, failed: Sequence[str], strict: bool) -> int:
    """The exit code of `sweep` and `report`: --strict failures first, then whether anything fits."""
    if strict and failed:
        logging.getLogger(LOGGER).warning(
            f"--strict: {len(failed)} failure(s), exit {EXIT_CHECK_FAILED}:\n  " + "\n  ".join(failed)
        )
        return EXIT_CHECK_FAILED
    return EXIT_PICKED if picked else EXIT_NOTHING_FITS


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix: printed as one message and exit 2, never a traceback (all of them with EDGETL_DEBUG)."""
    from edgetl.data.dataset import DatasetError
    from edgetl.features.backbones import WeightsNotFoundError
    from edgetl.io.files import DiskError
    from edgetl.sweep.local import WorkerLost
    from edgetl.sweep.ray_tasks import ClusterError

    errors: list[type[BaseException]] = [
        DatasetError,
        WeightsNotFoundError,
        FileNotFoundError,
        ValueError,
        DiskError,
        ClusterError,
        WorkerLost,
    ]
    if os.environ.get("EDGETL_DEBUG"):
        return ()
    try:
        from edgetl.export import ExportError

        errors.append(ExportError)
    except ImportError:
        pass
    return tuple(errors)
