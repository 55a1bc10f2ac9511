# Herald's API and worker: one image, two commands (`python -m api`, `python -m worker`).
# docker-compose.yml builds it; alone: docker build -t herald . && docker run herald python -m worker
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then Herald itself (a regular, non-editable install into site-packages).
COPY worker.py ./
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY common ./common
COPY devstack ./devstack
RUN pip install --no-deps . \
    && cd / && rm -rf /src

# Run as an unprivileged user. HERALD_DATA_DIR (default .data) is relative to /app; cleanup
# jobs work on its tmp/, logs/ and sessions/ directories.
RUN useradd --system --create-home --home-dir /app --uid 10001 herald \
    && mkdir -p /app/.data \
    && chown -R herald:herald /app/.data
# The typed notifications' email templates (HERALD_TEMPLATES_DIR): data, not a package.
COPY templates /app/templates
ENV HERALD_TEMPLATES_DIR=/app/templates
WORKDIR /app
USER herald

EXPOSE 8000
CMD ["python", "-m", "api"]
