"""edgetl: retrain MobileNet heads on a folder of photos, export to edge formats, benchmark, pick.

Kept import-light on purpose: `edgetl.runtime` and `edgetl.runtime.label_image` must run on a device
with only numpy, Pillow and a TFLite runtime, so nothing here may import TensorFlow.
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA factories on CPU-only machines, oneDNN notes) buries the
# messages users need. Set here, before any module of the package can import TensorFlow; an explicit
# setting in the environment wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
