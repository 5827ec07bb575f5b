"""Settings for test runs: the project's own settings, plus what a test run cannot take from the environment.

Without DEBUG the project refuses to start without a SECRET_KEY; a test run needs none
set, so it gets a throwaway one. It goes into ``os.environ`` before the project's
settings are read, so that the worker processes the tests start (they inherit the
environment) get the same key.
"""
import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret-" + "k" * 40)
# Workers in tests run the reference backend: deterministic, and no measuring at each
# start (tests/ml/test_backends.py covers the automatic choice).
os.environ.setdefault("PETSITE_INFERENCE_BACKEND", "eager")
# A connection per request, in the tests and the processes they start: no connection
# outlives its test to keep the test database from being dropped at the end.
os.environ.setdefault("CONN_MAX_AGE", "0")

from petsite.settings import *  # noqa: E402,F403
from petsite.settings import env  # noqa: E402

# The database cache lives in the test database (Django creates its table with the test
# database), so rate-limit counters roll back with each test like every other row: one
# test's uploads never count against another test's user, whatever CACHE_URL says.
CACHES = {"default": env.cache_url_config("dbcache://petsite_cache")}
