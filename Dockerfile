# syntax=docker/dockerfile:1
# The runtime image: web app built with Node 20, served by the Python runtime (what ECS and the EC2 hosts run).
# Build from the repository root:  docker build -t nova-concierge .

# --- stage 1: the web app (static files only end up in the image) --------------------------------
FROM node:20-bookworm-slim AS webapp
WORKDIR /src/webapp
COPY webapp/package.json webapp/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY webapp/ ./
RUN npm run build

# --- stage 2: the runtime ----------------------------------------------------------------------------
FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Runtime dependencies only (the pinned [project] list; no dev or platform extras).
COPY pyproject.toml README.md ./
COPY runtime/ runtime/
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin concierge \
    && install -d -o concierge -g concierge /app/var
COPY --from=webapp /src/webapp/dist /app/webapp/dist

USER 10001:10001
ENV HOST=0.0.0.0 \
    PORT=8000 \
    WEBAPP_DIR=/app/webapp/dist \
    DATA_DIR=/app/var
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]
CMD ["python", "-m", "runtime", "serve", "--host", "0.0.0.0"]
