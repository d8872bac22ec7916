# Authorization service image: the built wheel, installed, run as a non-root user.
#
# Its steps are those of scripts/wheel-smoke.sh, which CI runs without Docker
# (there is no Docker engine on the machines that run CI): change one, change
# the other. Each step is marked "smoke:" with its counterpart there, and
# tests/test_image.py checks the parts that can drift apart.
#
#   docker build -t authz .
#   docker run --rm -e AUTHZ_DATABASE_URL=... authz db upgrade   # release step / init container
#   docker run -p 8000:8000 -e AUTHZ_DATABASE_URL=... authz       # the service (gunicorn, PID 1)
#
# Migrations are their own one-off command, never run on start: several
# instances start together, and an old instance must keep running while the
# new release migrates (docs/operations.md). compose.yaml runs it all: the
# migration, two instances, PostgreSQL and an SMTP sink.
#
# Without AUTHZ_DATABASE_URL the database is a SQLite file under /var/lib/authz
# (mount a volume there to keep it). gunicorn: AUTHZ_BIND, AUTHZ_WORKERS,
# AUTHZ_THREADS below, or GUNICORN_CMD_ARGS / AUTHZ_GUNICORN_CONFIG.

# ---- build: the wheel, from exactly the sources it is made of ----
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# smoke: SOURCES (the same list)
COPY pyproject.toml setup.py MANIFEST.in README.md alembic.ini ./
COPY api ./api
COPY authz ./authz
COPY cli ./cli
COPY models ./models
COPY migrations ./migrations
COPY policies ./policies
# smoke: "build the wheel" (setup.py puts policies/, migrations/ and
# alembic.ini inside it as authz/_shipped/)
RUN python -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# ---- runtime: that wheel and its dependencies, nothing else ----
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# smoke: "install the wheel into a fresh virtual environment"
COPY --from=build /dist /tmp/dist
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir /tmp/dist/authz_service-*.whl \
 && rm -rf /tmp/dist

RUN groupadd --system --gid 10001 authz \
 && useradd --system --uid 10001 --gid authz --home-dir /var/lib/authz \
        --no-create-home --shell /usr/sbin/nologin authz \
 && mkdir -p /var/lib/authz \
 && chown authz:authz /var/lib/authz \
 && chmod 0750 /var/lib/authz

# smoke: AUTHZ_VAR_DIR / AUTHZ_BIND / AUTHZ_WORKERS / AUTHZ_THREADS, run from a
# folder outside any checkout
ENV AUTHZ_VAR_DIR=/var/lib/authz \
    AUTHZ_BIND=0.0.0.0:8000 \
    AUTHZ_WORKERS=2 \
    AUTHZ_THREADS=4
WORKDIR /var/lib/authz
USER authz:authz

EXPOSE 8000

# Liveness only: an unready instance (database down, schema incompatible) is
# taken out by the load balancer from /health/ready, not restarted. The port is
# the first of AUTHZ_BIND's.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ['AUTHZ_BIND'].split(',')[0].rpartition(':')[2]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/health/live', timeout=4).status == 200 else 1)"]

# smoke: "authz serve in the background". Exec form, no shell: the authz
# process is the gunicorn master, PID 1, and gets the stop signal (SIGTERM:
# graceful shutdown). `docker run IMAGE db upgrade` runs the release step.
ENTRYPOINT ["authz"]
CMD ["serve"]
