# rnnserve, CPU image: the gRPC server, its Python client and the default model on onnxruntime.
#   make image          (docker build where a Docker engine answers, else buildah bud)
#   docker run --rm -p 50051:50051 -p 9090:9090 rnnserve:0.1.0
# Configuration: RNNSERVE_* environment variables (README, "Settings"). SIGTERM drains, exit 0.
# The CUDA variant is Dockerfile.cuda. `make image-test` builds and runs this file for real.

ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

# --- build: a virtual environment with the pinned runtime wheels (no compiler, no torch) -------
# Then without pip, test suites and onnxruntime's offline tools (transformers, quantization).
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY deploy/requirements-server.txt /tmp/requirements.txt
# Optional build secret `pip_cert`: a CA bundle for pip behind a TLS-intercepting proxy
# (deploy/build.sh passes the host's); it is mounted for this step only, never stored.
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --only-binary :all: \
        -r /tmp/requirements.txt \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && find /opt/venv \( -name tests -o -path '*/onnxruntime/transformers' \
        -o -path '*/onnxruntime/quantization' -o -path '*/onnxruntime/tools' \) \
        -prune -exec rm -rf {} +
# Only what the server and client import: no export/ (training, torch), no tests, no proto/.
COPY modelspec/ /app/modelspec/
COPY rnnserve/ /app/rnnserve/
COPY server/ /app/server/
COPY client/ /app/client/
COPY pyproject.toml /app/pyproject.toml
COPY models/intent.onnx /app/models/intent.onnx
# Byte-compile now: the runtime root filesystem is read-only, so nothing is compiled there.
RUN /opt/venv/bin/python -m compileall -q /app

# --- runtime -----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="rnnserve" \
      org.opencontainers.image.description="gRPC inference for recurrent intent+slot models (onnxruntime, CPU)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it (deploy/k8s/deployment.yaml).
RUN groupadd --gid 10001 rnnserve \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rnnserve
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# ORT_DISABLE_TELEMETRY: onnxruntime 1.32 otherwise keeps a telemetry id under $HOME/.cache.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    RNNSERVE_MODEL=/app/models/intent.onnx \
    RNNSERVE_HOST=0.0.0.0 \
    RNNSERVE_PORT=50051 \
    RNNSERVE_METRICS_PORT=9090 \
    RNNSERVE_DEVICE=cpu \
    RNNSERVE_DRAIN_SECONDS=10
USER 10001:10001
EXPOSE 50051 9090
# grpc.health.v1 through the project's own client: exit 0 only when SERVING (warm, not draining).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "exec python -m client health --target 127.0.0.1:${RNNSERVE_PORT} --timeout 3"]
# Exec form: the server is PID 1 and receives SIGTERM itself (drain, then exit 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "server"]
CMD []
