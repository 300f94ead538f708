# The c2m-pulse image: `c2m worker` by default; `c2m simulate ...`, `c2m db migrate`, ...
# Used by docker-compose.yml (workers, simulator, migrate).
# Two stages: the engine's lanes are a C extension (streams/core/_lanes.c), built
# into a wheel where a compiler is; the image itself gets the wheel and no compiler.
FROM python:3.11.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY schemas ./schemas
COPY streams ./streams
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY --from=build /wheels /wheels
COPY deploy/clickhouse ./deploy/clickhouse
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data c2m \
    && mkdir -p /data/tokens && chown -R c2m /data

# The package is installed into site-packages; the migrations stay in /app.
ENV C2M_MIGRATIONS_DIR=/app/deploy/clickhouse \
    C2M_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER c2m
EXPOSE 6066 9464
ENTRYPOINT ["c2m"]
CMD ["worker"]
