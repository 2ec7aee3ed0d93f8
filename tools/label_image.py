#!/usr/bin/env python3
"""Classify images with an edgetl .tflite/.onnx model, like TensorFlow's label_image.py.

Runs from a checkout without installing edgetl (only numpy, Pillow and a TFLite runtime are needed):

    python tools/label_image.py --model_file model.tflite --image photo.jpg
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgetl.runtime.label_image import main

if __name__ == "__main__":
    sys.exit(main())
