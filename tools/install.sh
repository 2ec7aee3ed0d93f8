#!/usr/bin/env bash
# Install edgetl from scratch: .venv (edgetl + TensorFlow + converters + test tools), the two
# TensorFlow-free device environments (.venv-litert, .venv-tflite-runtime) used to prove the device path,
# and the two client environments (.venv-mediapipe, .venv-task-library) that prove the standard metadata.
# Idempotent: re-running only fills in what is missing.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,ray]"  # ray: `edgetl sweep --ray`, tested in CI
bash tools/make_device_venvs.sh
bash tools/make_client_venvs.sh
echo "installed: $(.venv/bin/edgetl --help >/dev/null && echo edgetl OK) in $REPO/.venv"
