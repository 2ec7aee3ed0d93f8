#!/usr/bin/env bash
# The two TensorFlow-free device environments, .venv-litert and .venv-tflite-runtime (see tools/make_venvs.sh).
# Usage: tools/make_device_venvs.sh            # both
#        tools/make_device_venvs.sh litert     # or just one: litert | tflite-runtime
set -euo pipefail
if [[ $# -eq 0 ]]; then set -- litert tflite-runtime; fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/make_venvs.sh" "$@"
