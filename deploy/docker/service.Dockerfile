# Every service's image: one Dockerfile, the service and its port given as build arguments, the
# stage as the target (`graphql_gateway` for the gateway: GraphiQL's files; `service` for the
# others, also the default). Build from the repository root (compose does, with each service's
# args and target):
#   docker build -f deploy/docker/service.Dockerfile --target service \
#     --build-arg SERVICE=order_service --build-arg PORT=7000 -t fleet/order_service .
#   docker build -f deploy/docker/service.Dockerfile --target graphql_gateway \
#     --build-arg SERVICE=graphql_gateway --build-arg PORT=4000 -t fleet/graphql_gateway .
# Base images: exact tag and digest (same bytes on every build); bump both together.

# --- build: the runtime dependencies from uv.lock, as wheels, into a virtualenv --------------
# The same for every service: built once, then taken from the cache.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1
# The uv of the Makefile and pyproject.toml ([tool.uv] required-version); only in this stage.
RUN pip install --quiet uv==0.13.9
# No pip nor setuptools in the image's venv (23 MB): the build stage's pip fills it.
RUN python -m venv --without-pip /opt/venv
WORKDIR /build
# Only the dependency list: code changes do not invalidate this layer.
COPY pyproject.toml uv.lock ./
# The runtime set alone (no local, ops or dev group), at the lock's versions with its hashes;
# `--locked` stops the build when the lock no longer matches pyproject.toml (make lock).
RUN uv export --quiet --locked --no-default-groups --no-emit-project --format requirements.txt \
        --output-file requirements.txt \
    && pip --python /opt/venv/bin/python install --no-deps --require-hashes --only-binary=:all: \
        -r requirements.txt

# --- GraphiQL's files for the gateway, from clients/package-lock.json ------------------------
FROM node:20.19.5-bookworm-slim@sha256:9e70124bd00f47dd023e349cd587132ae61892acc0e47ed641416c3e18f401c3 AS graphiql-npm
WORKDIR /clients
COPY clients/package.json clients/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# Only the files Strawberry's GraphiQL page loads, checked against the page's integrity hashes
# (python -m graphql_gateway.graphiql; the build stops if one is missing or differs).
FROM builder AS graphiql-assets
COPY shared ./shared
COPY graphql_gateway ./graphql_gateway
COPY --from=graphiql-npm /clients/node_modules ./node_modules
RUN /opt/venv/bin/python -m graphql_gateway.graphiql ./node_modules /graphiql

# --- runtime: the virtualenv, shared and this service's package, a non-root user -------------
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS runtime
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

# --- the gateway: GraphiQL served from the image, no CDN (GRAPHIQL_ENABLED switches it on) ---
FROM runtime AS graphql_gateway
COPY --from=graphiql-assets /graphiql /app/graphiql
ENV GRAPHIQL_ASSETS_DIR=/app/graphiql

# --- every other service (and the default target): the runtime stage as it is ---------------
FROM runtime AS service
