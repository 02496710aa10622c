# CPU-only variant (laptops, CI, `launcher=local` on CPU nodes): python:3.11-slim + the CPU torch wheel.
#   docker build -f images/cpu.Dockerfile -t ghcr.io/ocrflow/ocrflow:0.1.0-cpu .
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ocr_core ./ocr_core
COPY components ./components
COPY pipelines ./pipelines
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm AS runtime
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    OCRFLOW_PYTORCHJOB_CRD=/opt/ocrflow/manifests/crds/kubeflow.org_pytorchjobs.yaml
# OpenCV (headless) still needs libglib; nothing else from apt.
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /tmp/constraints.txt \
 && pip install -c /tmp/constraints.txt "$(ls /wheels/ocrflow-*.whl)[pipeline,tensorboard]" \
 && rm -rf /wheels /tmp/constraints.txt
COPY manifests/crds/kubeflow.org_pytorchjobs.yaml /opt/ocrflow/manifests/crds/
COPY configs /opt/ocrflow/configs
RUN groupadd --gid 1000 ocrflow && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ocrflow
USER 1000:1000
WORKDIR /opt/ocrflow
ENTRYPOINT []
CMD ["ocrflow", "--help"]
