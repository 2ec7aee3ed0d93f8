#!/usr/bin/env bash
# Create the TensorFlow-free "client" virtual environments next to the repo's .venv: the stock libraries an
# app team uses to run an image classifier from its .tflite file and nothing else, so tests can prove that
# edgetl's files (standard TFLite Metadata: labels, normalization) work there as they are.
#
#   .venv-mediapipe      numpy, Pillow, mediapipe (MediaPipe Tasks ImageClassifier; pulls in opencv,
#                        matplotlib, sounddevice, absl, flatbuffers, but no TensorFlow)
#   .venv-task-library   numpy<2, Pillow, tflite-support==0.4.4 (the TFLite Task Library's ImageClassifier;
#                        its last release, CPython <= 3.11 wheels, built against numpy 1)
#
# They run tools/client_check.py straight from the checkout (edgetl is not installed into them); the tests
# in tests/test_client_metadata.py use them and skip when one is missing.
#
# Idempotent: an environment that already imports its classifier (and has no TensorFlow) is left alone; a
# missing or broken one is (re)created. Needs the package index (pip); the Task Library's native code wants
# libusb-1.0 (Debian libusb-1.0-0), installed with apt-get when missing and we are root. Python: $PYTHON if
# set, else python3.11, else python3.
#
# Usage: tools/make_client_venvs.sh                # both
#        tools/make_client_venvs.sh mediapipe      # or just one: mediapipe | task-library
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDIAPIPE_PKGS=("numpy>=1.26" "pillow>=10" "mediapipe==1.2.3")
TASK_LIBRARY_PKGS=("numpy<2" "pillow>=10" "tflite-support==0.4.4")

if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
  PY=python3.11
else
  PY=python3
fi
if ! "$PY" -c 'import sys, venv' 2>/dev/null; then
  echo "make_client_venvs: $PY cannot create virtual environments" >&2
  exit 2
fi
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# Python snippets that must succeed inside a working environment.
NO_TF='import importlib.util as u, sys; bad = [m for m in ("tensorflow", "keras", "tf_keras") if u.find_spec(m)]; sys.exit("has " + ", ".join(bad) if bad else 0)'
CHECK_MEDIAPIPE='import numpy, PIL; from mediapipe.tasks.python import vision; vision.ImageClassifier'
CHECK_TASK_LIBRARY='import numpy, PIL; from tflite_support.task import vision; vision.ImageClassifier'

works() {  # works VENV CHECK
  [[ -x "$1/bin/python" ]] && "$1/bin/python" -c "$2" >/dev/null 2>&1 && "$1/bin/python" -c "$NO_TF" >/dev/null 2>&1
}

describe() {  # describe VENV
  "$1/bin/python" - <<'EOF'
import importlib.metadata as md, sys
names = ["numpy", "pillow", "mediapipe", "opencv-contrib-python", "tflite-support"]
found = []
for n in names:
    try:
        found.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        pass
print(f"python {sys.version.split()[0]}: " + ", ".join(found))
EOF
}

ensure_libusb() {  # the Task Library's .so files link libusb-1.0 (for the Edge TPU delegate)
  if ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so\.0'; then
    return 0
  fi
  if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "task-library: installing libusb-1.0-0 (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "task-library: libusb-1.0 is missing; install it (Debian: apt-get install libusb-1.0-0)" >&2
    return 1
  fi
}

make_venv() {  # make_venv NAME CHECK PACKAGES...
  local name="$1" check="$2"
  shift 2
  local venv="$REPO/$name"
  if works "$venv" "$check"; then
    echo "$name: already works ($(describe "$venv")), skipped"
    return 0
  fi
  local t0=$SECONDS
  echo "$name: creating with $PY ($PY_VERSION): $*"
  "$PY" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  if [[ "$name" == .venv-task-library ]]; then
    # tflite-support stopped at 0.4.4 with wheels for CPython <= 3.11: check one exists for this Python first.
    local tmp
    tmp="$(mktemp -d)"
    if ! "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$tmp" "tflite-support==0.4.4" >/dev/null 2>&1; then
      rm -rf "$tmp" "$venv"
      echo "$name: no tflite-support==0.4.4 wheel for Python $PY_VERSION on $(uname -m); use python3.11 (PYTHON=...)" >&2
      return 1
    fi
    rm -rf "$tmp"
    ensure_libusb || { rm -rf "$venv"; return 1; }
  fi
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; then
    echo "$name: pip install failed" >&2
    return 1
  fi
  if ! works "$venv" "$check"; then
    echo "$name: created but its classifier does not import:" >&2
    "$venv/bin/python" -c "$check" >&2 || true
    "$venv/bin/python" -c "$NO_TF" >&2 || true
    return 1
  fi
  echo "$name: ready in $((SECONDS - t0))s ($(describe "$venv"))"
}

if [[ $# -eq 0 ]]; then
  set -- mediapipe task-library
fi
status=0
for target in "$@"; do
  case "$target" in
    mediapipe) make_venv .venv-mediapipe "$CHECK_MEDIAPIPE" "${MEDIAPIPE_PKGS[@]}" || status=1 ;;
    task-library) make_venv .venv-task-library "$CHECK_TASK_LIBRARY" "${TASK_LIBRARY_PKGS[@]}" || status=1 ;;
    *) echo "make_client_venvs: unknown environment '$target' (expected mediapipe or task-library)" >&2; exit 2 ;;
  esac
done
exit "$status"
