# Authorization service image.
#
#   docker build -t authz .
#   docker run -p 8000:8000 -v authz-data:/var/lib/authz authz
#
# The SQLite database (and mail files) live under /var/lib/authz; mount a volume
# there to keep them, or set AUTHZ_DATABASE_URL to use PostgreSQL.

# ---- build: install the package (not editable, no test extras) into a venv ----
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY authz ./authz
COPY models ./models
RUN pip install --no-cache-dir .

# The code looks for alembic.ini, migrations/ and policies/ beside its packages
# (authz.config.ROOT, the folder above the authz package), which for an
# installed package is site-packages: put them there, and check they are found.
# (`python -P`: import the installed authz, not the source copy in this folder.)
COPY alembic.ini ./
COPY migrations ./migrations
COPY policies ./policies
RUN root="$(python -P -c 'from authz.config import ROOT; print(ROOT)')" \
 && case "$root" in /opt/venv/*) ;; *) echo "unexpected ROOT $root" >&2; exit 1;; esac \
 && cp -R alembic.ini migrations policies "$root"/ \
 && find "$root/migrations" "$root/policies" -name __pycache__ -prune -exec rm -rf {} + \
 && python -P -c 'from authz.config import ROOT; \
assert (ROOT / "alembic.ini").is_file() and (ROOT / "migrations" / "env.py").is_file() \
and (ROOT / "policies").is_dir(), ROOT'

# ---- runtime ----
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTHZ_VAR_DIR=/var/lib/authz

RUN groupadd --system --gid 10001 authz \
 && useradd --system --uid 10001 --gid authz --home-dir /var/lib/authz \
        --no-create-home --shell /usr/sbin/nologin authz \
 && mkdir -p /var/lib/authz \
 && chown authz:authz /var/lib/authz \
 && chmod 0750 /var/lib/authz

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/authz
USER authz:authz

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status == 200 else 1)"]

CMD ["sh", "-c", "authz db upgrade && exec authz serve --bind 0.0.0.0:8000 --workers 2"]
