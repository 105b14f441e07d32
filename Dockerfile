# syntax=docker/dockerfile:1.7
# One image for the web process (default command), the sandbox and the Celery worker:
#   docker run IMAGE                      -> gunicorn on :8000
#   docker run IMAGE asgi                 -> the same web under ASGI (uvicorn workers): the
#                                            OpenAI door at /v1/ waits without a thread
#   docker run IMAGE sandbox              -> the sandbox API alone on :8001 (threads), so slow
#                                            fake calls never hold a web worker
#   docker run IMAGE worker               -> celery worker, thread pool
#   docker run IMAGE beat                 -> the periodic sweep (run exactly one)
# Configure it with the variables in README.md (DATABASE_URL, CELERY_BROKER_URL, S3 ...).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /venv
COPY pyproject.toml ./
# Install the pinned dependencies first so code changes do not reinstall them.
RUN /venv/bin/pip install --upgrade pip \
 && /venv/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > requirements.txt \
 && /venv/bin/pip install -r requirements.txt
COPY . .
RUN DEBUG=0 SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost \
    /venv/bin/python manage.py collectstatic --noinput

FROM python:3.11-slim-bookworm AS runtime
# WEB_TIMEOUT_SECONDS: gunicorn's --timeout here, and what the settings keep every sandbox
# wait below (SANDBOX_MAX_LATENCY_SECONDS, 45 s with this value).
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DEBUG=0 VAR_DIR=/app/var STATIC_ROOT=/app/staticfiles WEB_TIMEOUT_SECONDS=60
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl tesseract-ocr \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 studio
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build --chown=studio:studio /app /app
RUN mkdir -p /app/var && chown studio:studio /app/var
USER studio
EXPOSE 8000 8001
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/studio-healthcheck"]
COPY --chmod=755 <<'SH' /usr/local/bin/studio-healthcheck
#!/bin/sh
# The web and the sandbox answer /healthz (it touches the database); a worker answers a
# broker ping; beat is healthy while its process (PID 1) lives.
if [ -f /tmp/studio-beat ]; then
  exec kill -0 1
fi
if [ -f /tmp/studio-sandbox ]; then
  exec curl -fsS "http://127.0.0.1:${SANDBOX_PORT:-8001}/healthz"
fi
if [ -f /tmp/studio-worker ]; then
  exec celery -A config inspect ping --destination "celery@$(hostname)" --timeout 5
fi
exec curl -fsS "http://127.0.0.1:${PORT:-8000}/healthz"
SH
COPY --chmod=755 <<'SH' /usr/local/bin/studio-entrypoint
#!/bin/sh
set -e
case "$1" in
  worker) shift; touch /tmp/studio-worker; exec celery -A config worker --pool threads --concurrency "${WORKER_CONCURRENCY:-100}" --loglevel INFO "$@" ;;
  beat) shift; touch /tmp/studio-beat; exec celery -A config beat --loglevel INFO --schedule /app/var/celerybeat-schedule "$@" ;;
  migrate) exec python manage.py migrate --noinput ;;
  web|"") exec gunicorn config.wsgi --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_CONCURRENCY:-3}" --timeout "${WEB_TIMEOUT_SECONDS:-30}" --limit-request-line 8190 --access-logfile - ;;
  asgi) shift; exec gunicorn config.asgi -k uvicorn_worker.UvicornWorker --bind "0.0.0.0:${PORT:-8000}" --workers "${WEB_CONCURRENCY:-3}" --timeout "${WEB_TIMEOUT_SECONDS:-30}" --access-logfile - "$@" ;;
  sandbox) shift; touch /tmp/studio-sandbox; export SANDBOX_PROCESS=1; exec gunicorn config.wsgi --bind "0.0.0.0:${SANDBOX_PORT:-8001}" --worker-class gthread --workers "${SANDBOX_WORKERS:-2}" --threads "${SANDBOX_THREADS:-32}" --timeout "${WEB_TIMEOUT_SECONDS:-30}" --access-logfile - "$@" ;;
  *) exec "$@" ;;
esac
SH
ENTRYPOINT ["/usr/local/bin/studio-entrypoint"]
CMD ["web"]
