#!/usr/bin/env bash
# The two TensorFlow-free client environments, .venv-mediapipe and .venv-task-library (see tools/make_venvs.sh).
# Usage: tools/make_client_venvs.sh              # both
#        tools/make_client_venvs.sh mediapipe    # or just one: mediapipe | task-library
set -euo pipefail
if [[ $# -eq 0 ]]; then set -- mediapipe task-library; fi
exec bash "$(dirname "${BASH_SOURCE[0]}")/make_venvs.sh" "$@"
