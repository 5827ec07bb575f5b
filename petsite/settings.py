"""Petsite settings, all from the environment (django-environ), with safe defaults.

With nothing set, Petsite runs embedded: SQLite and media files under ``var/`` and a
Celery broker on the local file system, so a fresh clone needs no server. Setting
``DATABASE_URL=postgres://...``, ``CELERY_BROKER_URL=redis://...`` and
``AWS_STORAGE_BUCKET_NAME`` moves the same code to PostgreSQL, Redis and S3.
"""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; the real environment wins

VAR_DIR = Path(env("PETSITE_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="django-insecure-dev-only-set-SECRET_KEY-in-production")
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
    "ml",
    "classifier",
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
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "classifier:gallery"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media files -----------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Media (uploads, thumbnails, model checkpoints and figures) go through the "default"
# storage; pointing it at S3 is configuration only.
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
            "region_name": env("AWS_S3_REGION_NAME", default=None),
            "default_acl": None,
            "querystring_auth": True,  # uploads are private: URLs are signed and expire
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

# Training runs (checkpoint, history, metrics, figures) are written here by `train`.
PETSITE_RUNS_DIR = Path(env("PETSITE_RUNS_DIR", default=str(VAR_DIR / "runs")))

# --- Uploads --------------------------------------------------------------------------
PETSITE_MAX_UPLOAD_BYTES = env.int("PETSITE_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
PETSITE_MAX_IMAGE_PIXELS = env.int("PETSITE_MAX_IMAGE_PIXELS", default=40_000_000)
PETSITE_GALLERY_PAGE_SIZE = env.int("PETSITE_GALLERY_PAGE_SIZE", default=24)
PETSITE_TOP_K = 5
# Predictions less confident than this join the admin's review queue.
PETSITE_REVIEW_CONFIDENCE = env.float("PETSITE_REVIEW_CONFIDENCE", default=0.5)
DATA_UPLOAD_MAX_MEMORY_SIZE = PETSITE_MAX_UPLOAD_BYTES + 1024 * 1024

# --- Celery ---------------------------------------------------------------------------
# Default broker: kombu's filesystem transport, a folder that the web process writes
# messages to and the worker reads from. No server, and a real worker process.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
PETSITE_BROKER_DIR = Path(env("PETSITE_BROKER_DIR", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(PETSITE_BROKER_DIR),
        "data_folder_out": str(PETSITE_BROKER_DIR),
        "control_folder": str(PETSITE_BROKER_DIR / "control"),
        "store_processed": False,
    }
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="petsite")
CELERY_TASK_IGNORE_RESULT = True  # the database row is the result
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One child per machine by default: PyTorch already spreads one child over every core.
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE = {
    # The safety net behind "a lost message never loses an upload".
    "requeue-stale-images": {"task": "classifier.tasks.requeue_stale", "schedule": 300.0},
}
# Torch threads per worker child: children x threads should not exceed the cores.
PETSITE_TORCH_THREADS = env.int("PETSITE_TORCH_THREADS", default=0)  # 0: cores / concurrency

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
