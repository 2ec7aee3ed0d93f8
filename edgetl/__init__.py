"""edgetl: retrain MobileNet heads on a folder of photos, export to edge formats, benchmark, pick.

Kept import-light on purpose: `edgetl.runtime` and `edgetl.label_image` must run on a device
with only numpy, Pillow and a TFLite runtime, so nothing here may import TensorFlow.
"""

__version__ = "0.1.0"
