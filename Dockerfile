# syntax=docker/dockerfile:1
# The one conversation-events image: the core and the api, worker and scaler distributions,
# installed from uv.lock into /opt/venv. The process is chosen by the command:
# conversation-events-api (the default), -worker, -scaler, -migrate, -admin or -keys.
#   docker build -t conversation-events .
# BASE_IMAGE may be any Debian-like image with python3 (3.11) and its venv module; the default is
# the official slim image. Both stages use it, so the venv's interpreter links stay valid.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
WORKDIR /build
COPY pyproject.toml uv.lock ./
COPY services/api/pyproject.toml services/api/
COPY services/worker/pyproject.toml services/worker/
COPY services/scaler/pyproject.toml services/scaler/
# uv at the version pyproject.toml requires, then the locked dependencies alone (a layer that
# changes only with the lock). Binary wheels only: the build stage has no compiler and needs
# none. Behind a TLS-intercepting proxy, pass its CA bundle as the optional build secret
# `ca-certificates` (`--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt`); it
# never enters a layer.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then \
      export PIP_CERT=/run/secrets/ca-certificates SSL_CERT_FILE=/run/secrets/ca-certificates; \
    fi \
 && uv_version=$(sed -n 's/^required-version = "==\(.*\)"$/\1/p' pyproject.toml) \
 && python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir "uv==${uv_version}" \
 && /opt/uv/bin/uv sync --frozen --no-dev --all-packages --no-install-workspace --no-build
COPY src src
COPY services services
# The four distributions, as wheels (not editable): the final image holds no source tree.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
 && /opt/uv/bin/uv sync --frozen --no-dev --all-packages --no-editable

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="conversation-events" \
      org.opencontainers.image.description="Accepts finished conversations, queues them, scores friendship; API, worker and autoscaler by command"
# A fixed numeric user so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
# Bytecode was compiled in the build stage (UV_COMPILE_BYTECODE): the root filesystem is
# read-only at run time.
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
# The API's port, the worker's and the scaler's health and metrics ports.
EXPOSE 8000 9100 9200
# Exec form: the console script's interpreter is PID 1 and receives SIGTERM directly.
CMD ["conversation-events-api"]
