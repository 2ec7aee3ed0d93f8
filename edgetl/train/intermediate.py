"""retrain.py's intermediate graphs: the deployed head as it was every N training steps, as float .tflite.

retrain.py wrote `intermediate_<step>.pb` every `--intermediate_store_frequency` steps while training. The
head's fit is a pure function of its seed and step count (the batches and dropout masks depend on nothing
else), so the weights after k steps are those of the same fit stopped at k: `HeadFit.replay(k)` trains
exactly that, and each file here is the classifier with those weights, converted like `model.tflite`.
The steps are those of the head that ships (the refit on train + validation, unless `--no_refit`);
fine-tuning trains by epochs and writes none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgetl.export import ModelSource, artifact_metadata, export_artifact
from edgetl.train.tuning import HeadFit


def intermediate_steps(trained_steps: int, every: int) -> list[int]:
    """The steps retrain.py stored at: every `every`-th, from `every` up to the last step trained."""
    return list(range(every, trained_steps + 1, every)) if every > 0 else []


def store_intermediate(
    fit: HeadFit, build_model: Callable, run: dict, directory: str | Path, every: int, log=print
) -> list[Path]:
    """Write `intermediate_<step>.tflite` into `directory` for each stored step; returns the files.
    `build_model(head)` is the deployable classifier with that head (`train.run.build_classifier`)."""
    steps = intermediate_steps(fit.trained_steps, every)
    if not steps or fit.replay is None:
        log(f"intermediate graphs: none (the head trained {fit.trained_steps} steps, stored every {every})")
        return []
    directory = Path(directory)
    written = []
    for step in steps:
        head = fit.replay(step)
        model = build_model(head)
        path = directory / f"intermediate_{step}.tflite"
        export_artifact(ModelSource(model, None), "tflite-float32", path, artifact_metadata(run, "tflite-float32"))
        written.append(path)
    log(f"intermediate graphs: {len(written)} in {directory} (steps {', '.join(map(str, steps))})")
    return written
