#!/usr/bin/env bash
# Prepare .carry/wheels for the GPU machine (device `run`): the cp312 wheels it lacks (nothing is
# installed there and nothing outside it can be reached). The machine already has torch (CUDA),
# opencv, onnx, onnxruntime, numpy and pyyaml; this adds pyclipper, shapely, albumentations 2.0.8
# (+ albucore, pydantic, scipy, ...), lmdb and rapidfuzz, without the ones it has.
#
#   bash bench/gpu_carry.sh            # -> .carry/wheels (+ the size; a call carries at most 64 MiB)
#   # then, on the device (wheels stay compressed in the carry, unpacked there in seconds):
#   python3 -m pip install -q --no-deps --no-index --target /tmp/site .carry/wheels/*.whl
#   PYTHONPATH=/tmp/site python3 bench/gpu_suite.py --out $OUT/gpu_suite --budget-s 240
#   # (run(carry=[".carry"]); IC15 data for bench/ic15_recipe.py goes to .carry/ic15, see docs/results.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=.carry/wheels
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
# what the device has, so not carried (and not pulled in as dependencies)
HAVE="numpy opencv-python opencv-python-headless pyyaml torch onnx onnxruntime"
WANT="pyclipper shapely albumentations==2.0.8 lmdb rapidfuzz"
"$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -d "$WHEELS" $WANT 2>/dev/null
rm -rf "$OUT" && mkdir -p "$OUT"
for whl in "$WHEELS"/*.whl; do
  name=$(basename "$whl" | cut -d- -f1 | tr '[:upper:]_' '[:lower:]-')
  case " $HAVE " in *" $name "*) continue ;; esac
  cp "$whl" "$OUT/"
done
ls "$OUT"
du -sh "$OUT" | awk '{print "carry: " $1 " in .carry/wheels (a call carries at most 64 MiB, data included)"}'
