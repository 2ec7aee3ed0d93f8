#!/usr/bin/env bash
# Create the two TensorFlow-free "device" virtual environments next to the repo's .venv:
#
#   .venv-litert          numpy, Pillow, ai-edge-litert           (what a current device installs)
#   .venv-tflite-runtime  numpy<2, Pillow, tflite-runtime==2.14.0 (the last tflite-runtime release)
#
# They run tools/label_image.py straight from the checkout (edgetl is not installed into them); the tests in
# tests/test_label_image.py use them to prove the device path works without TensorFlow.
#
# Idempotent: an environment that already imports its runtime (and has no TensorFlow) is left alone; a
# missing or broken one is (re)created. Needs the package index (pip). Python: $PYTHON if set, else
# python3.11, else python3 (tflite-runtime 2.14 ships wheels for CPython 3.8-3.11 only).
#
# Usage: tools/make_device_venvs.sh            # both
#        tools/make_device_venvs.sh litert     # or just one: litert | tflite-runtime
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LITERT_PKGS=("numpy>=1.26" "pillow>=10" "ai-edge-litert>=2.3,<3")
TFLITE_RUNTIME_PKGS=("numpy<2" "pillow>=10" "tflite-runtime==2.14.0")

if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif command -v python3.11 >/dev/null 2>&1; then
  PY=python3.11
else
  PY=python3
fi
if ! "$PY" -c 'import sys, venv' 2>/dev/null; then
  echo "make_device_venvs: $PY cannot create virtual environments" >&2
  exit 2
fi
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# Python snippets that must succeed inside a working environment.
NO_TF='import importlib.util as u, sys; bad = [m for m in ("tensorflow", "keras", "tf_keras") if u.find_spec(m)]; sys.exit("has " + ", ".join(bad) if bad else 0)'
CHECK_LITERT='import numpy, PIL; from ai_edge_litert.interpreter import Interpreter'
CHECK_TFLITE_RUNTIME='import numpy, PIL, tflite_runtime; from tflite_runtime.interpreter import Interpreter; assert tflite_runtime.__version__ == "2.14.0", tflite_runtime.__version__'

works() {  # works VENV CHECK
  [[ -x "$1/bin/python" ]] && "$1/bin/python" -c "$2" >/dev/null 2>&1 && "$1/bin/python" -c "$NO_TF" >/dev/null 2>&1
}

describe() {  # describe VENV
  "$1/bin/python" - <<'EOF'
import importlib.metadata as md, sys
names = ["numpy", "pillow", "ai-edge-litert", "tflite-runtime"]
found = []
for n in names:
    try:
        found.append(f"{n} {md.version(n)}")
    except md.PackageNotFoundError:
        pass
print(f"python {sys.version.split()[0]}: " + ", ".join(found))
EOF
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
  if [[ "$name" == .venv-tflite-runtime ]]; then
    # tflite-runtime stopped at 2.14 with wheels for CPython <= 3.11: check one exists for this Python first.
    local tmp
    tmp="$(mktemp -d)"
    if ! "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$tmp" "tflite-runtime==2.14.0" >/dev/null 2>&1; then
      rm -rf "$tmp" "$venv"
      echo "$name: no tflite-runtime==2.14.0 wheel for Python $PY_VERSION on $(uname -m); use python3.11 (PYTHON=...)" >&2
      return 1
    fi
    rm -rf "$tmp"
  fi
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; then
    echo "$name: pip install failed" >&2
    return 1
  fi
  if ! works "$venv" "$check"; then
    echo "$name: created but its runtime does not import:" >&2
    "$venv/bin/python" -c "$check" >&2 || true
    "$venv/bin/python" -c "$NO_TF" >&2 || true
    return 1
  fi
  echo "$name: ready in $((SECONDS - t0))s ($(describe "$venv"))"
}

if [[ $# -eq 0 ]]; then
  set -- litert tflite-runtime
fi
status=0
for target in "$@"; do
  case "$target" in
    litert) make_venv .venv-litert "$CHECK_LITERT" "${LITERT_PKGS[@]}" || status=1 ;;
    tflite-runtime) make_venv .venv-tflite-runtime "$CHECK_TFLITE_RUNTIME" "${TFLITE_RUNTIME_PKGS[@]}" || status=1 ;;
    *) echo "make_device_venvs: unknown environment '$target' (expected litert or tflite-runtime)" >&2; exit 2 ;;
  esac
done
exit "$status"
