#!/usr/bin/env sh
# Build the runtime images with the tag the launcher uses (components/launcher/pytorchjob.py:DEFAULT_IMAGE).
# Needs a Docker engine; exits 0 with a note when there is none. Usage: images/build.sh [extra docker args]
set -eu
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
IMAGE="$("$PY" -c 'from components.launcher.pytorchjob import DEFAULT_IMAGE; print(DEFAULT_IMAGE)')"
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "no Docker engine here: skipping image build of ${IMAGE}" >&2
  exit 0
fi
docker build -t "${IMAGE}" "$@" .
docker build -f images/cpu.Dockerfile -t "${IMAGE}-cpu" "$@" .
if [ "${WITH_TENSORRT:-0}" = "1" ]; then
  docker build --build-arg WITH_TENSORRT=1 -t "${IMAGE}-trt" "$@" .
fi
