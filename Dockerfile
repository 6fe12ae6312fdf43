# One image for every Python service of the federation (hub, province nodes, gateway); docker-compose.yml picks
# the service with `python -m services.<svc>`, as the launcher does.
FROM python:3.11-slim

# The uv the Makefile pins, so the image resolves the committed lock file exactly as `make install` does.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /app

# Dependencies first (cached until the lock changes), then the code and the project itself.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev

# Services run unprivileged; on SQLite their state lives in YIBAO_HOME (a volume); docker-compose.yml runs them
# on PostgreSQL, replicated, with no volume.
RUN useradd --system --uid 10001 --home-dir /var/lib/yibao yibao \
    && mkdir -p /var/lib/yibao \
    && chown yibao /var/lib/yibao
USER yibao

ENV PATH=/app/.venv/bin:$PATH \
    YIBAO_HOME=/var/lib/yibao \
    YIBAO_HTTP_HOST=0.0.0.0

EXPOSE 8000
CMD ["python", "-m", "services.national_hub"]
