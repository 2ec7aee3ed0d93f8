"""Stage 5: the classification head on cached bottlenecks (search, refit), fine-tuning, and a run directory.

A run's float model.tflite is written through the export stage's converter, so train sits above export.
"""
