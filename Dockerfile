# trigger-bridge as a container image.
#
#   docker build -t trigger-bridge .
#   docker run --rm -v "$PWD/config:/app/config:ro" trigger-bridge validate --config config/compose.yaml
#
# The configuration is read from /app/config (mount your own `config/` there; the files of
# this repository are baked in as a fallback), relative paths are relative to /app, and the
# state (checkpoints, dead-letter files) lives in /app/.trigger-bridge: mount a volume
# there, or checkpoints are lost with the container.
#
# Targets: `lambda` (the Invoke API: an emulator, LocalStack, AWS) and `http` work as is.
# A `runtime` target that starts its handler needs the handler's code and `awslambdaric`
# in the image (build FROM this one and `pip install awslambdaric`).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY connectors ./connectors
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin bridge \
    && mkdir -p /app/.trigger-bridge \
    && chown bridge:bridge /app/.trigger-bridge
WORKDIR /app
COPY config ./config
USER bridge

# Healthy = the configuration the bridge runs from is valid. The bridge is PID 1, so a
# dead bridge already stops the container; what a process check cannot see is a live edit
# of the mounted config that does not validate (the bridge then keeps running the old one
# and logs `config.rejected`): `validate` turns that into `unhealthy`. It exits 0 or 2 and
# needs no network.
HEALTHCHECK --interval=30s --timeout=20s --start-period=10s --retries=3 \
    CMD ["trigger-bridge", "validate", "--config", "config/compose.yaml"]

ENTRYPOINT ["trigger-bridge"]
CMD ["run", "--config", "config/compose.yaml"]
