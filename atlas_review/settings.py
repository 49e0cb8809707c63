"""Settings for Atlas Review. Every value comes from the environment, with safe defaults.

One settings module (no dev/prod split): DEBUG=False is production, and then a real
SECRET_KEY is required.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be True or False, got {value!r}")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envfloat(name: str, default: str) -> float:
    value = os.getenv(name, default)
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def envsecret(name: str, default: str = "") -> str:
    """Read NAME, or the contents of the file named by NAME_FILE (Docker/K8s secrets)."""
    path = os.getenv(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.getenv(name, default)


DEBUG = envbool("DEBUG", "False")
_INSECURE_KEY = "insecure-dev-key-only-for-debug-and-tests"
SECRET_KEY = envsecret("SECRET_KEY", _INSECURE_KEY if DEBUG else "")
if not SECRET_KEY or (not DEBUG and SECRET_KEY == _INSECURE_KEY) or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 32 characters "
        "(or run with DEBUG=True for local development)."
    )

ALLOWED_HOSTS = [h for h in os.getenv("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
PUBLIC_BASE_URL = os.getenv("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "atlas_review.atlas",
    "atlas_review.flows",
    "atlas_review.callbacks",
    "atlas_review.checks",  # before review: its ingest receiver must run first
    "atlas_review.review",
    "atlas_review.overview",
    "atlas_review.audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "atlas_review.urls"
WSGI_APPLICATION = "atlas_review.wsgi.application"

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
                "django.template.context_processors.csp",
            ],
        },
    },
]

# SQLite only for the zero-setup quick start; tests, CI and production use PostgreSQL.
DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DB_CONN_MAX_AGE", "60"),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The demo runs the web server, the poller and callbacks in threads of one process.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"  # the root opens the review queues
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): lock a username+IP after repeated failures.
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", "5")
AXES_COOLOFF_TIME = envint("AXES_COOLOFF_HOURS", "1")
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ENABLED = envbool("AXES_ENABLED", "True")

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.getenv("TIME_ZONE", "Asia/Kolkata")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG or envbool("TESTING", "False")
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", str(BASE_DIR / "media")))

CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["CACHE_URL"],
        }
        if os.getenv("CACHE_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Security headers. Production (DEBUG=False) behind TLS gets secure cookies and HSTS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", str(not DEBUG))
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", str(not DEBUG))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000")
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Django's own CSP: scripts only from our origin (htmx is in static/), no inline script.
# Document images come from Atlas's pre-signed URLs, so img-src allows https.
SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "https:", "http:", "data:"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
}

# --- Atlas -----------------------------------------------------------------------------
ATLAS_BASE_URL = os.getenv("ATLAS_BASE_URL", "http://127.0.0.1:8765/v3/verification").rstrip("/")
ATLAS_DOCSTREAM_URL = os.getenv("ATLAS_DOCSTREAM_URL", "http://127.0.0.1:8765/v1/docstream").rstrip(
    "/"
)
ATLAS_CLIENT_ID = os.getenv("ATLAS_CLIENT_ID", "atlas-review-demo")
ATLAS_CLIENT_SECRET = envsecret("ATLAS_CLIENT_SECRET", "demo-secret-change-me")
ATLAS_PRODUCT_TYPE = os.getenv("ATLAS_PRODUCT_TYPE", "PROD_CDL")
ATLAS_V1_PRODUCT_TYPE = os.getenv("ATLAS_V1_PRODUCT_TYPE", "POC_CDL")
ATLAS_TIMEOUT_SECONDS = envfloat("ATLAS_TIMEOUT_SECONDS", "15")
ATLAS_MAX_RETRIES = envint("ATLAS_MAX_RETRIES", "3")
ATLAS_POLL_INTERVAL_SECONDS = envint("ATLAS_POLL_INTERVAL_SECONDS", "7")
ATLAS_GIVE_UP_SECONDS = envint("ATLAS_GIVE_UP_SECONDS", str(6 * 3600))
ATLAS_SWEEP_INTERVAL_SECONDS = envint("ATLAS_SWEEP_INTERVAL_SECONDS", "10")

# Credentials Atlas presents at our /atlas/auth (more pairs are managed in the admin).
ATLAS_CALLBACK_CLIENT_ID = os.getenv("ATLAS_CALLBACK_CLIENT_ID", "")
ATLAS_CALLBACK_CLIENT_SECRET = envsecret("ATLAS_CALLBACK_CLIENT_SECRET", "")
ATLAS_CALLBACK_TOKEN_TTL = envint("ATLAS_CALLBACK_TOKEN_TTL", "3600")
ATLAS_CALLBACK_MAX_BYTES = envint("ATLAS_CALLBACK_MAX_BYTES", str(10 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = ATLAS_CALLBACK_MAX_BYTES + 1024
# Failed /atlas/auth attempts per client address before 429, and the window they count in.
ATLAS_CALLBACK_AUTH_FAILURE_LIMIT = envint("ATLAS_CALLBACK_AUTH_FAILURE_LIMIT", "10")
ATLAS_CALLBACK_AUTH_FAILURE_WINDOW = envint("ATLAS_CALLBACK_AUTH_FAILURE_WINDOW", "300")

# Review defaults (administrators override per document type / field in the admin).
REVIEW_CONFIDENCE_THRESHOLD = envfloat("REVIEW_CONFIDENCE_THRESHOLD", "0.80")
REVIEW_SIMILARITY_THRESHOLD = envint("REVIEW_SIMILARITY_THRESHOLD", "90")
REVIEW_SIMILARITY_HIGH_PRIORITY = envint("REVIEW_SIMILARITY_HIGH_PRIORITY", "70")
REVIEW_QA_SAMPLE_PERCENT = envfloat("REVIEW_QA_SAMPLE_PERCENT", "2")
REVIEW_CLAIM_MINUTES = envint("REVIEW_CLAIM_MINUTES", "30")
# Hours an item may wait in a queue before the overview counts it late (per-queue overrides
# in the admin: overview.QueueSla).
REVIEW_SLA_HOURS = envint("REVIEW_SLA_HOURS", "24")
# The supervisor overview keeps its history figures this long (its live ones never).
OVERVIEW_CACHE_SECONDS = envint("OVERVIEW_CACHE_SECONDS", "120")
EXPORT_MASK_PERSONAL_DATA = envbool("EXPORT_MASK_PERSONAL_DATA", "True")
# Larger exports requested from the web page run as a background job (audit app).
EXPORT_INLINE_MAX_ROWS = envint("EXPORT_INLINE_MAX_ROWS", "50000")
# Reuse alerts: the same IMEI/invoice/Aadhaar/PAN in another application seen within N days.
REUSE_WINDOW_DAYS = envint("REUSE_WINDOW_DAYS", "180")

# --- Celery ----------------------------------------------------------------------------
# Without a broker (quick start) tasks run inline; production sets Redis.
CELERY_BROKER_URL = os.getenv("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Redis redelivers unacked tasks after this; must exceed the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", "3600")
}
CELERY_BEAT_SCHEDULE = {
    "atlas-sweep": {
        "task": "atlas_review.flows.tasks.sweep",
        "schedule": float(ATLAS_SWEEP_INTERVAL_SECONDS),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
