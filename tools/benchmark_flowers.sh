#!/usr/bin/env bash
# The numbers behind the first two issues, on the real flowers photos and shipped ImageNet weights:
# train MobileNet V2 1.0 @224 and V1 0.25 @128, export every format of the V2 run (int8 calibrated with
# the manifest in calibration/, so its int8 files are reproducible), compare int8 with and without bias
# correction on both held-out splits, prove the int8 export is bit-identical when repeated, and label
# test images in the TensorFlow-free device environments.
#   bash tools/benchmark_flowers.sh [OUT_DIR]        (default runs/benchmark; ~10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${EDGETL_TEST_DATA:-../shared}"
OUT="${1:-runs/benchmark}"
EDGETL=.venv/bin/edgetl
MANIFEST=calibration/flowers-v2-a1.0-r224.json

for point in "v2 1.0 224" "v1 0.25 128"; do
  set -- $point
  echo "== edgetl train MobileNet $1 alpha $2 at $3 px"
  $EDGETL train --image_dir "$DATA/datasets/flowers" --weights_dir "$DATA/weights" \
      --backbone "$1" --alpha "$2" --resolution "$3" --output_dir "$OUT/flowers-$1-$2-$3" \
      | grep -E "^(bottlenecks|final|dataset)"
done

RUN="$OUT/flowers-v2-1.0-224"
echo "== edgetl export (all six formats) of $RUN"
$EDGETL export --run "$RUN" --format tflite,onnx --quantize all --calibration_manifest "$MANIFEST" || true
echo "== repeated int8 exports from one manifest"
mkdir -p "$OUT/repeat"
for f in tflite-int8.tflite onnx-int8.onnx; do cp "$RUN/artifacts/$f" "$OUT/repeat/$f"; done
$EDGETL export --run "$RUN" --format tflite,onnx --quantize int8 --calibration_manifest "$MANIFEST" >/dev/null || true
for f in tflite-int8.tflite onnx-int8.onnx; do
  cmp -s "$RUN/artifacts/$f" "$OUT/repeat/$f" && echo "$f: byte-identical" || echo "$f: DIFFERS"
done
echo "== the same int8 exports without bias correction (a copy of the run, same manifest)"
rm -rf "$RUN-plain" && cp -r "$RUN" "$RUN-plain" && rm -rf "$RUN-plain/artifacts"
$EDGETL export --run "$RUN-plain" --format tflite,onnx --quantize int8 --no_bias_correction \
    --calibration_manifest "$MANIFEST" || true
echo "== every artifact on both held-out splits (validation + test)"
.venv/bin/python tools/heldout_accuracy.py "$RUN" "$RUN-plain"
echo "== size of int8 vs float32"
python3 - "$RUN/artifacts" <<'PY'
import os, sys
d = sys.argv[1]
for kind, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
    f, q = os.path.getsize(f"{d}/{kind}-float32{suffix}"), os.path.getsize(f"{d}/{kind}-int8{suffix}")
    print(f"{kind}: int8 {q:,} B / float32 {f:,} B = {q / f:.1%}")
PY
echo "== label_image in the TensorFlow-free environments"
for f in tflite-float32 tflite-int8; do
  echo "-- $f"
  .venv/bin/python tools/device_check.py "$RUN/artifacts/$f.tflite" --image_dir "$DATA/datasets/flowers"
done
