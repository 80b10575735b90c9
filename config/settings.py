"""Conversa settings, read from the environment (every variable is listed in .env.example)."""

import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A developer's .env is read when present; real environment variables win over it.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Embedded mode keeps its SQLite file, media and generated secret under var/ (git-ignored).
VAR_DIR = Path(env.str("CONVERSA_VAR_DIR", default=str(BASE_DIR / "var")))


def _secret_key_from_var_dir() -> str:
    """Return a secret generated once for this checkout, so `make run` never uses a fixed key."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


# Production mode (issue: production): the settings `manage.py check --deploy` asks for, at the
# end of this file. Off in embedded mode (`make run`), which serves plain HTTP on loopback.
PRODUCTION = env.bool("PRODUCTION", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or _secret_key_from_var_dir()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = [host for host in env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]) if host]
CSRF_TRUSTED_ORIGINS = [origin for origin in env.list("CSRF_TRUSTED_ORIGINS", default=[]) if origin]

INSTALLED_APPS = [
    "config.apps.ConversaAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "crm",
    "providers",
    "messaging",
]

MIDDLEWARE = [
    "config.log_context.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "crm.middleware.CurrentOrganizationMiddleware",
    "config.db_router.PrimaryPinMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
                "crm.context_processors.current_organization",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------------------
# An empty variable (as in .env.example) means "use the default", like an unset one.
DATABASES = {
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'conversa.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file in embedded mode: WAL lets readers run beside the
    # writer, IMMEDIATE transactions take the write lock up front instead of failing half-way, and
    # the timeout makes a busy writer wait rather than raise "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's psycopg pool: a new connection per request or task cost more than the work itself
    # (measured in bench/outbound.py), and CONN_MAX_AGE leaks connections under ASGI (field
    # notes). Celery's prefork workers close the inherited pool in each child.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        "timeout": 10,
    }
# An optional read replica for read-heavy pages and API lists (config/db_router.py).
_replica_url = env.str("DATABASE_REPLICA_URL", default="")
if _replica_url:
    DATABASES["replica"] = env.db_url_config(_replica_url)
    DATABASES["replica"]["OPTIONS"] = dict(DATABASES["default"].get("OPTIONS", {}))
    # Tests never get a second test database: the replica alias reads the primary's.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["config.db_router.PrimaryReplicaRouter"]
# Seconds a browser reads from the primary after it changed something (the replica may lag).
REPLICA_PIN_SECONDS = env.int("REPLICA_PIN_SECONDS", default=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache, channels, Celery --------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="") or "redis://127.0.0.1:6379/0"

# Prefix of every key we keep in Redis (cache entries, circuit breaker state).
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="conversa")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": CACHE_KEY_PREFIX,
    }
}

# Measured on this machine class: the pub/sub layer delivers group sends ~5x faster than the
# default list-based layer (ARCHITECTURE.md). Pushes are at-most-once either way; clients catch up.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A Redis broker re-delivers a task not acknowledged within the visibility timeout (celery #3270),
# so every retry delay and task runtime must stay below it.
CELERY_BROKER_VISIBILITY_TIMEOUT = env.int("CELERY_BROKER_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_BROKER_VISIBILITY_TIMEOUT}
# Worker processes per queue (config/celery.py): sends, inbound side work (media, webhooks out), bulk.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
CELERY_INBOUND_CONCURRENCY = env.int("CELERY_INBOUND_CONCURRENCY", default=1)
CELERY_BULK_CONCURRENCY = env.int("CELERY_BULK_CONCURRENCY", default=1)
# The share of a bulk worker process's time bulk tasks may take (config/celery.py): after each one
# it rests, so a backlog never keeps a machine busy that also serves ingest and sends. 1: no rest.
BULK_WORK_SHARE = env.float("BULK_WORK_SHARE", default=0.15)
CELERY_TIMEZONE = "UTC"

# --- Providers -----------------------------------------------------------------------------------
# Where providers reach this installation (webhook URLs are built from it; Twilio signs it).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Seconds to connect to / wait for a provider; a worker never waits longer on one call.
PROVIDER_CONNECT_TIMEOUT = env.float("PROVIDER_CONNECT_TIMEOUT", default=3.05)
PROVIDER_READ_TIMEOUT = env.float("PROVIDER_READ_TIMEOUT", default=15.0)
# Temporary failures in a row that open a provider server's circuit, and how long it stays open.
PROVIDER_BREAKER_FAILURES = env.int("PROVIDER_BREAKER_FAILURES", default=5)
PROVIDER_BREAKER_RESET_SECONDS = env.int("PROVIDER_BREAKER_RESET_SECONDS", default=30)

# --- Outbox (issue: outbound) ---------------------------------------------------------------------
MESSAGE_MAX_ATTEMPTS = env.int("MESSAGE_MAX_ATTEMPTS", default=3)
# Capped exponential backoff between delivery attempts; the cap stays below the visibility timeout.
OUTBOX_RETRY_BASE_SECONDS = env.float("OUTBOX_RETRY_BASE_SECONDS", default=2.0)
OUTBOX_RETRY_MAX_SECONDS = env.float("OUTBOX_RETRY_MAX_SECONDS", default=300.0)
# A message queued or sending for longer than this is taken as lost by the broker and re-enqueued.
OUTBOX_STUCK_AFTER_SECONDS = env.int("OUTBOX_STUCK_AFTER_SECONDS", default=120)

# --- API (issue: integrator API) ---------------------------------------------------------------
REST_FRAMEWORK = {
    # Integrators send `Authorization: Bearer <API key>`; the browser's session (and HTTP Basic, for
    # quick trials with curl) keep working. API keys come first, so a 401 names Bearer.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "messaging.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["messaging.api.permissions.HasOrganization"],
    "DEFAULT_THROTTLE_CLASSES": ["messaging.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Every error, ours or DRF's, answers {"error": {"code", "message", "details"}}.
    "EXCEPTION_HANDLER": "messaging.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "messaging.api.schema.ConversaAutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Conversa API",
    "DESCRIPTION": (
        "The integrator API of Conversa. Authenticate with `Authorization: Bearer <API key>`. "
        'Every error answers `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChatStatus": "crm.models.Chat.Status",
        "MessageStatus": "messaging.models.Message.Status",
        "NumberState": "crm.models.WhatsAppNumber.State",
        "DeliveryStatus": "messaging.models.WebhookDelivery.Status",
        "WebhookEventType": "messaging.models.WEBHOOK_EVENT_TYPES",
    },
    # Swagger UI from drf-spectacular-sidecar's files under /static/: no CDN needed or reachable.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# A rotated key keeps working this long, so integrators can deploy the new one without downtime.
API_KEY_ROTATION_GRACE_SECONDS = env.int("API_KEY_ROTATION_GRACE_SECONDS", default=24 * 60 * 60)
# Signed webhooks to integrators: per-request timeout, attempts per delivery before it fails.
WEBHOOK_OUT_TIMEOUT_SECONDS = env.float("WEBHOOK_OUT_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_OUT_MAX_ATTEMPTS = env.int("WEBHOOK_OUT_MAX_ATTEMPTS", default=10)
# Off: webhooks go only to public addresses (set it off where several organizations share the
# installation, so none can reach its internal network). On by default for local receivers.
WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_OUT_ALLOW_PRIVATE_NETWORKS", default=True)

# --- Inbound (issue: inbound and real time) --------------------------------------------------------
# Webhook bodies above this are refused (413); Evolution's base64 media makes them large.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY_BYTES
MEDIA_DOWNLOAD_MAX_ATTEMPTS = env.int("MEDIA_DOWNLOAD_MAX_ATTEMPTS", default=5)
# A download still pending after this lost its task (its retries take less): the sweep enqueues it
# again; after twice this it is failed with a reason.
MEDIA_STUCK_AFTER_SECONDS = env.int("MEDIA_STUCK_AFTER_SECONDS", default=1800)
QR_CACHE_SECONDS = env.int("QR_CACHE_SECONDS", default=120)
WEBSOCKET_PING_SECONDS = env.int("WEBSOCKET_PING_SECONDS", default=25)

# --- Health, cleanup, statistics (issue: health and monitoring) ------------------------------------
# A connected number that received nothing for this long while its sends stay unacknowledged is
# "silent": restarted once through its provider, then flagged to its organization's admins.
SILENT_AFTER_MINUTES = env.int("SILENT_AFTER_MINUTES", default=30)
# Self-hosted numbers disconnected and unseen this long are removed from their server and archived.
NUMBER_ARCHIVE_AFTER_DAYS = env.int("NUMBER_ARCHIVE_AFTER_DAYS", default=90)
# Health check results older than this are pruned.
HEALTH_RETENTION_DAYS = env.int("HEALTH_RETENTION_DAYS", default=30)
# Succeeded webhook deliveries to integrators (and their attempt logs) older than this are pruned.
WEBHOOK_LOG_RETENTION_DAYS = env.int("WEBHOOK_LOG_RETENTION_DAYS", default=30)
# --- Inbox (issue: inbox pages) --------------------------------------------------------------------
# The largest attachment an agent may send (WhatsApp's own limit for audio and video is 16 MB).
INBOX_UPLOAD_MAX_BYTES = env.int("INBOX_UPLOAD_MAX_BYTES", default=16 * 1024 * 1024)
LOCALE_PATHS = [BASE_DIR / "locale"]

# --- Auth, i18n, files ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "crm:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("pt-br", "Português (Brasil)")]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
# The ASGI app serves /static/ itself unless a front server (nginx) does it in production.
SERVE_STATIC = env.bool("SERVE_STATIC", default=not PRODUCTION)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# --- Logging -------------------------------------------------------------------------------------
# Prometheus scrapes /metrics with this Bearer token; empty: /metrics answers 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# LOG_FORMAT=json: one JSON object a line with request, organization, message and task ids
# (config/log_context.py), for a log pipeline; plain: text for a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "config.log_context.ContextFilter"},
        "routine_beat": {"()": "config.log_context.RoutineBeatFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.log_context.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context", "routine_beat"],
        }
    },
    # A line per task received and per task succeeded says nothing our tasks' own lines do not;
    # failures are still logged (WARNING and ERROR).
    "loggers": {
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
# Workers log through the handler above (and its JSON), not through Celery's own root logger.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Production mode -----------------------------------------------------------------------------
if PRODUCTION:
    from django.core.exceptions import ImproperlyConfigured

    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be false when PRODUCTION is true.")
    if not env.str("SECRET_KEY", default=""):
        # Every machine must sign sessions with the same key; one generated per checkout would not be.
        raise ImproperlyConfigured("Set SECRET_KEY when PRODUCTION is true (the same on every machine).")
    # Behind an HTTPS proxy (config/deploy/nginx.conf) that says the original scheme.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load balancers and Prometheus call these over plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
