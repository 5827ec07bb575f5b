"""Gunicorn for the web service. Environment: PORT (8000), WEB_CONCURRENCY (processes,
2), WEB_THREADS (threads per process, 8: half may wait for results, ``?wait``),
LOG_FORMAT and LOG_LEVEL (as the site)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from petsite.logs import logging_config  # noqa: E402

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
worker_class = "gthread"
timeout = 60  # an upload of 20 photos is checked and stored within the request
graceful_timeout = 30
max_requests = 2000  # processes are replaced now and then: memory stays bounded
max_requests_jitter = 200
# Heartbeats off the (possibly slow) container disk: gunicorn's documented advice for Docker;
# /dev/shm is the container's own tmpfs, and gunicorn makes unique files in it.
worker_tmp_dir = "/dev/shm"  # noqa: S108
# forwarded_allow_ips stays gunicorn's default (127.0.0.1): gunicorn does not act on
# a proxy's X-Forwarded-Proto itself; Django decides whether to trust it
# (PETSITE_PROXY_SSL_HEADER).
# Gunicorn's own lines in the site's format; the site logs one line per request itself
# (with its request id), so gunicorn's access log stays off.
accesslog = None
logconfig_dict = logging_config(os.environ.get("LOG_FORMAT", "text"), os.environ.get("LOG_LEVEL", "INFO"))
logconfig_dict["loggers"]["gunicorn.error"] = {"handlers": ["console"], "propagate": False}
