"""Settings for the studio: one file, read from the environment, runnable with none of it.

With no environment at all the studio runs on SQLite under var/, the kombu filesystem
broker under var/broker, media under var/media and the sandbox route.
"""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise ImproperlyConfigured(f"Set the environment variable {name}.")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}."
    )


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {raw!r}.") from None


def env_decimal(name: str, default: str) -> Decimal:
    raw = os.environ.get(name, default)
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be a decimal number; got {raw!r}.") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
_DEV_SECRET = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else None)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set to a real secret when DEBUG is off.")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
    "studio",
    "studio.sandbox",
    "review",
    "campaigns",
    "api",
    "ninja",  # the API docs' own static files (no CDN, so the CSP holds)
]

MIDDLEWARE = [
    # Outermost: whatever answers an error under /sandbox/v1/ (the URL resolver, a method
    # check, the body limit, an exception) answers it in OpenAI's error shape.
    "studio.sandbox.middleware.OpenAIErrorMiddleware",
    # The same for the REST API (/api/) and the OpenAI door (/v1/), each in its own shape.
    "api.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "studio.middleware.StaticFilesMiddleware",  # WhiteNoise, sync and async
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "studio.middleware.RequestBodyLimitMiddleware",
    "studio.middleware.ControlCharacterMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "studio.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'studio.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
SQLITE_ENGINES = ("django.db.backends.sqlite3", "config.sqlite")
if DATABASES["default"]["ENGINE"] in SQLITE_ENGINES:
    # Django's backend with the process's writers taking turns (see config/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "config.sqlite"
    # The worker and the web process share the file: wait for locks instead of failing,
    # and keep the test database on disk so a worker process can open it too. WAL lets
    # readers go on while one writer commits; NORMAL sync is safe in WAL (a power cut may
    # lose the last commits, never corrupt the file).
    DATABASES["default"]["OPTIONS"] = {
        # Seconds a writer waits for the lock: a burst of a thousand calls finishing at
        # once queues for it (issue 16 saw "database is locked" past 500 in flight at 20 s).
        "timeout": env_int("SQLITE_TIMEOUT_SECONDS", 120),
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DATABASE_POOL", True
):
    # One psycopg pool per process: a thread takes a connection for its queries and gives
    # it back when Django closes it (end of a request or task, and before every provider
    # call), so a worker with thousands of calls in flight holds at most max_size.
    # Persistent connections and a pool exclude each other in Django.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
        # Seconds a thread waits for a free connection before PoolTimeout.
        "timeout": env_int("DATABASE_POOL_TIMEOUT", 60),
        # Connections idle this long are closed (seconds), so a quiet host holds few.
        "max_idle": env_int("DATABASE_POOL_MAX_IDLE", 120),
    }
    # CONN_HEALTH_CHECKS (on above) makes Django give the pool its connection check: one
    # whose backend died while it sat in the pool is replaced before anyone gets it.

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # django-axes counts failed logins and locks out a username from an address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind a proxy, name the header that carries the client address (e.g. X-Forwarded-For).
AXES_IPWARE_META_PRECEDENCE_ORDER = env_list("AXES_IP_HEADERS", "REMOTE_ADDR")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "studio:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

# Files: local media by default; S3 (or an S3-compatible server) when a bucket is named.
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 300),
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Campaigns: approved files published to an S3 prefix (a bucket of their own) when named.
CAMPAIGN_PUBLISH_BUCKET = env_str("CAMPAIGN_PUBLISH_BUCKET", "")
CAMPAIGN_PUBLISH_PREFIX = env_str("CAMPAIGN_PUBLISH_PREFIX", "campaigns")
if CAMPAIGN_PUBLISH_BUCKET:
    STORAGES["campaign_publish"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CAMPAIGN_PUBLISH_BUCKET,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
            "default_acl": None,
            "file_overwrite": True,
        },
    }

# Celery: the row in the database says what happened; the broker only carries ids.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        # Seconds between looks at an empty queue folder: a submitted request waits for the
        # worker's next look (kombu's default is 1 s; a look is one directory listing).
        "polling_interval": float(env_str("BROKER_POLLING_INTERVAL", "0.1")),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, writing each message whole before it is seen (see
    # config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:FilesystemTransport"
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport with a guard so a worker reconnects after Redis restarts
    # instead of exiting (see config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "studio")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# One task makes one provider call (route timeout, default 150 s) and stores its images.
# Soft and hard limits sit above any route timeout; the broker's visibility timeout above both.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660)
# Ack after the task ran, and give a task back when its worker dies, so no id is lost;
# the row claim makes a second delivery harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# How often retention deletes the files of outputs past their delete-after date.
RETENTION_INTERVAL_SECONDS = env_int("RETENTION_INTERVAL_SECONDS", 3600)
# How often the sweep settles forgotten rows (ledger_check allows two of these past a lease).
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    "sweep-requests": {
        "task": "studio.tasks.sweep_requests",
        "schedule": float(SWEEP_INTERVAL_SECONDS),
    },
    "delete-expired-outputs": {
        "task": "studio.tasks.delete_expired_outputs",
        "schedule": float(RETENTION_INTERVAL_SECONDS),
    },
    "poll-campaign-batches": {
        "task": "campaigns.tasks.poll_campaign_batches",
        "schedule": float(env_int("CAMPAIGN_BATCH_POLL_SECONDS", 30)),
    },
    "release-campaign-rows": {
        "task": "campaigns.tasks.release_campaign_rows",
        "schedule": float(env_int("CAMPAIGN_RELEASE_INTERVAL_SECONDS", 5)),
    },
    "refresh-audit-rollups": {
        "task": "review.tasks.refresh_audit_rollups",
        "schedule": float(env_int("AUDIT_ROLLUP_INTERVAL_SECONDS", 600)),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker waits out a broker outage of any length (0 = retry forever) instead of exiting
# after Celery's default 100 tries; the calls it is making go on meanwhile.
CELERY_BROKER_CONNECTION_MAX_RETRIES = env_int("CELERY_BROKER_CONNECTION_MAX_RETRIES", 0) or None
# Cancelling a call in flight when the broker goes would throw away an answer the provider
# may already have billed; the call finishes and the row records it.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Tests and one-off scripts may run tasks in-process.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# The sandbox route is served by this app; the worker reaches it over HTTP like any provider.
SANDBOX_BASE_URL = env_str("SANDBOX_BASE_URL", "http://127.0.0.1:8000/sandbox/v1")
# On by default only with DEBUG: in production the sandbox must be asked for.
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", DEBUG)
# When set, the sandbox answers only this bearer key (its route sends it from SANDBOX_API_KEY).
SANDBOX_API_KEY = env_str("SANDBOX_API_KEY", "")
# The sandbox's Batch API runs a batch once it is this old (seconds) and retrieved.
SANDBOX_BATCH_SECONDS = env_int("SANDBOX_BATCH_SECONDS", 1)
# In production (DEBUG off) the sandbox answers nobody until SANDBOX_API_KEY is set; in
# development any bearer key will do.
SANDBOX_KEY_REQUIRED = not DEBUG
# This process serves the sandbox alone (`docker run IMAGE sandbox`): its own gunicorn with
# threads, so slow fake calls never hold a web worker.
SANDBOX_PROCESS = env_bool("SANDBOX_PROCESS", False)
if SANDBOX_PROCESS and not SANDBOX_ENABLED:
    raise ImproperlyConfigured("SANDBOX_PROCESS=1 serves the sandbox: set SANDBOX_ENABLED=1 too.")
if SANDBOX_PROCESS:
    # Its own URLconf: the sandbox and /healthz, nothing of the studio.
    ROOT_URLCONF = "config.sandbox_urls"
# The studio's web process serves the sandbox too: handy in development and tests; in
# production the sandbox runs as its own process.
SANDBOX_IN_WEB = env_bool("SANDBOX_IN_WEB", DEBUG)
# The web server's per-request timeout (gunicorn --timeout; the image passes this value, and
# gunicorn's own default is 30 s). Every wait a sandbox directive asks for (latency, timeout,
# the pace of a stream) ends within SANDBOX_MAX_LATENCY_SECONDS, three quarters of it by
# default, so a slow fake call answers (504 for [sandbox:timeout]) before the server kills it.
WEB_TIMEOUT_SECONDS = env_int("WEB_TIMEOUT_SECONDS", 30)
SANDBOX_MAX_LATENCY_SECONDS = float(
    env_decimal("SANDBOX_MAX_LATENCY_SECONDS", str(WEB_TIMEOUT_SECONDS * 3 / 4))
)
if not 0 <= SANDBOX_MAX_LATENCY_SECONDS < WEB_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"SANDBOX_MAX_LATENCY_SECONDS ({SANDBOX_MAX_LATENCY_SECONDS:g}) must be at least 0 and "
        f"below WEB_TIMEOUT_SECONDS ({WEB_TIMEOUT_SECONDS}), so slow sandbox calls answer "
        "before the web server kills them."
    )
# Responses kept for `previous_response_id`, in the database so any process answers a
# follow-up; older ones are forgotten.
SANDBOX_RESPONSE_RETENTION_HOURS = env_int("SANDBOX_RESPONSE_RETENTION_HOURS", 24)

# Retries: exponential backoff with full jitter between these bounds, per attempt.
RETRY_BASE_SECONDS = env_decimal("RETRY_BASE_SECONDS", "2")
RETRY_MAX_SECONDS = env_decimal("RETRY_MAX_SECONDS", "60")
MAX_ATTEMPTS_PER_REQUEST = env_int("MAX_ATTEMPTS_PER_REQUEST", 6)
# A running row is its worker's for the route timeout plus this; then the sweep settles it.
LEASE_GRACE_SECONDS = env_int("LEASE_GRACE_SECONDS", 120)
# A queued row nobody picked up this long after it was due is sent to the broker again.
QUEUED_STALE_SECONDS = env_int("QUEUED_STALE_SECONDS", 60)
STORAGE_RETRIES = env_int("STORAGE_RETRIES", 3)

# Output-token allowance added to estimates for each partial preview image.
PARTIAL_IMAGE_OUTPUT_TOKENS = env_int("PARTIAL_IMAGE_OUTPUT_TOKENS", 100)

REQUESTS_PER_PAGE = env_int("REQUESTS_PER_PAGE", 20)

# Review: how long "being reviewed by ..." holds an output; OCR assist when tesseract exists.
REVIEW_CLAIM_MINUTES = env_int("REVIEW_CLAIM_MINUTES", 15)
TESSERACT_CMD = env_str("TESSERACT_CMD", "tesseract")
# tesseract processes one worker runs at once (each held to one thread).
OCR_PROCESSES = env_int("OCR_PROCESSES", os.cpu_count() or 1)
# Read every final output with OCR in a background task as soon as it is stored.
REVIEW_OCR_ON_STORE = env_bool("REVIEW_OCR_ON_STORE", True)
# Outputs are deleted this many days after creation unless their route says otherwise.
OUTPUT_RETENTION_DAYS = env_int("OUTPUT_RETENTION_DAYS", 90)

# Production hardening: on whenever DEBUG is off.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
# The sandbox process is reached by the workers inside the deployment, over plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG and not SANDBOX_PROCESS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Content Security Policy: everything from this origin, no inline script or style unless it
# carries the request's nonce, no eval; images may be blob:/data: (the mask painter).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Request size limits, checked before a body is read. Uploads stream to disk past the
# in-memory size; the whole body may hold 16 images of 50 MB and a mask of 4 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 200)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 20)
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 16 * 50 * 1024 * 1024 + 8 * 1024 * 1024)

# Connections each route's SDK client may open at once (one per call in flight), and how
# many idle ones it keeps for the next calls.
PROVIDER_MAX_CONNECTIONS = env_int("PROVIDER_MAX_CONNECTIONS", 5000)
PROVIDER_MAX_KEEPALIVE = env_int("PROVIDER_MAX_KEEPALIVE", 200)

# Submissions per user per minute; a flood beyond it is answered 429.
SUBMISSIONS_PER_MINUTE = env_int("SUBMISSIONS_PER_MINUTE", 20)
# Campaigns: rows in one table; campaign rows with the workers at once (all users), and at
# most this many per user (each waiting user gets an equal share of the first).
CAMPAIGN_MAX_ROWS = env_int("CAMPAIGN_MAX_ROWS", 10_000)
CAMPAIGN_ROWS_IN_FLIGHT = env_int("CAMPAIGN_ROWS_IN_FLIGHT", 8)
CAMPAIGN_ROWS_PER_USER = env_int("CAMPAIGN_ROWS_PER_USER", 4)

# The OpenAI-compatible door at /v1/ (api/door.py): the route it submits to by default
# (empty: the sandbox when enabled, else the first enabled route), how long a call waits for
# the worker before answering 504 (the request goes on), how often waiting calls look (one
# query for all), and how many of its calls use the database at once per web process.
OPENAI_DOOR_ROUTE = env_str("OPENAI_DOOR_ROUTE", "")
OPENAI_DOOR_WAIT_SECONDS = env_int("OPENAI_DOOR_WAIT_SECONDS", 600)
OPENAI_DOOR_POLL_SECONDS = env_int("OPENAI_DOOR_POLL_MILLISECONDS", 50) / 1000
OPENAI_DOOR_DB_CONCURRENCY = env_int("OPENAI_DOOR_DB_CONCURRENCY", 10)
# Webhook deliveries (api/webhooks.py): tries in all, backoff between them, answer timeout.
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6)
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 10)
WEBHOOK_RETRY_MAX_SECONDS = env_int("WEBHOOK_RETRY_MAX_SECONDS", 3600)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
if DATABASES["default"]["ENGINE"] in SQLITE_ENGINES:
    # The audit's covering index on requests carries INCLUDE columns only on PostgreSQL;
    # SQLite makes it a plain index, which is all the embedded setup needs.
    SILENCED_SYSTEM_CHECKS.append("models.W040")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"one_line_403": {"()": "studio.logfilters.OneLineForbidden"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        # Django's own handlers would print its records a second time beside the root's.
        "django": {"handlers": [], "level": env_str("LOG_LEVEL", "INFO"), "propagate": True},
        "django.request": {"filters": ["one_line_403"]},
    },
}
