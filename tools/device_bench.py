#!/usr/bin/env python
"""Measure every artifact of an edgetl bundle on this device (TensorFlow-free): `edgetl.measure.device_bench`.

Kept so a checkout runs it without installing edgetl; a bundle carries its own copy (`edgetl bundle`).

    python tools/device_bench.py --bundle BUNDLE_DIR [--num_threads 1,4] [--out FILE]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgetl.measure.device_bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
