#!/usr/bin/env python3
"""Mutants of real edgetl artifacts through the device-side loader: every one must end in an answer or a
clean one-line error, never a traceback, a crash or a hang (issue 28).

    nice -n 10 python tools/fuzz_models.py --mutants 10000 --image photo.jpg MODEL.tflite MODEL.onnx ...

Each mutant (flipped bits, truncation, a zeroed block, a bad offset, appended junk, a scrambled tail; the
positions drawn half the time from the file's last 16 KiB, where the metadata lives) is written to a
temporary file and run through ``label_image`` (``edgetl.runtime.label_image.main``) in a worker process, in
turn in each of ``--modes`` (``default``: as a user runs it, checking the SHA-256 the model records;
``verify``: ``--verify``; ``no_verify``: ``--no_verify``, so every mutant reaches the interpreter). The parent
restarts a worker that dies (a crash: the mutant is named) or that takes longer than ``--timeout`` seconds on
one mutant (a hang). Prints the counts: mutants tried, clean errors, answers, crashes, hangs, tracebacks.
Exit 1 when there is any crash, hang or traceback.

Mutants are drawn from ``random.Random(seed * 1_000_003 + i)``: ``--replay I`` rebuilds mutant I and writes it.
The mutators are standard library only; the tests import them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TAIL = 16 << 10  # the last bytes of a model: the appended archive, the metadata buffer


def _position(rng: random.Random, n: int) -> int:
    if n <= 1:
        return 0
    if rng.random() < 0.5:
        return rng.randrange(max(0, n - TAIL), n)
    return rng.randrange(n)


def flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        pos = _position(rng, len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: _position(rng, len(data))]


def zero_block(data: bytes, rng: random.Random) -> bytes:
    pos = _position(rng, len(data))
    size = rng.choice((1, 4, 16, 256, 4096))
    return data[:pos] + bytes(min(size, len(data) - pos)) + data[pos + size :]


def bad_offset(data: bytes, rng: random.Random) -> bytes:
    """A 32-bit little-endian word (an offset, a length, a ZIP size field) set to a hostile value."""
    if len(data) < 8:
        return data + b"\xff" * 4
    pos = _position(rng, len(data) - 4) & ~3
    value = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), len(data) - pos, rng.getrandbits(32)))
    return data[:pos] + struct.pack("<I", value) + data[pos + 4 :]


def append_junk(data: bytes, rng: random.Random) -> bytes:
    junk = rng.randbytes(rng.choice((1, 22, 100, 4096, 65536)))
    if rng.random() < 0.5:  # something that looks like the end of a ZIP archive
        junk += b"PK\x05\x06" + rng.randbytes(18)
    return data + junk


def scramble_tail(data: bytes, rng: random.Random) -> bytes:
    n = min(len(data), rng.choice((8, 64, 512, 4096, TAIL)))
    tail = bytearray(data[len(data) - n :])
    if rng.random() < 0.5:
        rng.shuffle(tail)
    else:
        tail = bytearray(rng.randbytes(n))
    return data[: len(data) - n] + bytes(tail)


MUTATORS = {f.__name__: f for f in (flip, truncate, zero_block, bad_offset, append_junk, scramble_tail)}


def mutant(seeds: list[bytes], seed: int, i: int) -> tuple[int, str, bytes]:
    """(the seed file's index, the mutator's name, the bytes) of mutant `i` of this run."""
    rng = random.Random(seed * 1_000_003 + i)
    k = rng.randrange(len(seeds))
    name = rng.choice(sorted(MUTATORS))
    return k, name, MUTATORS[name](seeds[k], rng)


# ---------------------------------------------------------------------------------------------------------
# The worker: runs mutants in-process through label_image, one JSON line per mutant.


MODES = {"default": [], "verify": ["--verify"], "no_verify": ["--no_verify"]}


def _run_one(path: Path, image: str, mode: str) -> dict:
    from edgetl.runtime.label_image import main as label_main

    argv = ["--model_file", str(path), "--image", image, *MODES[mode]]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = label_main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    except BaseException as e:  # noqa: BLE001 - the very thing this counts
        return {"outcome": "traceback", "detail": "".join(traceback.format_exception(e))[-2000:]}
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        return {"outcome": "answer"}
    if code == 2 and len(lines) == 1 and lines[0].startswith("label_image: error: "):
        return {"outcome": "clean error", "detail": lines[0][:300]}
    return {"outcome": "traceback", "detail": f"exit {code}, stderr: {err.getvalue()[-1000:]}"}


def worker(args) -> int:
    seeds = [Path(p).read_bytes() for p in args.models]
    suffixes = [Path(p).suffix for p in args.models]
    tmp = Path(tempfile.mkdtemp(prefix="edgetl-fuzz-"))
    # The answers go to the parent on a copy of stdout; fd 1 itself goes nowhere, so that nothing a native
    # library prints there can be taken for an answer.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    for line in sys.stdin:
        i = int(line)
        k, name, data = mutant(seeds, args.seed, i)
        path = tmp / f"mutant{suffixes[k]}"
        path.write_bytes(data)
        modes = args.modes.split(",")
        result = _run_one(path, args.image, modes[i % len(modes)])
        print(json.dumps({"i": i, "seed": k, "mutator": name, **result}), file=proto, flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------------
# The parent: hands out mutants, notices crashes and hangs.


class _Worker:
    def __init__(self, args):
        cmd = [sys.executable, __file__, "--worker", "--seed", str(args.seed), "--modes", args.modes]
        cmd += ["--image", args.image, *args.models]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)  # the worker is gone

    def send(self, i: int) -> None:
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict | None:
        """The mutant's result line; {"outcome": "crash"} when the worker died, None on a timeout."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            return {"outcome": "crash", "detail": f"worker died with {self.proc.wait()}"}
        return json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def fuzz(args) -> dict:
    counts = {k: 0 for k in ("answer", "clean error", "crash", "hang", "traceback")}
    by_mutator: dict[str, dict[str, int]] = {}
    examples: dict[str, list] = {"crash": [], "hang": [], "traceback": []}
    seeds = [Path(p).read_bytes() for p in args.models]
    w = _Worker(args)
    started = time.monotonic()
    for i in range(args.start, args.start + args.mutants):
        w.send(i)
        r = w.result(args.timeout)
        if r is None:
            r = {"outcome": "hang", "detail": f"more than {args.timeout:g} s"}
        if r["outcome"] in ("crash", "hang"):
            w.kill()
            w = _Worker(args)
        k, name, _ = mutant(seeds, args.seed, i)
        counts[r["outcome"]] += 1
        by_mutator.setdefault(name, {}).setdefault(r["outcome"], 0)
        by_mutator[name][r["outcome"]] += 1
        if r["outcome"] in examples and len(examples[r["outcome"]]) < 5:
            examples[r["outcome"]].append({"i": i, "model": args.models[k], "mutator": name, "detail": r.get("detail")})
        if args.progress and (i - args.start + 1) % args.progress == 0:
            print(f"{i - args.start + 1} mutants, {time.monotonic() - started:.0f} s: {counts}", file=sys.stderr)
    w.proc.stdin.close()
    w.kill()
    return {
        "mutants": args.mutants,
        "modes": args.modes,
        "seconds": round(time.monotonic() - started, 1),
        **counts,
        "by_mutator": by_mutator,
        "examples": examples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="real edgetl artifacts (.tflite, .onnx) to mutate")
    p.add_argument("--image", required=True, help="a photo to classify")
    p.add_argument("--mutants", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first mutant index (to split a run)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before a mutant counts as a hang")
    p.add_argument("--progress", type=int, default=1000, help="print the counts every N mutants (0: never)")
    p.add_argument("--modes", default="default,verify", help=f"comma list of {', '.join(MODES)}, taken in turn")
    p.add_argument("--replay", type=int, default=None, help="write mutant I to --out and stop")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.replay is not None:
        k, name, data = mutant([Path(m).read_bytes() for m in args.models], args.seed, args.replay)
        out = args.out or Path(f"mutant{args.replay}{Path(args.models[k]).suffix}")
        out.write_bytes(data)
        print(f"{out}: mutant {args.replay} of {args.models[k]} ({name})")
        return 0
    report = fuzz(args)
    print(json.dumps(report, indent=1))
    return 1 if report["crash"] or report["hang"] or report["traceback"] else 0


if __name__ == "__main__":
    sys.exit(main())
