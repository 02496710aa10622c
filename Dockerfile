# syntax=docker/dockerfile:1.7
# The OCRFlow runtime image: every KFP component and every PyTorchJob replica runs it.
# Tag: components/launcher/pytorchjob.py:DEFAULT_IMAGE (build with images/build.sh or `make images`).
#   docker build -t ghcr.io/ocrflow/ocrflow:0.1.0 .
#   docker build --build-arg WITH_TENSORRT=1 -t ghcr.io/ocrflow/ocrflow:0.1.0-trt .
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

# --- build: the project wheel only (no compilers or sources in the runtime stage) ---------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ocr_core ./ocr_core
COPY components ./components
COPY pipelines ./pipelines
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG WITH_TENSORRT=0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    OCRFLOW_PYTORCHJOB_CRD=/opt/ocrflow/manifests/crds/kubeflow.org_pytorchjobs.yaml
COPY --from=build /wheels /wheels
COPY pyproject.toml images/image_requirements.py /tmp/req/
# torch is the base image's CUDA build: the constraint keeps pip from swapping it. One onnxruntime per
# image: images/image_requirements.py gives the dependencies with onnxruntime-gpu in place of
# onnxruntime (both install the same package and the CUDA provider can vanish); the wheel then goes in
# with --no-deps. WITH_TENSORRT=1 adds the whole `gpu` extra (TensorRT), built at deploy time.
RUN python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > /tmp/constraints.txt \
 && KIND="gpu" && if [ "$WITH_TENSORRT" = "1" ]; then KIND="gpu-trt"; fi \
 && python /tmp/req/image_requirements.py "$KIND" > /tmp/requirements.txt \
 && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt \
 && pip install --no-deps "$(ls /wheels/ocrflow-*.whl)" \
 && python /tmp/req/image_requirements.py --check-installed \
 && rm -rf /wheels /tmp/constraints.txt /tmp/requirements.txt /tmp/req
# The vendored PyTorchJob CRD (launcher's offline validation) and the PaddleOCR-style configs.
COPY manifests/crds/kubeflow.org_pytorchjobs.yaml /opt/ocrflow/manifests/crds/
COPY configs /opt/ocrflow/configs
# Non-root user (uid 1000 matches runAsUser in the PyTorchJob pod securityContext).
RUN groupadd --gid 1000 ocrflow && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ocrflow
USER 1000:1000
# `-c configs/det/...` in the PyTorchJob command resolves here.
WORKDIR /opt/ocrflow
ENTRYPOINT []
CMD ["ocrflow", "--help"]
