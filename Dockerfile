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
# A `runtime` target that starts its handler needs the handler's code in the image (build
# FROM this one and copy it in); `awslambdaric` comes with trigger-bridge on Linux x86_64
# and arm64.

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

# The config every command reads unless given --config: set TRIGGER_BRIDGE_CONFIG to run
# another one, and the health check follows it.
ENV TRIGGER_BRIDGE_CONFIG=config/compose.yaml

# Healthy = ready: every mapping of the configuration runs and every API listens, as the
# bridge's admin server answers on /readyz (`status --ready` finds it through the state
# dir, so it follows the config's admin settings). A mapping that keeps failing (its
# source unreachable, say) or a live edit that cannot start makes it `unhealthy`.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["trigger-bridge", "status", "--ready"]

EXPOSE 9470

ENTRYPOINT ["trigger-bridge"]
CMD ["run"]
