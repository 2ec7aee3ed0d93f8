"""Stage 5: the classification head on cached bottlenecks (search, refit), fine-tuning, and a run directory.

A run's float model.tflite is written through the export stage's converter, so train sits above export.

Callable as the stage's function: ``edgetl.train(...)`` is ``edgetl.train.run.train(...)`` (imported on the call).
"""

from edgetl import callable_stage

callable_stage(__name__)
