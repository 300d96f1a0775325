# Every service's image: one Dockerfile, the service and its port given as build arguments.
# Build from the repository root (compose does, with the args of each service):
#   docker build -f deploy/docker/service.Dockerfile \
#     --build-arg SERVICE=order_service --build-arg PORT=7000 -t fleet/order_service .

# --- build: the runtime dependencies, as wheels, into a virtualenv ---------------------------
# The same for every service: built once, then taken from the cache.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /build
# Only the dependency list: code changes do not invalidate this layer.
COPY pyproject.toml ./
COPY deploy/docker/runtime_requirements.py ./
RUN python runtime_requirements.py pyproject.toml > requirements.txt \
    && /opt/venv/bin/pip wheel --wheel-dir /build/wheels -r requirements.txt \
    && /opt/venv/bin/pip install --no-index --find-links /build/wheels -r requirements.txt

# --- runtime: the virtualenv, shared and this service's package, a non-root user -------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY shared ./shared
# Declared in this stage (an ARG before the first FROM is not visible here), and only after the
# layers every service shares, so those stay cached across services. No defaults: a build
# without them stops here instead of copying the whole context as the "service".
ARG SERVICE
ARG PORT
RUN test -n "$SERVICE" && test -n "$PORT" \
    || { echo "build with --build-arg SERVICE=<package> --build-arg PORT=<port>" >&2; exit 1; }
ENV SERVICE=${SERVICE} \
    PORT=${PORT}
COPY ${SERVICE} ./${SERVICE}
# Compiled once here: the code is read-only for the service's user.
RUN python -m compileall -q shared "$SERVICE"
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/ready', timeout=4)"]
# `exec`: python replaces the shell and is PID 1, so `docker stop`'s SIGTERM reaches it.
CMD ["/bin/sh", "-c", "exec python -m \"$SERVICE\""]
