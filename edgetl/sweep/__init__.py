"""Stage 8: the grid as one plan of units (train -> export -> bench) run by two executors: in-process and Ray.

Callable as the stage's function: ``edgetl.sweep(...)`` is ``edgetl.sweep.run.sweep(...)`` (imported on the call).
"""

from edgetl import callable_stage

callable_stage(__name__)
