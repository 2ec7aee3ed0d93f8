#!/usr/bin/env bash
# Install edgetl from scratch: .venv (edgetl + TensorFlow + converters + test tools), the two
# TensorFlow-free device environments (.venv-litert, .venv-tflite-runtime) used to prove the device path,
# and the two client environments (.venv-mediapipe, .venv-task-library) that prove the standard metadata.
# Idempotent: re-running only fills in what is missing.
#
#   PYTHON=python3.13 VENV=.venv-py313 bash tools/install.sh   # another supported Python (3.11-3.13), beside .venv
#
# PYTHON picks the interpreter of the main environment (default python3.11); the device and client
# environments keep their own (DEVICE_PYTHON, default python3.11: tflite-runtime 2.14 has no newer wheels).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[test,ray]"  # ray: `edgetl sweep --ray`, tested in CI
bash tools/make_device_venvs.sh
bash tools/make_client_venvs.sh
echo "installed: $("$VENV/bin/edgetl" --help >/dev/null && echo edgetl OK) on $("$VENV/bin/python" -V) in $REPO/$VENV"
