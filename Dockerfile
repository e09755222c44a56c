# jaxport: the API (`jaxport serve`) and the workers (`jaxport worker`) from one image.
# Python 3.11 for the engine, Node 20 for running TF.js artifacts during verification, and
# Debian's Chromium, in which the TFLite model is run through LiteRT.js (headless).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    KERAS_BACKEND=jax \
    TF_CPP_MIN_LOG_LEVEL=2 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && curl -fsSL https://deb.nodesource.com/setup_20.x | bash - \
 && apt-get install -y --no-install-recommends nodejs chromium \
 && rm -rf /var/lib/apt/lists/*
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

WORKDIR /app
# Dependencies first (cached until the lock changes), then the sources.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --all-extras --no-install-project
COPY js/package.json js/package-lock.json js/
RUN cd js && npm ci --omit=dev
COPY js/lines.mjs js/timing.mjs js/run_model.mjs js/run_litertjs.mjs js/litertjs_page.mjs js/
COPY jaxport jaxport
COPY service service
COPY workers workers
RUN uv sync --frozen --no-dev --all-extras

RUN useradd --create-home --uid 10001 jaxport && mkdir -p /data && chown jaxport /data
USER jaxport
ENV JAXPORT_STORAGE_URL=file:///data/storage
EXPOSE 8000
CMD ["jaxport", "serve", "--host", "0.0.0.0", "--port", "8000"]
