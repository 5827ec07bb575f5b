"""Petsite settings, all from the environment (django-environ), with safe defaults.

With nothing set, Petsite runs embedded: SQLite and media files under ``var/`` and a
Redis server of its own on a unix socket there (``petsite/broker.py``; ``bin/run`` starts
it), so a fresh clone needs no service installed. Setting
``DATABASE_URL=postgres://...``, ``CELERY_BROKER_URL=redis://...`` and
``AWS_STORAGE_BUCKET_NAME`` moves the same code to PostgreSQL, Redis and S3.
"""
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django_guid.integrations import CeleryIntegration

from petsite import broker, logs

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Optional; the real environment wins. PETSITE_ENV_FILE names another file (tests: none).
environ.Env.read_env(env("PETSITE_ENV_FILE", default=str(BASE_DIR / ".env")))

VAR_DIR = Path(env("PETSITE_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
# With DEBUG, an unknown address still gets the site's 404 page (petsite.errors); 1 shows
# Django's technical page instead, which lists every URL pattern (for developers).
PETSITE_TECHNICAL_404 = env.bool("PETSITE_TECHNICAL_404", default=False)
# The key signs sessions and password-reset links: a default anyone can read would let
# them forge both, so only a DEBUG run may go without one.
SECRET_KEY = env("SECRET_KEY", default="django-insecure-dev-only-set-SECRET_KEY-in-production" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set it in the environment or in the .env file to a long random value, "
        "for example the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))' "
        "(a development run may set DEBUG=1 instead, as bin/run does)."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_filters",
    "django_guid",
    "axes",
    "csp",  # its system checks catch settings in the pre-4.0 format
    "django_ratelimit",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "registry",
    "classifier",
    "training",
    "api",
    "webhooks",
]

MIDDLEWARE = [
    "django_guid.middleware.guid_middleware",  # first: every later log line carries the request id
    "petsite.health.ProbeMiddleware",  # /healthz and /readyz, before host checks and the HTTPS redirect
    "petsite.logs.RequestLogMiddleware",  # one line per request
    # 503 with Retry-After instead of 500 while the database, cache or broker is away
    # (petsite/errors.py); outside the rest, so that it sees what they raise.
    "petsite.errors.OutageMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The API's RateLimit, ETag/304, Cache-Control and Vary headers, errors included (api/headers.py).
    "api.headers.ApiHeadersMiddleware",
    "petsite.middleware.RequestSizeLimitMiddleware",  # 413 before any body is read; after auth, for the page's menu
    "django.contrib.messages.middleware.MessageMiddleware",
    # The site's 404 page with DEBUG too; after CommonMiddleware (its slash redirect) and
    # the user's and messages' middleware (the page's menu).
    "petsite.errors.NotFoundPageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "petsite.urls"
WSGI_APPLICATION = "petsite.wsgi.application"

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

# --- Database -------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # The web process and the worker write to one file: wait for locks instead of failing,
    # and keep the test database in a file too, so a worker process can open it.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 30, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
# A web or worker process keeps its database connection for CONN_MAX_AGE seconds instead of
# opening one per request: on PostgreSQL that halved the gallery's time (bench/gallery.py).
# The health check replaces a connection the server closed meanwhile.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first: it refuses a username and address that failed too often before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "classifier:gallery"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# One date style, "3 Dec 2026, 16:37", everywhere the admin included (petsite/formats/en/formats.py).
FORMAT_MODULE_PATH = ["petsite.formats"]

# --- HTTPS ------------------------------------------------------------------------------
# Off for the embedded run (plain HTTP on 127.0.0.1). PETSITE_HTTPS=1, for a site served
# over HTTPS through a proxy, turns on all of it; each setting can still be set alone.
PETSITE_HTTPS = env.bool("PETSITE_HTTPS", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PETSITE_HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PETSITE_HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PETSITE_HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if PETSITE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PETSITE_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PETSITE_HTTPS)
# The proxy tells Django that the browser used HTTPS. Trust the header only behind a
# proxy that sets it: anywhere else a client could send it and skip the redirect.
if env.bool("PETSITE_PROXY_SSL_HEADER", default=PETSITE_HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# A refused CSRF check gets the site's page (or problem+json under /api/), not Django's bare one.
CSRF_FAILURE_VIEW = "petsite.errors.csrf_failure"

# --- Cache ------------------------------------------------------------------------------
# The upload rate limit counts here, so every web process must share it: the default file
# cache is shared by the processes of one machine; several machines share Redis
# (CACHE_URL=redis://127.0.0.1:6379/1).
CACHES = {"default": env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}
SILENCED_SYSTEM_CHECKS = []
if CACHES["default"]["BACKEND"] in (
    "django.core.cache.backends.filebased.FileBasedCache",
    "django.core.cache.backends.db.DatabaseCache",
):
    # django-ratelimit refuses these (a read and a write per count: two uploads at the same
    # instant may count once, a user's simultaneous uploads past the limit); Redis is exact.
    SILENCED_SYSTEM_CHECKS += ["django_ratelimit.E003", "django_ratelimit.W001"]
elif CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # django-ratelimit knows only django-redis; Django's Redis cache counts with INCR, atomic.
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.W001")
    # A Redis that does not answer costs a request seconds, not minutes (classifier/limits.py).
    CACHES["default"].setdefault("OPTIONS", {}).update({"socket_connect_timeout": 2, "socket_timeout": 5})
# A cache that answers nothing lets uploads through rather than refusing them all
# (classifier.limits also catches a Redis that cannot be reached, and logs it once).
RATELIMIT_FAIL_OPEN = True

# --- Abuse limits -----------------------------------------------------------------------
# Logins (django-axes): AXES_FAILURE_LIMIT wrong passwords for one username from one address
# lock that pair out for AXES_COOLOFF_MINUTES from the failure that locked it (tries during
# the lock-out do not restart it, or a guesser could keep the owner out for ever); a
# password reset lifts it (docs/security.md).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_VERBOSE = False  # no start-up banner in every command and worker log
AXES_LOCKOUT_CALLABLE = "classifier.limits.locked_out"  # the 429 page, in the site's layout
# Behind proxies the client's address is read from X-Forwarded-For: set
# AXES_IPWARE_PROXY_COUNT to the number of proxies in front of the site (else every client
# looks like the proxy, and one person can lock a user out for everyone). One rule for
# the lock-out and the request log lines: petsite/clientip.py.
AXES_IPWARE_PROXY_COUNT = env.int("AXES_IPWARE_PROXY_COUNT", default=None)
AXES_CLIENT_IP_CALLABLE = "petsite.clientip.client_ip"
# Uploads (django-ratelimit): upload requests per user, "30/m" = 30 a minute ("100/h", "500/d").
PETSITE_UPLOAD_RATE = env("PETSITE_UPLOAD_RATE", default="30/m")

# --- E-mail -----------------------------------------------------------------------------
# Only password-reset links are sent. EMAIL_URL (smtp+tls://user:password@host:587) sends
# them; a DEBUG run without it prints them on the console; otherwise password reset is
# not offered at all (no link, its pages answer 404), since its mails could not arrive.
EMAIL_URL = env("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
PETSITE_PASSWORD_RESET = bool(EMAIL_URL) or DEBUG
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Petsite <noreply@localhost>")

# --- Static and media files -----------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
# Files browsers ask for at the site's root (/favicon.ico, /apple-touch-icon.png), served by WhiteNoise.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Media go through the "default" storage; S3 is configuration only (credentials from
# boto3's chain; photos private, served by signed URLs: petsite/storage.py).
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")
PETSITE_SIGNED_URL_SECONDS = env.int("PETSITE_SIGNED_URL_SECONDS", default=300)
if AWS_STORAGE_BUCKET_NAME:
    DEFAULT_STORAGE = {
        "BACKEND": "petsite.storage.MediaStorage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),  # MinIO or another S3 service
            "public_endpoint_url": env("AWS_S3_PUBLIC_ENDPOINT_URL", default=None),  # where browsers reach it
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "addressing_style": env("AWS_S3_ADDRESSING_STYLE", default=None),  # "path" for MinIO
            "signature_version": env("AWS_S3_SIGNATURE_VERSION", default="s3v4"),  # boto3 signs URLs with v2 otherwise
            "default_acl": None,  # the bucket's: private
            "querystring_auth": True,
            "querystring_expire": PETSITE_SIGNED_URL_SECONDS,
            "file_overwrite": False,
        },
    }
else:
    DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": env(
            "STATICFILES_BACKEND", default="django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Content-Security-Policy (django-csp 4) ---------------------------------------------
# Everything from the site itself, no inline script or style anywhere (an injected <script>
# does nothing); photos also from S3's signed URLs, blob: previews and data: images.
_image_sources = ["'self'", "data:", "blob:"]
if AWS_STORAGE_BUCKET_NAME:
    _s3_options = DEFAULT_STORAGE["OPTIONS"]
    _s3 = urlsplit(_s3_options["public_endpoint_url"] or _s3_options["endpoint_url"] or "")
    _image_sources.append(f"{_s3.scheme}://{_s3.netloc}" if _s3.netloc else "https://*.amazonaws.com")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": _image_sources,
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Training runs (checkpoint, history, metrics, figures) are written here by `train`.
PETSITE_RUNS_DIR = Path(env("PETSITE_RUNS_DIR", default=str(VAR_DIR / "runs")))
# Training from the site: the folder holding oxford-iiit-pet/ (the dataset the runs train
# and test on, with the reviewed images exported beside it), and the data-loading
# processes of a run (0: in the worker itself, the right choice on a small CPU machine).
PETSITE_DATASET_DIR = Path(env("PETSITE_DATASET_DIR", default=str(VAR_DIR / "pets")))
PETSITE_TRAINING_LOADER_WORKERS = env.int("PETSITE_TRAINING_LOADER_WORKERS", default=0)
# The quick recipe's cache of body features (ml/features.py), reused by every later run.
PETSITE_FEATURE_CACHE_DIR = Path(env("PETSITE_FEATURE_CACHE_DIR", default=str(VAR_DIR / "cache" / "features")))

# --- Uploads --------------------------------------------------------------------------
PETSITE_MAX_UPLOAD_BYTES = env.int("PETSITE_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
# Memory goes by pixels, not bytes: handling an upload costs up to 8 bytes a pixel (and
# kinds that cost more are allowed fewer pixels, classifier/validators.py), so 18 Mpx
# (an 18-megapixel camera's 5184x3456) keeps one upload within ~150 MiB of the web
# process and of a worker child, as measured by bench/upload_memory.py.
PETSITE_MAX_IMAGE_PIXELS = env.int("PETSITE_MAX_IMAGE_PIXELS", default=18_000_000)
PETSITE_GALLERY_PAGE_SIZE = env.int("PETSITE_GALLERY_PAGE_SIZE", default=24)
PETSITE_TOP_K = 5
# Predictions less confident than this join the admin's review queue.
PETSITE_REVIEW_CONFIDENCE = env.float("PETSITE_REVIEW_CONFIDENCE", default=0.5)
DATA_UPLOAD_MAX_MEMORY_SIZE = PETSITE_MAX_UPLOAD_BYTES + 1024 * 1024
# Photos one upload request may carry (the form without JavaScript; the page's script
# sends one photo per request). Each is checked and stored before the next is read, so
# memory stays that of one photo; the upload rate (PETSITE_UPLOAD_RATE) counts photos.
PETSITE_MAX_FILES_PER_UPLOAD = env.int("PETSITE_MAX_FILES_PER_UPLOAD", default=20)
# Django answers 400 past this many files (problem+json under /api/); below it, the form
# says what the limit is.
DATA_UPLOAD_MAX_NUMBER_FILES = max(100, 2 * PETSITE_MAX_FILES_PER_UPLOAD)
# Memory one web process may spend decoding uploads at the same time: decodes beyond what
# fits wait for a turn (classifier/uploads.py). Each is budgeted at its worst, 8 bytes a
# pixel at PETSITE_MAX_IMAGE_PIXELS (137 MiB at 18 Mpx), so the default lets one run at a
# time in each process, whatever its threads: 8 worst uploads at once then raise a
# gunicorn process by about 140 MiB (300: two at once, about 280 MiB; docs/reliability.md).
PETSITE_DECODE_MEMORY_MIB = env.int("PETSITE_DECODE_MEMORY_MIB", default=200)
# A larger request body is refused (413) before it is read (petsite.middleware): a full
# request of photos plus room for the form's other fields and the multipart framing.
PETSITE_MAX_REQUEST_BYTES = env.int(
    "PETSITE_MAX_REQUEST_BYTES", default=PETSITE_MAX_FILES_PER_UPLOAD * PETSITE_MAX_UPLOAD_BYTES + 1024 * 1024
)

# --- JSON API (api/) --------------------------------------------------------------------
# Programs authenticate with a token, the site's scripts with their session (docs/api.md).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "api.pagination.LinkedPageNumberPagination",  # page_size, Link
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",  # every error is problem+json (RFC 9457)
    "PAGE_SIZE": PETSITE_GALLERY_PAGE_SIZE,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Petsite API",
    "DESCRIPTION": "Classify photos of cats and dogs into the 37 breeds of the Oxford-IIIT Pet dataset.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,  # the schema's own address is no endpoint of the API
    # Each endpoint once, under /api/v1/; the headers the API adds around its views (api/schema_headers.py).
    "PREPROCESSING_HOOKS": ["api.schema_headers.only_v1"],
    # Errors, examples and request rules (api/schema.py), then the headers around them, last.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.schema.document_answers",
                             "api.schema_headers.document_headers"],
}

PETSITE_WAIT_MAX_WAITERS = env.int("PETSITE_WAIT_MAX_WAITERS", default=env.int("WEB_THREADS", default=8) // 2 or 1)
PETSITE_WAIT_MAX_PER_USER = env.int("PETSITE_WAIT_MAX_PER_USER", default=2)  # ?wait=N bounds: api/waiting.py
PETSITE_WEBHOOKS_ALLOW_PRIVATE = env.bool("PETSITE_WEBHOOKS_ALLOW_PRIVATE", default=False)  # webhooks/addresses.py
# --- Celery ---------------------------------------------------------------------------
# Default broker: a Redis server of the site's own on a unix socket under var/, started by
# bin/run from the virtualenv (petsite/broker.py). kombu's file-system transport, the
# default before, is not safe with several processes (kombu issue 1551: a worker died on
# a half-written message), so it is refused.
PETSITE_BROKER_SOCKET = broker.socket_path(VAR_DIR)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=broker.url(PETSITE_BROKER_SOCKET))
PETSITE_EMBEDDED_BROKER = CELERY_BROKER_URL == broker.url(PETSITE_BROKER_SOCKET)
if CELERY_BROKER_URL.startswith("filesystem://"):
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL=filesystem:// is no longer supported: kombu's file-system transport loses or "
        "breaks messages when several processes use it (kombu issue 1551). Unset CELERY_BROKER_URL to use "
        "the embedded Redis server that bin/run starts, or name a Redis server (redis://host:6379/0)."
    )
# Redis hands an unacknowledged message to another worker after this many seconds. A
# classification takes seconds, so a short timeout recovers a dead worker's message
# fast; a task still running past it is harmless (the claim makes a second delivery do
# nothing). Retry countdowns stay below it. Training tasks acknowledge early.
PETSITE_BROKER_VISIBILITY_TIMEOUT = env.int("PETSITE_BROKER_VISIBILITY_TIMEOUT", default=60)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": PETSITE_BROKER_VISIBILITY_TIMEOUT}
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="petsite")
CELERY_TASK_IGNORE_RESULT = True  # the database row is the result
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One child per machine by default: PyTorch already spreads one child over every core.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# How long a worker's main process waits for a new pool child to say it is up before it
# kills it and starts another. Celery's default, 4 s, is shorter than a child's start on
# a busy machine (PyTorch used to be imported there: 8-13 s at load average 6-8), and a
# child killed for it is replaced by one that is killed again, forever. Children now start
# without PyTorch (it is imported by the first task, petsite/celery.py), and 60 s is far
# above their start at load 8 (docs/reliability.md) while still replacing a child that
# hangs at start within a minute.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env.float("CELERY_WORKER_PROC_ALIVE_TIMEOUT", default=60)
# A classification task still running after this many seconds is hung (a batch takes
# seconds; a new child's first one, with PyTorch's import and the model's load, under a
# minute at load 8): its child is killed, which counts as one of the image's tries. The
# limit travels in each message, from the settings of the process that sends it.
PETSITE_CLASSIFY_TIME_LIMIT = env.float("PETSITE_CLASSIFY_TIME_LIMIT", default=600)
# Each worker writes a heartbeat row every PETSITE_WORKER_HEARTBEAT_SECONDS from its main
# process (classifier/workers.py); a worker not seen for PETSITE_WORKER_GONE_AFTER seconds
# counts as gone on /readyz and the staff pages.
PETSITE_WORKER_HEARTBEAT_SECONDS = env.float("PETSITE_WORKER_HEARTBEAT_SECONDS", default=10)
PETSITE_WORKER_GONE_AFTER = env.float("PETSITE_WORKER_GONE_AFTER", default=60)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# The safety net behind "a lost message never loses an upload": every REQUEUE_INTERVAL
# seconds, images pending for REQUEUE_AFTER seconds since they were last sent (doubling
# with each re-send), or claimed longer than CLAIM_TIMEOUT seconds ago, are sent again.
# With the defaults a stranded upload is sent again within 45 s.
PETSITE_REQUEUE_INTERVAL = env.float("PETSITE_REQUEUE_INTERVAL", default=15)
PETSITE_REQUEUE_AFTER = env.float("PETSITE_REQUEUE_AFTER", default=30)
PETSITE_CLAIM_TIMEOUT = env.float("PETSITE_CLAIM_TIMEOUT", default=30)
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-images": {"task": "classifier.tasks.requeue_stale", "schedule": PETSITE_REQUEUE_INTERVAL},
    # A training run whose worker died is marked failed within a minute of its heartbeat's
    # timeout (training/services.py), whether or not anyone looks at it.
    "expire-dead-training-runs": {"task": "training.tasks.expire_dead_runs", "schedule": 60.0},
    "send-due-webhooks": {"task": "webhooks.tasks.send_due", "schedule": 10.0},  # retries, lost messages
}
# How the workers run the model: "auto" keeps the fastest backend that agrees with eager
# FP32 (ml/backends.py), measured among those that can win on the CPU at hand. Each worker
# machine measures (and exports to ONNX) once per model, in a warm-up process of its own
# (ml/warmup.py) started when a version is registered or activated and when a worker
# starts; its children serve eager FP32 until the choice is in the cache folder, so no
# photo waits for it. "onnx" waits for the warm-up's export the same way.
PETSITE_INFERENCE_BACKEND = env("PETSITE_INFERENCE_BACKEND", default="auto")
# Where the workers run the model: "cpu", or "cuda" on a worker with a GPU (docs/workers.md).
PETSITE_INFERENCE_DEVICE = env("PETSITE_INFERENCE_DEVICE", default="cpu")
# The warm-ups' results per machine: backends.json (the choices), onnx/ (the exports), locks/.
PETSITE_BACKEND_CACHE_DIR = Path(env("PETSITE_BACKEND_CACHE_DIR", default=str(VAR_DIR / "cache" / "backends")))
# Images one worker classifies in one forward pass when several are waiting (a lone
# upload is never held back to fill a batch).
PETSITE_BATCH_SIZE = env.int("PETSITE_BATCH_SIZE", default=16)
# A child whose memory grew past this (KiB) is replaced after its task: a guard against
# slow growth (memory stays allocated after each new batch size: 1.0 to 1.4 GB seen);
# the claim makes the replacement harmless.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", default=2_000_000)
# Torch threads per worker child: children x threads should not exceed the cores.
PETSITE_TORCH_THREADS = env.int("PETSITE_TORCH_THREADS", default=0)  # 0: cores / concurrency

# --- Logs, request ids, error reports ---------------------------------------------------
# One line per event with time, level, logger and request id (petsite/logs.py); JSON
# lines with LOG_FORMAT=json. Celery processes use the same configuration.
LOGGING = logs.logging_config(env("LOG_FORMAT", default="text"), env("LOG_LEVEL", default="INFO"))
LOGGING_CONFIG = "petsite.logs.configure"
SENTRY_DSN = env("SENTRY_DSN", default="")
DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",  # taken from the proxy when it sends a valid one, and always answered
    "INTEGRATIONS": [CeleryIntegration()],  # tasks carry the id of the request that sent them
}
if SENTRY_DSN:
    logs.init_sentry(
        SENTRY_DSN,
        environment=env("SENTRY_ENVIRONMENT", default="production"),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )
