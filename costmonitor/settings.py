"""Django settings for CostMonitor, read from the environment (and an optional `.env`).

Every variable is listed with its default in README.md ("Configuration").
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE lets deployments (and tests) point at another file; a missing file is simply skipped.
environ.Env.read_env(env.str("ENV_FILE", default=str(BASE_DIR / ".env")), overwrite=False)

# --- Core -----------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
            "(or DEBUG=true for local development)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
COSTMONITOR_VERSION = "1.0.0"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "costmonitor.apps.CostMonitorConfig",
    "budgets.apps.BudgetsConfig",
    "tracking.apps.TrackingConfig",
    "alerts.apps.AlertsConfig",
    "breakers.apps.BreakersConfig",
]

MIDDLEWARE = [
    "costmonitor.api.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "costmonitor.urls"
WSGI_APPLICATION = "costmonitor.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# Persistent connections with health checks: a new connection per request costs ~5x throughput.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
# Off by default: a check is a round trip at the start of every request that touches the database.
# Without it, a connection broken by a database restart fails one request (503 DATABASE_ERROR, which
# the SDK retries) and is then replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
# The recording and checking statements are prepared once per connection (costmonitor.db); turn off
# behind a transaction-mode pooler that does not keep prepared statements (PgBouncer < 1.21).
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_PREPARED_STATEMENTS:
    # Django's own cursors bind on the client and never prepare; only costmonitor.db's do.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web server and the worker share the embedded database.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and queue ------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("CACHE_URL")}
elif REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "costmonitor"}}

if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"]["BACKEND"] = "costmonitor.cache.ReusingRedisCache"

Q_CLUSTER = {
    "name": "costmonitor",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 60,
    "retry": 120,  # retry > timeout, so a slow task is never run twice at once
    "max_attempts": 5,
    "queue_limit": 100,
    "bulk": 10,
    "catch_up": False,  # a late monitor cycle runs once, not once per missed minute
    "save_limit": 1000,
    "ack_failures": True,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
Q_CLUSTER["sync"] = env.bool("Q_SYNC", default=False)

# --- Authentication -------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:overview"
LOGOUT_REDIRECT_URL = "login"

# Portal login lockout (django-axes), counted in the database so every process shares it.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("LOGIN_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)

# --- Internationalisation and time ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
BUDGET_TIMEZONE = env.str("BUDGET_TIMEZONE", default="UTC")

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Email ----------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="costmonitor@localhost")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- Security (production values when DEBUG is off) -----------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=2_621_440)

# --- Secrets at rest ------------------------------------------------------------------------
# Fernet key(s) for channel secrets; comma-separated for rotation (first encrypts). Without one,
# a key is derived from SECRET_KEY so that the embedded default works out of the box.
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY", default=[])

# --- Budgets and alerts ---------------------------------------------------------------------
DEFAULT_DAILY_BUDGET = env.str("DEFAULT_DAILY_BUDGET", default="50")
DEFAULT_MONTHLY_BUDGET = env.str("DEFAULT_MONTHLY_BUDGET", default="1000")
RESERVATION_TTL_SECONDS = env.int("RESERVATION_TTL_SECONDS", default=900)
# Rows each budget period's spend counter is spread over: concurrent recordings add to different rows
# instead of queueing on one row lock (held until each commit is flushed to disk). Checks sum them.
SPEND_COUNTER_SLOTS = max(1, min(env.int("SPEND_COUNTER_SLOTS", default=8), 64))
ALERTS_ALLOW_PRIVATE_URLS = env.bool("ALERTS_ALLOW_PRIVATE_URLS", default=False)
ALERT_SEND_TIMEOUT_SECONDS = env.float("ALERT_SEND_TIMEOUT_SECONDS", default=10.0)
# Alert delivery: bounded attempts with exponential backoff (base × 2^(n-1), capped). A delivery
# claimed longer ago than ALERT_CLAIM_TIMEOUT_SECONDS is taken to be abandoned by a dead worker
# (keep it above Q_CLUSTER's task timeout, so a slow but live send is never sent twice).
ALERT_MAX_ATTEMPTS = env.int("ALERT_MAX_ATTEMPTS", default=6)
ALERT_RETRY_BASE_SECONDS = env.int("ALERT_RETRY_BASE_SECONDS", default=30)
ALERT_RETRY_MAX_SECONDS = env.int("ALERT_RETRY_MAX_SECONDS", default=3600)
ALERT_CLAIM_TIMEOUT_SECONDS = env.int("ALERT_CLAIM_TIMEOUT_SECONDS", default=180)
ALERT_FORECAST_MIN_CONFIDENCE = env.float("ALERT_FORECAST_MIN_CONFIDENCE", default=0.2)
# Anomaly alerts: the last window's spend above ANOMALY_FACTOR × the median window of the baseline days.
ANOMALY_FACTOR = env.float("ANOMALY_FACTOR", default=5.0)
ANOMALY_MIN_SPEND = env.str("ANOMALY_MIN_SPEND", default="1.00")
ANOMALY_WINDOW_MINUTES = env.int("ANOMALY_WINDOW_MINUTES", default=15)
ANOMALY_BASELINE_DAYS = env.int("ANOMALY_BASELINE_DAYS", default=7)

# --- REST API -------------------------------------------------------------------------------
RATE_LIMITS = {
    "dashboard": env.str("RATE_LIMIT_DASHBOARD", default="100/min"),
    "budget_checks": env.str("RATE_LIMIT_BUDGET_CHECKS", default="1000/min"),
    "alerts": env.str("RATE_LIMIT_ALERTS", default="10/min"),
    "tracking": env.str("RATE_LIMIT_TRACKING", default="none"),
    "auth_failures": env.str("RATE_LIMIT_AUTH_FAILURES", default="20/min"),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "costmonitor.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "costmonitor.api.envelope.EnvelopeJSONRenderer",
        "costmonitor.api.envelope.EnvelopeBrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["costmonitor.api.parsers.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "costmonitor.api.negotiation.ApiContentNegotiation",
    "EXCEPTION_HANDLER": "costmonitor.api.exceptions.envelope_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "COERCE_DECIMAL_TO_STRING": False,
    # Client addresses (auth-failure throttling) come from REMOTE_ADDR unless the operator says how
    # many trusted proxies append to X-Forwarded-For; otherwise a client could pick its own address.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "CostMonitor API",
    "DESCRIPTION": "Monitor and enforce LLM API spend. Every answer is wrapped in the envelope "
    '`{"status", "data"|"error", "meta"}`.',
    "VERSION": COSTMONITOR_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "costmonitor.api.schema.wrap_responses_in_envelope",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "costmonitor.api.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "axes": {"level": "WARNING"},
    },
}
