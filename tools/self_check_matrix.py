#!/usr/bin/env python3
"""The self-check's test matrix: each usual wrong pipeline against real exported artifacts, caught and named?

    python tools/self_check_matrix.py RUN/artifacts/*.tflite RUN/artifacts/*.onnx

For every artifact (exported by edgetl, so it carries golden inputs) and every mistake of
`edgetl.runtime.self_check.MISTAKES`, runs the golden images through that wrong pipeline as the command line's
flags would (`label_image --self_check MODEL --color_order BGR`, ...), and reports whether the self-check
failed (caught: the largest probability difference, against the tolerance) and whether its diagnosis named
that mistake. Also runs two correct pipelines that must pass: edgetl's own, and a bilinear resize without
antialiasing (OpenCV's, MediaPipe's). TensorFlow-free: runs in the device environments too.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgetl.runtime import load_model  # noqa: E402
from edgetl.runtime.self_check import MISTAKES, Pipeline, self_check  # noqa: E402

CORRECT = {"edgetl": Pipeline(), "bilinear_no_antialias": Pipeline(resize="bilinear_no_antialias")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    args = p.parse_args()
    print("| artifact | pipeline | max prob diff | verdict | diagnosis (closest, its distance) |")
    print("|---|---|--:|---|---|")
    wrong = 0
    for path in args.models:
        model = load_model(path)
        name = Path(path).name
        for label, pipeline in CORRECT.items():
            r = self_check(model, pipeline)
            wrong += not r.ok
            print(f"| {name} | correct: {label} | {r.comparison.max_diff:.4f} | {'pass' if r.ok else 'FAIL'} | |")
        for mistake, (_, pipeline) in MISTAKES.items():
            r = self_check(model, pipeline)
            named = r.diagnosis is not None and mistake in r.diagnosis.closest
            tied = r.diagnosis is not None and len(r.diagnosis.closest) > 1
            wrong += r.ok or not named
            diag = "" if r.diagnosis is None else f"{r.diagnosis.ranked[0][0]} ({r.diagnosis.ranked[0][1]:.4f})"
            verdict = ("caught" if not r.ok else "MISSED") + (", named right" if named else ", NOT named")
            verdict += f" (tied with {len(r.diagnosis.closest) - 1} other)" if tied else ""
            print(f"| {name} | {mistake} | {r.comparison.max_diff:.4f} | {verdict} | {diag} |")
    print(f"\n{wrong} wrong outcome(s)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
