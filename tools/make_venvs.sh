#!/usr/bin/env bash
# Create the TensorFlow-free environments next to the repo's .venv that prove edgetl's files work without it:
#
#   device environments (tools/make_device_venvs.sh): what runs the model on a device
#     .venv-litert          numpy, Pillow, ai-edge-litert            (what a current device installs)
#     .venv-tflite-runtime  numpy<2, Pillow, tflite-runtime==2.14.0  (the last tflite-runtime release)
#   client environments (tools/make_client_venvs.sh): the stock libraries an app team loads a .tflite with
#     .venv-mediapipe       numpy, Pillow, mediapipe (MediaPipe Tasks ImageClassifier; opencv, no TensorFlow)
#     .venv-task-library    numpy<2, Pillow, tflite-support==0.4.4 (the TFLite Task Library; needs libusb-1.0)
#
# They run tools/label_image.py, device_bench.py and tools/client_check.py straight from the checkout
# (edgetl is not installed into them). Idempotent: an environment that already imports its runtime (and has
# no TensorFlow) is left alone; a missing or broken one is (re)created. Needs the package index (pip).
# Python: $DEVICE_PYTHON if set, else python3.11, else python3 (tflite-runtime 2.14 and tflite-support 0.4.4
# ship wheels for CPython <= 3.11 only; $PYTHON, which picks the main .venv's interpreter, does not apply here).
#
# Usage: tools/make_venvs.sh litert tflite-runtime mediapipe task-library   # any of them
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# target -> venv | the import that must work | packages | the pinned wheel to check exists first (or -)
declare -A VENV=([litert]=.venv-litert [tflite-runtime]=.venv-tflite-runtime
                 [mediapipe]=.venv-mediapipe [task-library]=.venv-task-library)
declare -A CHECK=(
  [litert]='import numpy, PIL; from ai_edge_litert.interpreter import Interpreter'
  [tflite-runtime]='import numpy, PIL, tflite_runtime; from tflite_runtime.interpreter import Interpreter; assert tflite_runtime.__version__ == "2.14.0", tflite_runtime.__version__'
  [mediapipe]='import numpy, PIL; from mediapipe.tasks.python import vision; vision.ImageClassifier'
  [task-library]='import numpy, PIL; from tflite_support.task import vision; vision.ImageClassifier')
declare -A PKGS=([litert]='numpy>=1.26 pillow>=10 ai-edge-litert>=2.3,<3'
                 [tflite-runtime]='numpy<2 pillow>=10 tflite-runtime==2.14.0'
                 [mediapipe]='numpy>=1.26 pillow>=10 mediapipe==1.2.3'
                 [task-library]='numpy<2 pillow>=10 tflite-support==0.4.4')
declare -A PINNED=([litert]=- [tflite-runtime]=tflite-runtime==2.14.0 [mediapipe]=- [task-library]=tflite-support==0.4.4)

if [[ -n "${DEVICE_PYTHON:-}" ]]; then
  PY="$DEVICE_PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
  PY=python3.11
else
  PY=python3
fi
if ! "$PY" -c 'import sys, venv' 2>/dev/null; then
  echo "make_venvs: $PY cannot create virtual environments" >&2
  exit 2
fi
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
NO_TF='import importlib.util as u, sys; bad = [m for m in ("tensorflow", "keras", "tf_keras") if u.find_spec(m)]; sys.exit("has " + ", ".join(bad) if bad else 0)'

works() {  # works VENV CHECK
  [[ -x "$1/bin/python" ]] && "$1/bin/python" -c "$2" >/dev/null 2>&1 && "$1/bin/python" -c "$NO_TF" >/dev/null 2>&1
}

describe() {  # describe VENV
  "$1/bin/python" - <<'EOF'
import importlib.metadata as md, sys
names = ["numpy", "pillow", "ai-edge-litert", "tflite-runtime", "mediapipe", "tflite-support"]
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

wheel_exists() {  # wheel_exists VENV REQUIREMENT: an old pinned release may lack wheels for this Python
  local tmp ok=0
  tmp="$(mktemp -d)"
  "$1/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tmp" "$2" >/dev/null 2>&1 || ok=1
  rm -rf "$tmp"
  return $ok
}

make_venv() {  # make_venv TARGET
  local target="$1" venv="$REPO/${VENV[$1]}" name="${VENV[$1]}"
  if works "$venv" "${CHECK[$target]}"; then
    echo "$name: already works ($(describe "$venv")), skipped"
    return 0
  fi
  local t0=$SECONDS
  echo "$name: creating with $PY ($PY_VERSION): ${PKGS[$target]}"
  "$PY" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  if [[ "${PINNED[$target]}" != - ]] && ! wheel_exists "$venv" "${PINNED[$target]}"; then
    rm -rf "$venv"
    echo "$name: no ${PINNED[$target]} wheel for Python $PY_VERSION on $(uname -m); use python3.11 (DEVICE_PYTHON=...)" >&2
    return 1
  fi
  if [[ "$target" == task-library ]]; then
    ensure_libusb || { rm -rf "$venv"; return 1; }
  fi
  # shellcheck disable=SC2086  # the package list is meant to split
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check ${PKGS[$target]}; then
    echo "$name: pip install failed" >&2
    return 1
  fi
  if ! works "$venv" "${CHECK[$target]}"; then
    echo "$name: created but its runtime does not import:" >&2
    "$venv/bin/python" -c "${CHECK[$target]}" >&2 || true
    "$venv/bin/python" -c "$NO_TF" >&2 || true
    return 1
  fi
  echo "$name: ready in $((SECONDS - t0))s ($(describe "$venv"))"
}

status=0
for target in "$@"; do
  if [[ -z "${VENV[$target]:-}" ]]; then
    echo "make_venvs: unknown environment '$target' (expected litert, tflite-runtime, mediapipe or task-library)" >&2
    exit 2
  fi
  make_venv "$target" || status=1
done
exit "$status"
