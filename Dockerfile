# The c2m-pulse image: `c2m worker` by default; `c2m simulate ...`, `c2m db migrate`, ...
# Used by docker-compose.yml (workers, simulator, migrate).
FROM python:3.11.11-slim-bookworm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY deploy/clickhouse ./deploy/clickhouse
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data c2m \
    && mkdir -p /data && chown c2m /data

# The package is installed into site-packages; the migrations stay in /app.
ENV C2M_MIGRATIONS_DIR=/app/deploy/clickhouse \
    C2M_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER c2m
EXPOSE 6066 9464
ENTRYPOINT ["c2m"]
CMD ["worker"]
