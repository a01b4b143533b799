# asset-gateway container image: `docker build -t asset-gateway .`
#
# Two stages: the first builds a virtualenv with the gateway and its dependencies (all of them ship
# wheels, so no compiler is needed); the second copies only that virtualenv onto a clean slim image
# and runs it as an unprivileged user. Configuration comes from the environment (GATEWAY_<SECTION>_<KEY>,
# AWS_* for S3) and from files mounted under /etc/asset-gateway; see docs/deploying.md.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/asset-gateway
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY gateway ./gateway
# Exactly the versions `make test` ran against (constraints.txt, written by `make lock`).
RUN /opt/asset-gateway/bin/pip install --no-cache-dir -c constraints.txt . \
 && /opt/asset-gateway/bin/asset-gateway --help > /dev/null

FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="asset-gateway" \
      org.opencontainers.image.description="Access-control edge proxy for files stored in S3"
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin gateway
COPY --from=build /opt/asset-gateway /opt/asset-gateway
# The shipped policy; mount your own directory over it (or set GATEWAY_POLICIES_DIR).
COPY policies /etc/asset-gateway/policies
ENV PATH=/opt/asset-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_SERVER_HOST=0.0.0.0 \
    GATEWAY_SERVER_PORT=8080 \
    GATEWAY_ADMIN_HOST=0.0.0.0 \
    GATEWAY_ADMIN_PORT=9090 \
    GATEWAY_POLICIES_DIR=/etc/asset-gateway/policies
WORKDIR /etc/asset-gateway
USER 10001:10001
EXPOSE 8080 9090
# Liveness from inside the container without curl: the admin listener's /healthz.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_ADMIN_PORT', '9090'), timeout=2)"]
ENTRYPOINT ["asset-gateway"]
CMD ["serve"]
