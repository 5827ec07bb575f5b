# syntax=docker/dockerfile:1
# Petsite: one image for the web process, the Celery workers and beat (compose.yaml).
# PyTorch comes as CPU wheels from https://download.pytorch.org/whl/cpu; compose.gpu.yaml
# builds the same file with a CUDA index for a GPU machine (TORCH_INDEX_URL).
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=petsite.settings \
    PETSITE_ENV_FILE=/dev/null \
    PETSITE_VAR_DIR=/app/var \
    STATIC_ROOT=/app/staticfiles \
    STATICFILES_BACKEND=whitenoise.storage.CompressedManifestStaticFilesStorage \
    TORCH_HOME=/app/var/torch \
    MPLCONFIGDIR=/app/var/matplotlib \
    LOG_FORMAT=json

WORKDIR /app
# The processes run as an unprivileged user that can write to /app/var only (the
# volumes of compose.yaml mount there, so they start owned by that user).
RUN groupadd --system --gid 10001 petsite \
 && useradd --system --uid 10001 --gid petsite --home-dir /app/var --no-create-home petsite

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
COPY docker/install-requirements docker/production-requirements docker/
RUN docker/install-requirements "$TORCH_INDEX_URL" requirements.txt

COPY . .
# Static files collected with the production settings, then `check --deploy`.
RUN docker/build-static \
 && mkdir -p /app/var/beat /app/var/cache /app/var/pets /app/var/runs \
 && chown -R petsite:petsite /app/var

USER petsite
EXPOSE 8000
CMD ["gunicorn", "--config", "docker/gunicorn.conf.py", "petsite.wsgi"]
