# The hub worker image: `docker build -t integration-hub .`, then `docker run integration-hub`
# (= `hub worker`; any other subcommand as arguments, e.g. `db upgrade`, `topics --format list`).
#
# Base image pinned by tag AND digest (the multi-arch index of python:3.11.14-slim-bookworm, the
# interpreter line the test suite runs on). The digest was taken from public repositories pinning
# the same tag; no registry was reachable where this file was written, so confirm it once with
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm` and let Renovate/Dependabot bump it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hub
WORKDIR /src
# every runtime package at the version and hash of requirements.lock (`make lock` writes it from
# pyproject.toml; psycopg[binary], fastavro: wheels, no compiler), then the hub without resolving again
COPY requirements.lock ./
RUN /opt/hub/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY hub ./hub
RUN /opt/hub/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="integration-hub" \
      org.opencontainers.image.description="Integration hub worker (faust on Apache Kafka)" \
      org.opencontainers.image.licenses="EUPL-1.2"
# /metrics on every interface of the container: Prometheus and the liveness probe come from outside
ENV PATH=/opt/hub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HUB_DATA_DIR=/var/lib/hub \
    HUB_METRICS_ADDR=0.0.0.0 \
    HUB_METRICS_PORT=9108
# a fixed numeric uid/gid so Kubernetes `runAsNonRoot` can verify it without a passwd lookup
RUN groupadd --system --gid 10001 hub \
 && useradd --system --uid 10001 --gid hub --home-dir /var/lib/hub --shell /usr/sbin/nologin hub \
 && mkdir -p /var/lib/hub && chown hub:hub /var/lib/hub
COPY --from=build /opt/hub /opt/hub
USER 10001:10001
WORKDIR /var/lib/hub
EXPOSE 9108
# broker (with the HUB_KAFKA_* TLS/SASL settings) and database answer within 5 s each
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 CMD ["hub", "healthcheck", "--timeout", "5"]
ENTRYPOINT ["hub"]
CMD ["worker"]
